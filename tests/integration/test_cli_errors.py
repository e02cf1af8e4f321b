"""Bad input at the command line: one clear line, a component exit code, no traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from accord.errors import ExitCode


def accord(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "accord", *args], capture_output=True, text=True, timeout=timeout
    )


def assert_user_error(done: subprocess.CompletedProcess[str], code: ExitCode, *words: str) -> None:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error:")
    for word in words:
        assert word in done.stderr


def test_hub_serve_on_a_port_in_use(tmp_path: Path) -> None:
    assert accord("hub", "init", str(tmp_path / "hub")).returncode == 0
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = accord("hub", "serve", str(tmp_path / "hub"), "--port", str(port))
    assert_user_error(done, ExitCode.NETWORK, f"127.0.0.1:{port}", "--port")


def test_hub_serve_on_a_directory_that_is_no_hub(tmp_path: Path) -> None:
    assert_user_error(accord("hub", "serve", str(tmp_path)), ExitCode.CONFIG, "accord hub init")


def test_hub_init_twice_does_not_overwrite_the_key(tmp_path: Path) -> None:
    assert accord("hub", "init", str(tmp_path / "hub")).returncode == 0
    key = (tmp_path / "hub" / "hub.key").read_bytes()
    assert_user_error(accord("hub", "init", str(tmp_path / "hub")), ExitCode.CONFIG, "already")
    assert (tmp_path / "hub" / "hub.key").read_bytes() == key


def test_register_an_unknown_kind(tmp_path: Path) -> None:
    accord("hub", "init", str(tmp_path / "hub"))
    accord("keys", "acme-bakery", "--dir", str(tmp_path))
    done = accord(
        "hub",
        "register",
        str(tmp_path / "hub"),
        str(tmp_path / "acme-bakery.pub"),
        "--kind",
        "bakery",
    )
    assert_user_error(done, ExitCode.HUB, "bakery", "hospital")


def test_missing_key_file(tmp_path: Path) -> None:
    done = accord(
        "audit", "verify", str(tmp_path / "audit.db"), "--pub", str(tmp_path / "nobody.pub")
    )
    assert_user_error(done, ExitCode.KEYS, "nobody.pub")


def test_node_with_missing_config(tmp_path: Path) -> None:
    assert_user_error(
        accord("node", "run", "--config", str(tmp_path / "node.json")),
        ExitCode.CONFIG,
        "does not exist",
    )


def test_node_pointed_at_a_hub_that_is_down(tmp_path: Path) -> None:
    accord("hub", "init", str(tmp_path / "hub"))
    accord("keys", "lone-clinic", "--dir", str(tmp_path))
    (tmp_path / "member.duckdb").write_bytes(b"")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "node.json").write_text(
        json.dumps(
            {
                "member": "lone-clinic",
                "hub_url": f"http://127.0.0.1:{port}",
                "hub_public_key": "hub/hub.pub",
                "key": "lone-clinic.key",
                "database": {"path": "member.duckdb"},
                "connect_give_up_seconds": 2,
            }
        )
    )
    done = accord("node", "run", "--config", str(tmp_path / "node.json"))
    assert done.returncode == ExitCode.NETWORK
    assert "retrying in" in done.stderr  # it told the operator it was retrying
    last = done.stderr.strip().splitlines()
    assert any(line.startswith("error: hub at") and "not reachable" in line for line in last)


def test_unknown_benchmark() -> None:
    assert_user_error(accord("bench", "nonsense"), ExitCode.USAGE, "synth")


@pytest.mark.parametrize("body", ["{not json", json.dumps({"type": "count_persons", "cohort": 3})])
def test_query_with_a_malformed_file(tmp_path: Path, body: str) -> None:
    (tmp_path / "q.json").write_text(body)
    done = accord("query", str(tmp_path / "q.json"), "--key", str(tmp_path / "r.key"))
    assert done.returncode in (ExitCode.CONFIG, ExitCode.QUERY), done.stderr
    assert "Traceback" not in done.stderr

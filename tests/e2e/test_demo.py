"""The README's first command, as a user runs it: `accord demo --once`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def test_demo_once_prints_the_table_and_exits_zero(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "accord",
            "demo",
            "--once",
            "--members",
            "3",
            "--persons",
            "3000",
            "--dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "200"},  # a wide terminal: one line per member
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for heading in ("member", "kind", "count", "disclosure rule applied", "total"):
        assert heading in out
    assert "ground truth" in out
    assert out.count("hospital") >= 1
    for arrived in ("FHIR R4 ndjson", "legacy CSV (ICD-9-CM)", "OMOP CDM CSV"):
        assert arrived in out
    # every node was stopped by its signal handler, not killed
    node_logs = [p for p in (tmp_path / "demo" / "logs").glob("*.log") if p.stem != "hub"]
    assert len(node_logs) == 3
    for log in node_logs:
        assert "node stopped" in log.read_text(), log.name


def test_demo_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    done = subprocess.run(
        [sys.executable, "-m", "accord", "demo", "--once", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "not empty" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_serves_until_interrupted_then_stops_every_child(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "accord",
            "demo",
            "--members",
            "3",
            "--persons",
            "1000",
            "--dir",
            str(tmp_path / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert demo.stderr is not None
        for line in demo.stderr:
            if "press Ctrl-C to stop" in line:
                break
        else:
            raise AssertionError("the demo never said it was serving")
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0
    node_logs = [p for p in (tmp_path / "demo" / "logs").glob("*.log") if p.stem != "hub"]
    assert len(node_logs) == 3
    for log in node_logs:
        assert "node stopped" in log.read_text(), log.name

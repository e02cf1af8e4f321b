"""What the hub refuses: unknown signers, replayed messages, nodes speaking for others."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from accord import protocol
from accord.errors import ExitCode
from accord.node.config import DatabaseConfig, NodeConfig, write_node_config
from accord.query.scenarios import trial_recruitment
from accord.trust.envelope import seal
from accord.trust.keys import generate_identity, load_identity, write_identity
from consortium import Running, node_hello, node_socket_url


def signed_task_request(running: Running) -> dict[str, Any]:
    researcher = load_identity(running.layout.researcher_key)
    return seal(
        {"analysis": trial_recruitment(running.as_of).to_json(), "members": None},
        sender=researcher.name,
        recipient="hub",
        kind=protocol.TASK_CREATE,
        key=researcher.signing_key,
    )


def test_node_with_unregistered_key_is_refused(running: Running, tmp_path: Path) -> None:
    stranger = generate_identity("stranger-clinic")
    write_identity(stranger, tmp_path)
    member = running.manifest.members[0]
    config = NodeConfig(
        member="stranger-clinic",
        hub_url=running.consortium.url,
        hub_public_key=running.layout.hub / "hub.pub",
        key=tmp_path / "stranger-clinic.key",
        database=DatabaseConfig(path=str(running.layout.members / member.db_file)),
    )
    write_node_config(tmp_path / "node.json", config)
    done = subprocess.run(
        [sys.executable, "-m", "accord", "node", "run", "--config", str(tmp_path / "node.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == ExitCode.TRUST
    assert "refused" in done.stderr
    assert "unknown signer" in done.stderr
    health = httpx.get(f"{running.consortium.url}/v1/health").json()
    assert "stranger-clinic" not in health["connected"]


def test_node_key_cannot_impersonate_another_member(running: Running) -> None:
    """A registered member's key signing a hello as itself to claim another's name fails."""
    forged = node_hello(running, running.ids[0], claiming=running.ids[1])
    with connect(node_socket_url(running)) as socket:
        socket.send(json.dumps(forged))
        reply = json.loads(socket.recv(timeout=10))
    assert "signature" in reply["error"]


def test_replayed_task_request_is_refused(running: Running) -> None:
    envelope = signed_task_request(running)
    first = httpx.post(f"{running.consortium.url}/v1/tasks", json=envelope)
    assert first.status_code == 200
    replay = httpx.post(f"{running.consortium.url}/v1/tasks", json=envelope)
    assert replay.status_code == 401
    assert "replay" in replay.json()["detail"]


def test_replayed_node_hello_is_refused(running: Running) -> None:
    hello = node_hello(running, running.ids[0])
    url = node_socket_url(running)
    with connect(url) as socket:
        socket.send(json.dumps(hello))
        assert json.loads(socket.recv(timeout=10))["kind"] == protocol.NODE_WELCOME
    with connect(url) as socket:
        socket.send(json.dumps(hello))
        reply = json.loads(socket.recv(timeout=10))
    assert "replay" in reply["error"]


@pytest.mark.parametrize("field", ["payload", "ts", "sender"])
def test_tampered_request_is_refused(running: Running, field: str) -> None:
    envelope = signed_task_request(running)
    tampered = {
        "payload": {**envelope["payload"], "members": [running.ids[0]]},
        "ts": envelope["ts"] + 1,
        "sender": running.ids[0],
    }[field]
    response = httpx.post(f"{running.consortium.url}/v1/tasks", json={**envelope, field: tampered})
    assert response.status_code == 401

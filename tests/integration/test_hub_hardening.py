"""Malformed or oversized input is refused with a clear status, and the hub stays up."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from accord import protocol
from accord.client import Client
from accord.query import ConceptSet, HasCondition, Not, cohort, count_persons
from accord.query.scenarios import trial_recruitment
from accord.trust.envelope import seal
from accord.trust.keys import load_identity
from consortium import Running, node_hello, node_socket_url


def signed(running: Running, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    researcher = load_identity(running.layout.researcher_key)
    return seal(
        payload, sender=researcher.name, recipient="hub", kind=kind, key=researcher.signing_key
    )


def post_task(running: Running, payload: dict[str, Any]) -> httpx.Response:
    envelope = signed(running, protocol.TASK_CREATE, payload)
    return httpx.post(f"{running.consortium.url}/v1/tasks", json=envelope, timeout=30)


def assert_hub_still_answers(running: Running) -> None:
    with Client(running.consortium.url, load_identity(running.layout.researcher_key)) as client:
        assert client.run(trial_recruitment(running.as_of), timeout=60).done


@pytest.mark.parametrize("members", [[], ["x", "x"], "all", [3]])
def test_bad_member_lists_are_refused(running: Running, members: object) -> None:
    analysis = trial_recruitment(running.as_of).to_json()
    response = post_task(running, {"analysis": analysis, "members": members})
    assert response.status_code == 422
    assert "members" in response.json()["detail"]


@pytest.mark.parametrize(("concept_sets", "why"), [(16, "analysis over"), (40, "request body")])
def test_oversized_analysis_is_refused(running: Running, concept_sets: int, why: str) -> None:
    # Many large concept sets: valid by the model, too large to send to a member.
    criteria = [
        Not(HasCondition(ConceptSet(ids=tuple(range(k * 5000 + 1, k * 5000 + 5001)))))
        for k in range(concept_sets)
    ]
    analysis = count_persons(cohort(*criteria, as_of=running.as_of)).to_json()
    response = post_task(running, {"analysis": analysis, "members": None})
    assert response.status_code == 413
    assert why in response.json()["detail"]
    assert_hub_still_answers(running)


@pytest.mark.parametrize("wait", ["abc", None, [1], True])
def test_bad_wait_seconds_is_refused(running: Running, wait: object) -> None:
    task = post_task(
        running, {"analysis": trial_recruitment(running.as_of).to_json(), "members": None}
    )
    task_id = task.json()["task_id"]
    payload = {"seen": "", "wait_seconds": wait}
    body = signed(running, protocol.TASK_READ, payload)
    response = httpx.post(f"{running.consortium.url}/v1/tasks/{task_id}/wait", json=body)
    assert response.status_code == 422
    assert "wait_seconds" in response.json()["detail"]


def test_garbage_on_a_node_socket_does_not_take_the_hub_down(running: Running) -> None:
    member = running.ids[0]
    url = node_socket_url(running)
    # Before any hello: non-JSON, then deeply nested JSON.
    for garbage in ["not json", "[" * 100_000]:
        with connect(url) as socket:
            socket.send(garbage)
            reply = json.loads(socket.recv(timeout=10))
            assert "malformed" in reply["error"]
    # After a genuine hello: a list, then broken JSON. The member's own node is stopped
    # meanwhile, or its reconnect would replace this test's connection.
    running.consortium.stop_node(member)
    try:
        with connect(url) as socket:
            socket.send(json.dumps(node_hello(running, member)))
            assert json.loads(socket.recv(timeout=10))["kind"] == protocol.NODE_WELCOME
            socket.send("[1, 2]")
            assert "error" in reply_skipping_tasks(socket)
            socket.send("{bad")
            assert "error" in reply_skipping_tasks(socket)
    finally:
        running.consortium.start_node(member)
        running.consortium.wait_connected(running.ids, timeout=60)
    assert_hub_still_answers(running)


def reply_skipping_tasks(socket: Any) -> dict[str, Any]:
    """The hub's next reply; tasks still open for the member are re-sent after hello."""
    while True:
        message: dict[str, Any] = json.loads(socket.recv(timeout=10))
        if message.get("kind") != protocol.TASK_RUN:
            return message


def test_a_result_that_breaks_its_disclosure_profile_is_refused(running: Running) -> None:
    """A faulty node's unsuppressed small cell with rows attached is never released."""
    from accord.privacy.disclosure import SmallCellProfile
    from accord.trust.hpke import seal_json
    from accord.trust.keys import load_public

    member = running.ids[0]
    running.consortium.stop_node(member)
    key = load_identity(running.layout.nodes / member / f"{member}.key")
    hub_public = load_public(running.layout.hub / "hub.pub")
    url = node_socket_url(running)
    try:
        with (
            Client(running.consortium.url, load_identity(running.layout.researcher_key)) as client,
            connect(url) as socket,
        ):
            socket.send(json.dumps(node_hello(running, member)))
            assert json.loads(socket.recv(timeout=10))["kind"] == protocol.NODE_WELCOME
            task_id = client.submit(trial_recruitment(running.as_of), members=[member])
            task = json.loads(socket.recv(timeout=10))
            while task["payload"].get("task_id") != task_id:  # earlier open tasks come first
                task = json.loads(socket.recv(timeout=10))
            forged = {
                "analysis": "count_persons",
                "disclosed": {"value": 3, "display": "3", "suppressed": False, "rule": "none"},
                "profile": SmallCellProfile().to_json(),
                "rows": [{"person_id": 1}],
            }
            sealed = seal_json(
                hub_public.encryption_key, forged, info=protocol.result_info(task_id, member)
            )
            result = seal(
                {"task_id": task_id, "sealed": sealed},
                sender=member,
                recipient="hub",
                kind=protocol.TASK_RESULT,
                key=key.signing_key,
            )
            socket.send(json.dumps(result))
            outcome = client.wait(task_id, timeout=30)
    finally:
        running.consortium.start_node(member)
        running.consortium.wait_connected(running.ids, timeout=60)
    share = outcome.members[0]
    assert share.status == "refused"
    assert share.count is None
    assert share.reason is not None
    assert "rows" in share.reason

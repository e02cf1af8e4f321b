"""A node's rules for secure rounds: which rounds it joins, one masked vector per round,
and outcomes kept per task and round (state written before rounds existed migrates)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accord import protocol
from accord.node.agent import NodeAgent, Outcomes
from accord.node.answers import Refusal
from accord.node.config import DatabaseConfig, NodeConfig
from accord.trust.canonical import b64url_encode
from accord.trust.keys import Identity, generate_identity, write_identity

ME = "a-clinic"
PEERS = ["b-clinic", "c-clinic", "d-clinic"]
TASK = "0b7c2f4e-6d8a-4f0e-9a51-3c2d1e0f9a8b"


@pytest.fixture
def identities() -> dict[str, Identity]:
    return {name: generate_identity(name) for name in [ME, *PEERS]}


@pytest.fixture
def agent(tmp_path: Path, identities: dict[str, Identity]) -> Iterator[NodeAgent]:
    write_identity(identities[ME], tmp_path)
    _, hub_pub = write_identity(generate_identity("hub"), tmp_path)
    config = NodeConfig(
        member=ME,
        hub_url="http://127.0.0.1:9",
        hub_public_key=hub_pub,
        key=tmp_path / f"{ME}.key",
        database=DatabaseConfig(engine="duckdb", path=str(tmp_path / "member.duckdb")),
        state_dir=tmp_path / "state",
    )
    node = NodeAgent(config, say=lambda _: None)
    yield node
    node.close()


def key_of(identity: Identity) -> str:
    return b64url_encode(identity.encryption_key.public_key().public_bytes_raw())


def secure(
    identities: dict[str, Identity], names: list[str], round_id: str, **keys: str
) -> dict[str, Any]:
    return {
        "round_id": round_id,
        "members": [
            {"member": n, "encryption_key": keys.get(n, key_of(identities[n]))} for n in names
        ],
    }


def join(
    agent: NodeAgent, identities: dict[str, Identity], names: list[str], round_id: str, **keys: str
) -> set[str]:
    peers = agent._join_round(TASK, round_id, secure(identities, names, round_id, **keys))
    return set(peers)


def test_a_node_joins_a_round_and_masks_against_its_peers(
    agent: NodeAgent, identities: dict[str, Identity]
) -> None:
    assert join(agent, identities, [ME, *PEERS], f"{TASK}/r1") == set(PEERS)
    # The same round pushed again (a resync) is the same round, not a new one.
    assert join(agent, identities, [ME, *PEERS], f"{TASK}/r1") == set(PEERS)
    assert join(agent, identities, [ME, *PEERS[:2]], f"{TASK}/r2") == set(PEERS[:2])


@pytest.mark.parametrize(
    ("names", "round_id", "message"),
    [
        ([ME, *PEERS], "another-task/r1", "does not belong to task"),
        (PEERS, f"{TASK}/r1", "does not list this member with its own encryption key"),
        ([ME, *PEERS[:1]], f"{TASK}/r1", "takes part in secure sums of at least 3"),
    ],
)
def test_a_node_refuses_a_round_it_cannot_trust(
    agent: NodeAgent, identities: dict[str, Identity], names: list[str], round_id: str, message: str
) -> None:
    with pytest.raises(Refusal, match=message):
        join(agent, identities, names, round_id)


def test_a_node_refuses_its_own_name_with_another_key(
    agent: NodeAgent, identities: dict[str, Identity]
) -> None:
    other = key_of(generate_identity(ME))
    with pytest.raises(Refusal, match="its own encryption key"):
        join(agent, identities, [ME, *PEERS], f"{TASK}/r1", **{ME: other})


@pytest.mark.parametrize(
    "second",
    [
        [ME, *PEERS],  # the same members under a new round id
        [ME, "b-clinic", "c-clinic", "e-clinic"],  # as many, one swapped
        [ME, "b-clinic", "e-clinic"],  # fewer, but one new
    ],
)
def test_a_repeated_round_must_drop_members_and_add_none(
    agent: NodeAgent, identities: dict[str, Identity], second: list[str]
) -> None:
    identities["e-clinic"] = generate_identity("e-clinic")
    join(agent, identities, [ME, *PEERS], f"{TASK}/r1")
    with pytest.raises(Refusal, match="not a strict subset"):
        join(agent, identities, second, f"{TASK}/r2")


def test_a_peer_key_may_not_change_between_rounds_of_a_task(
    agent: NodeAgent, identities: dict[str, Identity]
) -> None:
    join(agent, identities, [ME, *PEERS], f"{TASK}/r1")
    swapped = key_of(generate_identity("b-clinic"))
    with pytest.raises(Refusal, match="another key"):
        join(agent, identities, [ME, *PEERS[:2]], f"{TASK}/r2", **{"b-clinic": swapped})


def test_a_round_id_is_never_reused_with_other_members(
    agent: NodeAgent, identities: dict[str, Identity]
) -> None:
    join(agent, identities, [ME, *PEERS], f"{TASK}/r1")
    with pytest.raises(Refusal, match="used before with other members"):
        join(agent, identities, [ME, *PEERS[:2]], f"{TASK}/r1")


def test_a_superseded_round_is_not_computed_again(
    agent: NodeAgent, identities: dict[str, Identity]
) -> None:
    join(agent, identities, [ME, *PEERS], f"{TASK}/r1")
    join(agent, identities, [ME, *PEERS[:2]], f"{TASK}/r2")
    with pytest.raises(Refusal, match="superseded by a later round"):
        join(agent, identities, [ME, *PEERS], f"{TASK}/r1")


def test_one_masked_vector_per_round(agent: NodeAgent, identities: dict[str, Identity]) -> None:
    join(agent, identities, [ME, *PEERS], f"{TASK}/r1")
    outcomes: Outcomes = agent.outcomes
    assert outcomes.put_masked(TASK, f"{TASK}/r1", {"masked": 1})
    assert not outcomes.put_masked(TASK, f"{TASK}/r1", {"masked": 2})
    assert outcomes.get(TASK, f"{TASK}/r1") == (protocol.TASK_RESULT, {"masked": 1})
    assert outcomes.get(TASK, f"{TASK}/r2") is None
    assert not outcomes.put_masked(TASK, f"{TASK}/r9", {"masked": 3})  # never joined


def test_outcomes_kept_by_task_alone_migrate(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE outcomes (task_id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
            " payload TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0)"
        )
        db.execute(
            "INSERT INTO outcomes VALUES ('t-1', ?, ?, 1)",
            (protocol.TASK_RESULT, json.dumps({"sealed": "x"})),
        )
    outcomes = Outcomes(path)
    try:
        assert outcomes.get("t-1") == (protocol.TASK_RESULT, {"sealed": "x"})
        outcomes.put("t-1", protocol.TASK_REFUSED, {"reason": "r"}, "t-1/r1")
        assert outcomes.get("t-1", "t-1/r1") == (protocol.TASK_REFUSED, {"reason": "r"})
    finally:
        outcomes.close()
    reopened = Outcomes(path)  # a second start finds it migrated
    try:
        assert reopened.get("t-1") == (protocol.TASK_RESULT, {"sealed": "x"})
    finally:
        reopened.close()

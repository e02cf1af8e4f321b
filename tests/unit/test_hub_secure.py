"""The hub's side of secure sums: rounds in its store (SQLite and PostgreSQL, migrated
from the schema before them), what it accepts from a member, and the total it releases."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from accord import protocol
from accord.errors import TrustError
from accord.hub import secure
from accord.hub.store import MIGRATIONS, HubStore, RoundView
from accord.privacy.disclosure import SmallCellProfile, apply_count
from accord.trust import secagg
from accord.trust.keys import generate_identity
from pg import PostgresServer

MEMBERS = ["a-clinic", "b-clinic", "c-clinic", "d-clinic"]
COUNT = {"type": "count_persons"}


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    request.getfixturevalue("postgres_dsn")  # marks the test as a postgres one
    import psycopg

    name = f"hub_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/{name}"
    finally:
        with psycopg.connect(server.dsn("postgres"), autocommit=True) as connection:
            connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


def populated(store: HubStore) -> None:
    for name in MEMBERS:
        store.register(generate_identity(name).public, role="node", kind="hospital")
    store.register(generate_identity("alice").public, role="researcher")


def secure_task(store: HubStore, members: list[str] = MEMBERS) -> str:
    return store.create_task(
        created_by="alice",
        analysis=COUNT,
        sha256="0" * 64,
        members=members,
        disclosure=protocol.SECURE_SUM,
    )


def statuses(store: HubStore, task_id: str) -> dict[str, str]:
    view = store.task(task_id)
    assert view is not None
    return {a.member_id: a.status for a in view.assignments}


def test_a_secure_sum_runs_round_after_round_to_its_total(url: str) -> None:
    store = HubStore.open(url)
    try:
        populated(store)
        task = secure_task(store)
        store.start_round(task, f"{task}/r1", MEMBERS, dropped={})
        first = store.open_round(task)
        assert first == RoundView(f"{task}/r1", task, 1, tuple(MEMBERS), "open")
        assert store.mark_delivered(task, "a-clinic")
        assert not store.mark_delivered(task, "a-clinic")
        assert store.reopen_delivered() == 1  # a restarted hub holds no vectors
        assert statuses(store, task)["a-clinic"] == "pending"
        assert store.mark_delivered(task, "a-clinic")

        kept = MEMBERS[:3]
        store.start_round(
            task, f"{task}/r2", kept, dropped={"d-clinic": "refused"}, previous=f"{task}/r1"
        )
        assert statuses(store, task) == {
            "a-clinic": "pending",
            "b-clinic": "pending",
            "c-clinic": "pending",
            "d-clinic": "refused",
        }
        profile = SmallCellProfile()
        results = {m: secure.member_result(COUNT, f"{task}/r2", profile) for m in kept}
        combined = {"status": "complete", "round": f"{task}/r2", "members": kept, "total": {}}
        store.end_secure(
            task, round_id=f"{task}/r2", combined=combined, results=results, dropped={}
        )

        view = store.task(task)
        assert view is not None
        assert view.status == "done"
        assert view.secure
        assert view.combined == combined
        assert view.to_json()["disclosure"] == protocol.SECURE_SUM
        done = {a.member_id: a for a in view.assignments}
        assert done["a-clinic"].result == results["a-clinic"]
        assert done["d-clinic"].reason == "refused"
        assert [(r.seq, r.status) for r in store.rounds(task)] == [(1, "repeated"), (2, "complete")]
        assert store.open_rounds() == []
    finally:
        store.engine.dispose()


def test_a_secure_sum_without_enough_members_cancels_the_rest(url: str) -> None:
    store = HubStore.open(url)
    try:
        populated(store)
        task = secure_task(store, MEMBERS[:3])
        store.start_round(task, f"{task}/r1", MEMBERS[:3], dropped={})
        combined = {"status": "failed", "round": f"{task}/r1", "withheld": "no total: too few"}
        store.end_secure(
            task,
            round_id=f"{task}/r1",
            combined=combined,
            results={},
            dropped={"c-clinic": "went away"},
        )
        view = store.task(task)
        assert view is not None
        assert view.status == "done"
        reasons = {a.member_id: (a.status, a.reason) for a in view.assignments}
        assert reasons == {
            "a-clinic": ("cancelled", "no total: too few"),
            "b-clinic": ("cancelled", "no total: too few"),
            "c-clinic": ("refused", "went away"),
        }
        assert [r.status for r in store.rounds(task)] == ["failed"]
    finally:
        store.engine.dispose()


def test_tasks_from_before_secure_sums_migrate_as_per_member(url: str) -> None:
    config = alembic_config(url)
    command.upgrade(config, "0002")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO principals (id, role, display_name, verify_key, encryption_key,"
                " registered_at) VALUES ('alice', 'researcher', 'alice', 'v', 'e', 'now')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO tasks (id, created_by, created_at, analysis, analysis_sha256,"
                " status) VALUES ('t-1', 'alice', 'now', :analysis, '0', 'done')"
            ),
            {"analysis": json.dumps(COUNT)},
        )
    engine.dispose()
    store = HubStore.open(url)
    try:
        view = store.task("t-1")
        assert view is not None
        assert view.disclosure == protocol.PER_MEMBER
        assert view.combined is None
    finally:
        store.engine.dispose()
    command.downgrade(config, "0002")
    command.upgrade(config, "head")


# -- what the hub accepts and releases -----------------------------------------------


def contribution(**changes: Any) -> dict[str, Any]:
    found = {
        "analysis": "count_persons",
        "round_id": "t/r1",
        "masked": ["0", str(2**64 - 1)],
        "profile": SmallCellProfile().to_json(),
    }
    return {**found, **changes}


def test_a_well_formed_contribution_is_accepted() -> None:
    accepted = secure.accept_contribution(COUNT, "t/r1", contribution())
    assert accepted.masked.dtype == np.uint64
    assert accepted.masked.tolist() == [0, 2**64 - 1]
    assert accepted.profile == SmallCellProfile()


@pytest.mark.parametrize(
    ("sealed", "message"),
    [
        (["0"], "not an object"),
        (contribution(rows=[1]), "exactly the fields"),
        (contribution(analysis="glm_step"), "not for a count_persons analysis"),
        (contribution(round_id="t/r0"), "names another round"),
        (contribution(masked=[]), "a list of 1 to"),
        (contribution(masked=["1"] * (protocol.MAX_SECURE_VALUES + 1)), "a list of 1 to"),
        (contribution(masked=[str(2**64)]), "a decimal integer from 0"),
        (contribution(masked=["-1"]), "a decimal integer from 0"),
        (contribution(masked=[3]), "a decimal integer from 0"),
        (contribution(masked=["\u00b2"]), "a decimal integer from 0"),
    ],
)
def test_a_malformed_contribution_is_refused(sealed: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        secure.accept_contribution(COUNT, "t/r1", sealed)


def test_the_total_of_masked_counts_is_released_under_the_strictest_profile() -> None:
    identities = {name: generate_identity(name) for name in MEMBERS[:3]}
    counts = {"a-clinic": 17, "b-clinic": 0, "c-clinic": 33}
    profiles = {
        "a-clinic": SmallCellProfile(),
        "b-clinic": SmallCellProfile(name="strict", threshold=20, rounding=10),
        "c-clinic": SmallCellProfile(),
    }
    round_ = RoundView("t/r1", "t", 1, tuple(MEMBERS[:3]), "open")
    held = {}
    for name, identity in identities.items():
        peers = {
            other.name: other.public.encryption_key
            for other in identities.values()
            if other.name != name
        }
        ring = secagg.encode([counts[name]], protocol.SECURE_SCALE_BITS, max_members=3)
        masked = secagg.mask(name, identity.encryption_key, peers, "t/r1", ring)
        held[name] = secure.Contribution(masked=masked, profile=profiles[name])
        assert masked.tolist() != ring.tolist()
    released = secure.total_of(COUNT, round_, held)
    strict = SmallCellProfile.from_json(released["profile"])
    assert (strict.threshold, strict.rounding) == (20, 10)
    assert released["total"] == apply_count(strict, 50).to_json()
    del held["b-clinic"]
    with pytest.raises(TrustError, match="missing b-clinic"):
        secure.total_of(COUNT, round_, held)

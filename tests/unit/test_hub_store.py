"""The hub's registry and task store, on the Alembic-migrated SQLite schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.errors import HubError
from accord.hub.store import HubStore
from accord.trust.keys import generate_identity


@pytest.fixture
def store(tmp_path: Path) -> HubStore:
    return HubStore.open_path(tmp_path / "hub.db")


def register_members(store: HubStore, *names: str) -> None:
    for name in names:
        store.register(generate_identity(name).public, role="node", kind="hospital")


def test_registered_identity_round_trips(store: HubStore) -> None:
    identity = generate_identity("northgate-hospital")
    store.register(identity.public, role="node", kind="hospital")
    public = store.public_identity("northgate-hospital")
    assert public is not None
    assert public.fingerprint() == identity.public.fingerprint()
    assert store.public_identity("nobody") is None


def test_double_registration_is_a_clear_error(store: HubStore) -> None:
    register_members(store, "a-clinic")
    with pytest.raises(HubError, match="already registered"):
        register_members(store, "a-clinic")


@pytest.mark.parametrize(
    ("role", "kind", "message"),
    [("admin", None, "unknown role"), ("node", "bakery", "unknown member kind")],
)
def test_bad_role_or_kind_is_refused(
    store: HubStore, role: str, kind: str | None, message: str
) -> None:
    with pytest.raises(HubError, match=message):
        store.register(generate_identity("x-1").public, role=role, kind=kind)


def test_task_for_unknown_member_is_refused(store: HubStore) -> None:
    register_members(store, "a-clinic")
    store.register(generate_identity("alice").public, role="researcher")
    with pytest.raises(HubError, match="unknown member"):
        store.create_task(created_by="alice", analysis={}, sha256="0" * 64, members=["ghost"])


def test_first_outcome_wins_and_task_completes(store: HubStore) -> None:
    register_members(store, "a-clinic", "b-clinic")
    store.register(generate_identity("alice").public, role="researcher")
    task = store.create_task(
        created_by="alice",
        analysis={"type": "x"},
        sha256="0" * 64,
        members=["a-clinic", "b-clinic"],
    )
    assert [t for t, _ in store.open_assignments("a-clinic")] == [task]
    assert store.record_outcome(task, "a-clinic", result={"n": 1})
    assert not store.record_outcome(task, "a-clinic", result={"n": 2})
    assert store.open_assignments("a-clinic") == []
    view = store.task(task)
    assert view is not None
    assert view.status == "open"
    assert store.record_outcome(task, "b-clinic", reason="not allowlisted")
    view = store.task(task)
    assert view is not None
    assert view.status == "done"
    by_member = {a.member_id: a for a in view.assignments}
    assert by_member["a-clinic"].result == {"n": 1}
    assert by_member["b-clinic"].status == "refused"


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    HubStore.open_path(tmp_path / "hub.db")
    store = HubStore.open_path(tmp_path / "hub.db")
    assert store.members() == []

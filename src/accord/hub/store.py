"""The hub's state: member registry, tasks and per-member assignments.

Kept in SQLAlchemy so the same code runs on SQLite (the embedded default) and PostgreSQL
(a real deployment). The schema is owned by Alembic migrations in ``hub/migrations``;
``HubStore.open`` upgrades the database to the newest revision before use.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import ForeignKey, String, Text, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from accord.errors import HubError
from accord.trust.keys import PublicIdentity

MIGRATIONS = Path(__file__).parent / "migrations"

ROLES = ("node", "researcher")
MEMBER_KINDS = ("hospital", "clinic", "insurer", "trial-site", "public-health")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Base(DeclarativeBase):
    pass


class Principal(Base):
    """A registered key holder: a member's node, or a researcher."""

    __tablename__ = "principals"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str | None] = mapped_column(String(32))
    display_name: Mapped[str] = mapped_column(String(200))
    verify_key: Mapped[str] = mapped_column(String(64))
    encryption_key: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[str] = mapped_column(String(40))


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_by: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    created_at: Mapped[str] = mapped_column(String(40))
    analysis: Mapped[str] = mapped_column(Text)
    analysis_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))


class Assignment(Base):
    """One member's share of a task; at most one result is ever accepted for it."""

    __tablename__ = "assignments"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    result: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[str] = mapped_column(String(40))


class MemberQuality(Base):
    """A member's latest quality-gate status, as its node reported it: no record ids."""

    __tablename__ = "member_quality"

    member_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), primary_key=True)
    submission_id: Mapped[str] = mapped_column(String(64))
    submitted_at: Mapped[str] = mapped_column(String(40))
    decision: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(Text)
    received_at: Mapped[str] = mapped_column(String(40))


OPEN = "open"
DONE = "done"
PENDING = "pending"
REFUSED = "refused"


@dataclass(frozen=True)
class AssignmentView:
    member_id: str
    kind: str | None
    status: str
    result: dict[str, Any] | None
    reason: str | None


@dataclass(frozen=True)
class TaskView:
    id: str
    created_by: str
    created_at: str
    status: str
    analysis: dict[str, Any]
    assignments: tuple[AssignmentView, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "status": self.status,
            "analysis": self.analysis,
            "assignments": [
                {
                    "member": a.member_id,
                    "kind": a.kind,
                    "status": a.status,
                    "result": a.result,
                    "reason": a.reason,
                }
                for a in self.assignments
            ],
        }


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets the CLI read while the hub writes; foreign keys are off by default.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()


class HubStore:
    """Typed operations on the hub database; every method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> HubStore:
        migrate(url)
        engine = create_engine(url)
        if engine.dialect.name == "sqlite":
            _sqlite_pragmas(engine)
        return cls(engine)

    @classmethod
    def open_path(cls, path: Path) -> HubStore:
        return cls.open(f"sqlite:///{path}")

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # -- registry ---------------------------------------------------------------------

    def register(
        self,
        public: PublicIdentity,
        *,
        role: str,
        kind: str | None = None,
        display_name: str | None = None,
    ) -> None:
        if role not in ROLES:
            raise HubError(f"unknown role {role!r}", hint=f"expected one of {', '.join(ROLES)}")
        if role == "node" and kind not in MEMBER_KINDS:
            raise HubError(
                f"unknown member kind {kind!r}", hint=f"expected one of {', '.join(MEMBER_KINDS)}"
            )
        keys = public.to_json()
        try:
            with self._session() as session:
                session.add(
                    Principal(
                        id=public.name,
                        role=role,
                        kind=kind,
                        display_name=display_name or public.name,
                        verify_key=keys["verify_key"],
                        encryption_key=keys["encryption_key"],
                        registered_at=_now(),
                    )
                )
        except IntegrityError:
            raise HubError(
                f"{public.name!r} is already registered",
                hint="choose another name or remove the old registration first",
            ) from None

    def principal(self, name: str) -> Principal | None:
        with self._session() as session:
            return session.get(Principal, name)

    def public_identity(self, name: str) -> PublicIdentity | None:
        row = self.principal(name)
        if row is None:
            return None
        return PublicIdentity.from_json(
            {"name": row.id, "verify_key": row.verify_key, "encryption_key": row.encryption_key}
        )

    def members(self) -> list[Principal]:
        with self._session() as session:
            stmt = select(Principal).where(Principal.role == "node").order_by(Principal.id)
            return list(session.scalars(stmt))

    # -- tasks ------------------------------------------------------------------------

    def create_task(
        self, *, created_by: str, analysis: dict[str, Any], sha256: str, members: list[str]
    ) -> str:
        known = {m.id for m in self.members()}
        unknown = sorted(set(members) - known)
        if unknown:
            raise HubError(
                f"unknown member(s): {', '.join(unknown)}",
                hint=f"registered members are: {', '.join(sorted(known)) or 'none'}",
            )
        task_id = str(uuid.uuid4())
        now = _now()
        with self._session() as session:
            session.add(
                Task(
                    id=task_id,
                    created_by=created_by,
                    created_at=now,
                    analysis=json.dumps(analysis, sort_keys=True),
                    analysis_sha256=sha256,
                    status=OPEN,
                )
            )
            session.flush()
            for member in members:
                session.add(
                    Assignment(task_id=task_id, member_id=member, status=PENDING, updated_at=now)
                )
        return task_id

    def open_assignments(self, member_id: str) -> list[tuple[str, dict[str, Any]]]:
        """Tasks this member still owes a result for, oldest first (the re-sync set)."""
        with self._session() as session:
            stmt = (
                select(Task.id, Task.analysis)
                .join(Assignment, Assignment.task_id == Task.id)
                .where(Assignment.member_id == member_id, Assignment.status == PENDING)
                .order_by(Task.created_at)
            )
            return [(tid, json.loads(analysis)) for tid, analysis in session.execute(stmt)]

    def record_outcome(
        self,
        task_id: str,
        member_id: str,
        *,
        result: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> bool:
        """Store a member's result or refusal; False if one was already accepted.

        The first outcome wins so a result resent after a reconnect is counted once.
        """
        with self._session() as session:
            assignment = session.get(Assignment, (task_id, member_id))
            if assignment is None:
                raise HubError(f"member {member_id!r} has no assignment for task {task_id}")
            if assignment.status != PENDING:
                return False
            assignment.status = DONE if reason is None else REFUSED
            assignment.result = json.dumps(result) if result is not None else None
            assignment.reason = reason
            assignment.updated_at = _now()
            session.flush()
            remaining = session.scalars(
                select(Assignment.member_id).where(
                    Assignment.task_id == task_id, Assignment.status == PENDING
                )
            ).first()
            if remaining is None:
                task = session.get(Task, task_id)
                assert task is not None
                task.status = DONE
            return True

    def task(self, task_id: str) -> TaskView | None:
        with self._session() as session:
            task = session.get(Task, task_id)
            if task is None:
                return None
            rows = session.execute(
                select(Assignment, Principal.kind)
                .join(Principal, Principal.id == Assignment.member_id)
                .where(Assignment.task_id == task_id)
                .order_by(Assignment.member_id)
            ).all()
            return TaskView(
                id=task.id,
                created_by=task.created_by,
                created_at=task.created_at,
                status=task.status,
                analysis=json.loads(task.analysis),
                assignments=tuple(
                    AssignmentView(
                        member_id=a.member_id,
                        kind=kind,
                        status=a.status,
                        result=json.loads(a.result) if a.result else None,
                        reason=a.reason,
                    )
                    for a, kind in rows
                ),
            )

    # -- quality ----------------------------------------------------------------------

    def record_quality(self, member_id: str, status: dict[str, Any]) -> None:
        """Keep a member's newest quality status (validated by the caller); an older
        submission arriving late does not replace a newer one."""
        with self._session() as session:
            row = session.get(MemberQuality, member_id)
            if row is not None and row.submitted_at > status["at"]:
                return
            if row is None:
                row = MemberQuality(member_id=member_id)
                session.add(row)
            row.submission_id = status["submission_id"]
            row.submitted_at = status["at"]
            row.decision = status["decision"]
            row.status = json.dumps(status)
            row.received_at = _now()

    def quality(self) -> list[dict[str, Any]]:
        """Every member's latest quality status, by member; members without one too."""
        with self._session() as session:
            rows = session.execute(
                select(Principal, MemberQuality)
                .outerjoin(MemberQuality, MemberQuality.member_id == Principal.id)
                .where(Principal.role == "node")
                .order_by(Principal.id)
            ).all()
            found = []
            for member, quality in rows:
                status = json.loads(quality.status) if quality is not None else None
                found.append(
                    {
                        "member": member.id,
                        "kind": member.kind,
                        "submission_at": status["at"] if status else None,
                        "decision": status["decision"] if status else None,
                        "kept": status["kept"] if status else None,
                        "counts": status["counts"] if status else None,
                        "checks": status["checks"] if status else [],
                        "received_at": quality.received_at if quality is not None else None,
                    }
                )
            return found

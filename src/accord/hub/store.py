"""The hub's state: member registry, tasks, per-member assignments and secure rounds.

Kept in SQLAlchemy so the same code runs on SQLite (the embedded default) and PostgreSQL
(a real deployment). The schema is owned by Alembic migrations in ``hub/migrations``;
``HubStore.open`` upgrades the database to the newest revision before use.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import ForeignKey, Integer, String, Text, create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from accord.errors import HubError
from accord.protocol import PER_MEMBER, SECURE_SUM
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
    disclosure: Mapped[str] = mapped_column(String(16), default=PER_MEMBER)
    combined: Mapped[str | None] = mapped_column(Text)
    """A secure sum's outcome once its last round ends: the released total, or why none."""


class Assignment(Base):
    """One member's share of a task; at most one result is ever accepted for it."""

    __tablename__ = "assignments"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    result: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[str] = mapped_column(String(40))


class SecureRound(Base):
    """One round of a secure sum: its id (never reused) and the members whose masked
    vectors it sums. The vectors themselves are never stored (the hub keeps them in
    memory until the round ends)."""

    __tablename__ = "secure_rounds"

    round_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"))
    seq: Mapped[int] = mapped_column(Integer)
    members: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[str] = mapped_column(String(40))
    ended_at: Mapped[str | None] = mapped_column(String(40))


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
DELIVERED = "delivered"
"""A member's masked vector reached the hub; it counts once the round completes."""
CANCELLED = "cancelled"
"""A secure sum ended without a total before this member's contribution could count."""

# How a secure round ended.
ROUND_OPEN = "open"
ROUND_COMPLETE = "complete"
ROUND_REPEATED = "repeated"
ROUND_FAILED = "failed"


@dataclass(frozen=True)
class AssignmentView:
    member_id: str
    kind: str | None
    status: str
    result: dict[str, Any] | None
    reason: str | None


@dataclass(frozen=True)
class RoundView:
    round_id: str
    task_id: str
    seq: int
    members: tuple[str, ...]
    status: str


@dataclass(frozen=True)
class TaskView:
    id: str
    created_by: str
    created_at: str
    status: str
    analysis: dict[str, Any]
    assignments: tuple[AssignmentView, ...]
    disclosure: str = PER_MEMBER
    combined: dict[str, Any] | None = None

    @property
    def secure(self) -> bool:
        return self.disclosure == SECURE_SUM

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "status": self.status,
            "disclosure": self.disclosure,
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


def _round_view(row: SecureRound) -> RoundView:
    return RoundView(
        round_id=row.round_id,
        task_id=row.task_id,
        seq=row.seq,
        members=tuple(json.loads(row.members)),
        status=row.status,
    )


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
        self,
        *,
        created_by: str,
        analysis: dict[str, Any],
        sha256: str,
        members: list[str],
        disclosure: str = PER_MEMBER,
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
                    disclosure=disclosure,
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
                disclosure=task.disclosure,
                combined=json.loads(task.combined) if task.combined else None,
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

    # -- secure sums ------------------------------------------------------------------

    def start_round(
        self,
        task_id: str,
        round_id: str,
        members: list[str],
        *,
        dropped: Mapping[str, str],
        previous: str | None = None,
    ) -> None:
        """Begin a round of ``task_id``'s secure sum, in one transaction: the ``previous``
        round (if any) ends as repeated, each ``dropped`` member's assignment is refused
        with its reason, and every member of the new round owes a contribution again."""
        now = _now()
        with self._session() as session:
            task = session.get(Task, task_id)
            if task is None or task.disclosure != SECURE_SUM:
                raise HubError(f"task {task_id} is not a secure sum")
            if previous is not None:
                self._end_round(session, previous, ROUND_REPEATED, now)
            self._drop(session, task_id, dropped, now)
            seq = session.scalar(
                select(func.count()).select_from(SecureRound).where(SecureRound.task_id == task_id)
            )
            session.add(
                SecureRound(
                    round_id=round_id,
                    task_id=task_id,
                    seq=int(seq or 0) + 1,
                    members=json.dumps(sorted(members)),
                    status=ROUND_OPEN,
                    started_at=now,
                )
            )
            for member in members:
                assignment = self._assignment(session, task_id, member)
                assignment.status = PENDING
                assignment.result = None
                assignment.reason = None
                assignment.updated_at = now

    def mark_delivered(self, task_id: str, member_id: str) -> bool:
        """A member's masked vector for the open round arrived; False if it owed none."""
        with self._session() as session:
            assignment = self._assignment(session, task_id, member_id)
            if assignment.status != PENDING:
                return False
            assignment.status = DELIVERED
            assignment.updated_at = _now()
            return True

    def end_secure(
        self,
        task_id: str,
        *,
        round_id: str | None,
        combined: dict[str, Any],
        results: Mapping[str, dict[str, Any]],
        dropped: Mapping[str, str],
    ) -> None:
        """End a secure sum, in one transaction: its last round (if any) completes when
        ``results`` are given and fails otherwise; ``dropped`` members are refused, those
        with a result are done, anyone else still in it is cancelled; the task is done
        with ``combined`` as its outcome."""
        now = _now()
        with self._session() as session:
            task = session.get(Task, task_id)
            if task is None or task.disclosure != SECURE_SUM:
                raise HubError(f"task {task_id} is not a secure sum")
            if round_id is not None:
                self._end_round(session, round_id, ROUND_COMPLETE if results else ROUND_FAILED, now)
            self._drop(session, task_id, dropped, now)
            for assignment in session.scalars(
                select(Assignment).where(
                    Assignment.task_id == task_id,
                    Assignment.status.in_((PENDING, DELIVERED)),
                )
            ):
                result = results.get(assignment.member_id)
                assignment.status = DONE if result is not None else CANCELLED
                assignment.result = json.dumps(result) if result is not None else None
                assignment.reason = (
                    None if result is not None else str(combined.get("withheld", ""))[:500] or None
                )
                assignment.updated_at = now
            task.combined = json.dumps(combined)
            task.status = DONE

    def rounds(self, task_id: str) -> list[RoundView]:
        """A secure sum's rounds, first to last."""
        with self._session() as session:
            rows = session.scalars(
                select(SecureRound).where(SecureRound.task_id == task_id).order_by(SecureRound.seq)
            )
            return [_round_view(row) for row in rows]

    def open_round(self, task_id: str) -> RoundView | None:
        """The round of ``task_id`` still collecting contributions, if any."""
        with self._session() as session:
            row = session.scalars(
                select(SecureRound).where(
                    SecureRound.task_id == task_id, SecureRound.status == ROUND_OPEN
                )
            ).first()
            return _round_view(row) if row is not None else None

    def open_rounds(self) -> list[RoundView]:
        """Every round still collecting contributions, oldest first."""
        with self._session() as session:
            rows = session.scalars(
                select(SecureRound)
                .where(SecureRound.status == ROUND_OPEN)
                .order_by(SecureRound.started_at)
            )
            return [_round_view(row) for row in rows]

    def reopen_delivered(self) -> int:
        """Make every delivered contribution owed again: a restarted hub lost the masked
        vectors it held in memory, and members resend them for the same round."""
        with self._session() as session:
            rows = list(session.scalars(select(Assignment).where(Assignment.status == DELIVERED)))
            for assignment in rows:
                assignment.status = PENDING
            return len(rows)

    @staticmethod
    def _assignment(session: Session, task_id: str, member_id: str) -> Assignment:
        assignment = session.get(Assignment, (task_id, member_id))
        if assignment is None:
            raise HubError(f"member {member_id!r} has no assignment for task {task_id}")
        return assignment

    @staticmethod
    def _end_round(session: Session, round_id: str, status: str, now: str) -> None:
        row = session.get(SecureRound, round_id)
        if row is None or row.status != ROUND_OPEN:
            raise HubError(f"secure round {round_id} is not open")
        row.status = status
        row.ended_at = now

    def _drop(self, session: Session, task_id: str, dropped: Mapping[str, str], now: str) -> None:
        for member, reason in dropped.items():
            assignment = self._assignment(session, task_id, member)
            assignment.status = REFUSED
            assignment.result = None
            assignment.reason = reason[:500]
            assignment.updated_at = now

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

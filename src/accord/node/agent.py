"""The node's long-running agent: one outbound WebSocket to the hub, tasks pushed over it.

The node listens on no port; hospital firewalls allow outbound connections only. After
any disconnect it reconnects with capped, jittered exponential backoff and tells the
operator so; the hub then re-sends every task the member still owes.

Exactly-once results: a sealed result is stored in the node's state database before it
is sent, so a node restarted after computing a result resends that result instead of
running the task again, and the hub keeps only the first outcome per task and member.

Secure sums run in rounds: the node masks its raw sums for a round with pairwise masks
shared with the round's other members (``accord.trust.secagg``) and seals the masked
vector to the hub. Outcomes are kept per task and round, so a round pushed again is
answered from the store while a new round of the same task is computed afresh. The node
masks at most one vector per round id, and refuses a round whose members are not a
strict subset of the previous round's for the same task, a round a later one superseded,
a round with fewer than ``protocol.MIN_SECURE_MEMBERS`` members, and a round listing
another key as its own.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import ssl
import time
from collections.abc import Callable, Coroutine
from contextlib import suppress
from pathlib import Path
from traceback import format_exception
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from numpy.typing import NDArray
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from accord import __version__, protocol
from accord.errors import ConfigError, DataError, NetworkError, TrustError
from accord.node.answers import Refusal
from accord.node.config import NodeConfig, load_patient_key
from accord.node.executor import MemberDatabase, execute
from accord.node.quality import QualitySync
from accord.trust import secagg
from accord.trust.audit import AuditLog
from accord.trust.canonical import b64url_decode, b64url_encode
from accord.trust.envelope import InMemoryNonceStore, ReplayGuard, open_envelope, seal
from accord.trust.hpke import seal_json
from accord.trust.keys import (
    KEY_BYTES,
    Identity,
    PublicIdentity,
    is_valid_name,
    load_identity,
    load_public,
)

Say = Callable[[str], None]

WELCOME_TIMEOUT_SECONDS = 10.0
STABLE_SECONDS = 10.0


class Backoff:
    """Capped exponential backoff with full jitter, so restarted nodes do not stampede."""

    def __init__(self, first: float = 0.5, cap: float = 15.0) -> None:
        self.first, self.cap, self.attempt = first, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2**self.attempt)
        self.attempt += 1
        jittered: float = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - not a secret
        return jittered

    def reset(self) -> None:
        self.attempt = 0


class Outcomes:
    """Sealed results and refusals kept until the hub acknowledges them, per task and
    round (``""`` for a task disclosed member by member), and the secure rounds this node
    took part in."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self._migrate()
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS outcomes (task_id TEXT NOT NULL,"
            " round_id TEXT NOT NULL DEFAULT '', kind TEXT NOT NULL, payload TEXT NOT NULL,"
            " acked INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (task_id, round_id))"
        )
        # One row per round this node agreed to take part in; ``masked`` is set, together
        # with storing the outcome, when its one masked vector for the round is made.
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS secure_rounds (round_id TEXT PRIMARY KEY,"
            " task_id TEXT NOT NULL, seq INTEGER NOT NULL, members TEXT NOT NULL,"
            " masked INTEGER NOT NULL DEFAULT 0)"
        )

    def _migrate(self) -> None:
        # State written before secure sums keyed outcomes by task alone.
        columns = [row[1] for row in self.db.execute("PRAGMA table_info(outcomes)")]
        if not columns or "round_id" in columns:
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("ALTER TABLE outcomes RENAME TO outcomes_by_task")
            self.db.execute(
                "CREATE TABLE outcomes (task_id TEXT NOT NULL, round_id TEXT NOT NULL"
                " DEFAULT '', kind TEXT NOT NULL, payload TEXT NOT NULL, acked INTEGER NOT"
                " NULL DEFAULT 0, PRIMARY KEY (task_id, round_id))"
            )
            self.db.execute(
                "INSERT INTO outcomes (task_id, round_id, kind, payload, acked)"
                " SELECT task_id, '', kind, payload, acked FROM outcomes_by_task"
            )
            self.db.execute("DROP TABLE outcomes_by_task")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def get(self, task_id: str, round_id: str = "") -> tuple[str, dict[str, Any]] | None:
        row = self.db.execute(
            "SELECT kind, payload FROM outcomes WHERE task_id = ? AND round_id = ?",
            (task_id, round_id),
        ).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def put(self, task_id: str, kind: str, payload: dict[str, Any], round_id: str = "") -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO outcomes (task_id, round_id, kind, payload) VALUES (?, ?, ?, ?)",
            (task_id, round_id, kind, json.dumps(payload)),
        )

    def ack(self, task_id: str, round_id: str = "") -> None:
        self.db.execute(
            "UPDATE outcomes SET acked = 1 WHERE task_id = ? AND round_id = ?",
            (task_id, round_id),
        )

    # -- secure rounds ----------------------------------------------------------------

    def recorded_round(self, round_id: str) -> tuple[str, dict[str, str]] | None:
        """The task and members (name to public key) of a round already agreed to."""
        row = self.db.execute(
            "SELECT task_id, members FROM secure_rounds WHERE round_id = ?", (round_id,)
        ).fetchone()
        return (str(row[0]), json.loads(row[1])) if row else None

    def last_round(self, task_id: str) -> tuple[str, dict[str, str]] | None:
        """The latest round of ``task_id`` this node agreed to, and its members."""
        row = self.db.execute(
            "SELECT round_id, members FROM secure_rounds WHERE task_id = ?"
            " ORDER BY seq DESC LIMIT 1",
            (task_id,),
        ).fetchone()
        return (str(row[0]), json.loads(row[1])) if row else None

    def record_round(self, task_id: str, round_id: str, members: dict[str, str]) -> None:
        self.db.execute(
            "INSERT INTO secure_rounds (round_id, task_id, seq, members) VALUES (?, ?,"
            " (SELECT coalesce(max(seq), 0) + 1 FROM secure_rounds WHERE task_id = ?), ?)",
            (round_id, task_id, task_id, json.dumps(members, sort_keys=True)),
        )

    def put_masked(self, task_id: str, round_id: str, payload: dict[str, Any]) -> bool:
        """Store the round's one masked vector as its outcome; False if one was made
        already (the stored one is then the only one ever sent)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            changed = self.db.execute(
                "UPDATE secure_rounds SET masked = 1 WHERE round_id = ? AND task_id = ?"
                " AND masked = 0",
                (round_id, task_id),
            ).rowcount
            if changed == 1:
                self.put(task_id, protocol.TASK_RESULT, payload, round_id)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return changed == 1

    def close(self) -> None:
        self.db.close()


class NodeAgent:
    def __init__(self, config: NodeConfig, *, say: Say = print) -> None:
        self.config = config
        self.say = say
        self.identity: Identity = load_identity(config.key)
        if self.identity.name != config.member:
            raise TrustError(
                f"key {config.key} belongs to {self.identity.name!r}, not {config.member!r}",
                hint="point 'key' at this member's own key file",
            )
        self.hub: PublicIdentity = load_public(config.hub_public_key)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.audit = AuditLog.open(config.state_dir / "audit.db", self.identity)
        self.outcomes = Outcomes(config.state_dir / "outcomes.db")
        self.quality = QualitySync(self.outcomes.db, self.audit)
        self.database = MemberDatabase(config.database)
        self.patient_key = load_patient_key(config.patient_key) if config.patient_key else None
        self.quality_lock = asyncio.Lock()
        self.quality_sent: str | None = None
        self.guard = ReplayGuard(InMemoryNonceStore())
        self.running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.socket: ClientConnection | None = None
        self.connected_once = False
        self.background: set[asyncio.Task[None]] = set()
        self.send_lock = asyncio.Lock()

    def close(self) -> None:
        self.database.close()
        self.outcomes.close()
        self.audit.close()

    # -- envelopes --------------------------------------------------------------------

    def _hub_key(self, name: str) -> Ed25519PublicKey | None:
        return self.hub.verify_key if name == self.hub.name else None

    def _open(self, message: Any, kind: str | None = None) -> dict[str, Any]:
        if not isinstance(message, dict):
            raise TrustError("message from hub is not a signed envelope")
        return open_envelope(
            message, keys=self._hub_key, recipient=self.identity.name, guard=self.guard, kind=kind
        )

    def _seal(self, kind: str, payload: dict[str, Any]) -> str:
        envelope = seal(
            payload,
            sender=self.identity.name,
            recipient=self.hub.name,
            kind=kind,
            key=self.identity.signing_key,
        )
        return json.dumps(envelope)

    async def _send(self, kind: str, payload: dict[str, Any]) -> None:
        socket = self.socket
        if socket is None:
            return  # resent from the outcome store after reconnect
        async with self.send_lock:
            await socket.send(self._seal(kind, payload))

    # -- connection loop --------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop`` is set; gives up only if the hub was never reached."""
        closer = asyncio.create_task(self._close_idle_database(stop))
        try:
            await self._connect_loop(stop)
        finally:
            closer.cancel()

    async def _close_idle_database(self, stop: asyncio.Event) -> None:
        # Lets the data steward's loads in between tasks (see MemberDatabase).
        while not stop.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            self.database.close_if_idle()

    async def _connect_loop(self, stop: asyncio.Event) -> None:
        url = self.config.websocket_url + protocol.NODE_CONNECT_PATH
        backoff = Backoff()
        first_failure: float | None = None
        started = 0.0
        while not stop.is_set():
            try:
                async with connect(
                    url, open_timeout=5, max_size=16 * 2**20, ssl=self._tls()
                ) as socket:
                    started = time.monotonic()
                    await self._session(socket, stop)
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as error:
                self._refused_by_close(error)
                if self.socket is not None and time.monotonic() - started > STABLE_SECONDS:
                    backoff.reset()  # only a session that held resets; flapping keeps backing off
                if self.connected_once:
                    first_failure = None
                now = time.monotonic()
                first_failure = first_failure or now
                waited = now - first_failure
                if not self.connected_once and waited >= self.config.connect_give_up_seconds:
                    raise NetworkError(
                        f"hub at {self.config.hub_url} is not reachable ({_reason(error)})",
                        hint="start the hub, or check hub_url in the node config",
                    ) from None
                delay = backoff.next()
                self.say(
                    f"hub at {self.config.hub_url} unreachable ({_reason(error)});"
                    f" reconnecting, retrying in {delay:.1f}s"
                )
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            except InvalidURI as error:
                raise NetworkError(f"hub_url is not a valid URL: {error}") from None
            finally:
                self.socket = None

    def _tls(self) -> ssl.SSLContext | None:
        if not self.config.websocket_url.startswith("wss://"):
            return None
        cafile = str(self.config.tls_ca) if self.config.tls_ca else None
        try:
            return ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"cannot load tls_ca {cafile}: {error}") from None

    def _refused_by_close(self, error: Exception) -> None:
        closed = error.rcvd if isinstance(error, ConnectionClosed) else None
        if closed is not None and closed.code == protocol.CLOSE_REFUSED:
            raise TrustError(
                f"the hub refused node {self.identity.name!r}: {closed.reason}",
                hint="ask the hub operator to register this node's public key",
            ) from None

    async def _session(self, socket: ClientConnection, stop: asyncio.Event) -> None:
        await socket.send(self._seal(protocol.NODE_HELLO, {"version": __version__}))
        try:
            first = json.loads(await asyncio.wait_for(socket.recv(), WELCOME_TIMEOUT_SECONDS))
        except ValueError:
            raise ConnectionError("the hub answered with something other than JSON") from None
        if isinstance(first, dict) and "error" in first and "sig" not in first:
            raise TrustError(
                f"the hub refused node {self.identity.name!r}: {first['error']}",
                hint="ask the hub operator to register this node's public key",
            )
        try:
            welcome = self._open(first, kind=protocol.NODE_WELCOME)
        except TrustError as error:
            # Not the hub we trust, or a garbled welcome: try again rather than give up.
            raise ConnectionError(f"the hub's welcome failed checks: {error.message}") from None
        self.socket = socket
        self.connected_once = True
        self.say(
            f"connected to hub {self.config.hub_url} as {self.identity.name}"
            f" ({welcome.get('open_tasks', 0)} open task(s))"
        )
        self.audit.append("node.connected", {"hub": self.config.hub_url})
        self.quality_sent = None  # a restarted hub may have lost it: send it again
        await self._report_quality()
        receiver = asyncio.create_task(self._receive(socket))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({receiver, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if receiver in done:
            receiver.result()  # re-raises an abnormal disconnect for the backoff loop
            raise ConnectionError("the hub closed the connection")
        else:
            receiver.cancel()
            await socket.close()

    async def _receive(self, socket: ClientConnection) -> None:
        async for raw in socket:
            try:
                message = json.loads(raw)
                if isinstance(message, dict) and "error" in message and "sig" not in message:
                    self.say(f"hub rejected a message: {str(message['error'])[:200]}")
                    continue
                kind = message.get("kind") if isinstance(message, dict) else None
                payload = self._open(message)
                if kind == protocol.TASK_RUN:
                    self._accept_task(payload)
                elif kind == protocol.TASK_ACK:
                    self.outcomes.ack(str(payload["task_id"]), str(payload.get("round_id") or ""))
            except (TrustError, ValueError, KeyError, TypeError) as error:
                reason = error.message if isinstance(error, TrustError) else type(error).__name__
                self.audit.append("message.rejected", {"reason": reason})
                self.say(f"ignored a message from the hub that failed checks: {reason}")

    # -- quality ----------------------------------------------------------------------

    async def _report_quality(self) -> None:
        """Audit new quality verdicts and send the hub the newest one's status."""
        async with self.quality_lock:
            try:
                status = await asyncio.to_thread(self.quality.sync, self.database)
            except Exception as error:  # a busy or missing database must not stop the node
                self.say(f"could not read the quality gate's verdicts: {type(error).__name__}")
                return
            if status is not None and status["submission_id"] != self.quality_sent:
                try:
                    await self._send(protocol.QUALITY_STATUS, status)
                except (ConnectionClosed, OSError):
                    return  # sent again after the reconnect
                self.quality_sent = status["submission_id"]

    # -- tasks ------------------------------------------------------------------------

    def _accept_task(self, payload: dict[str, Any]) -> None:
        task_id = str(payload["task_id"])
        secure = payload.get("secure")
        round_id = "" if secure is None else _round_id(secure)
        stored = self.outcomes.get(task_id, round_id)
        if stored is not None:
            kind, body = stored
            self.audit.append(
                "task.resent", {"task_id": task_id} | ({"round": round_id} if round_id else {})
            )
            self._in_background(self._send(kind, body))
            return
        if (task_id, round_id) in self.running:
            return  # already executing; a resync pushed it again
        analysis = payload["analysis"]
        if secure is None:
            work = self._run_task(task_id, analysis)
        else:
            try:
                peers = self._join_round(task_id, round_id, secure)
            except Refusal as refusal:
                self._in_background(self._refuse(task_id, refusal, round_id))
                return
            for (running_task, running_round), earlier in list(self.running.items()):
                if running_task == task_id and running_round not in ("", round_id):
                    earlier.cancel()  # the hub moved on to this round; the old one is moot
            work = self._run_secure(task_id, round_id, peers, analysis)
        self.running[(task_id, round_id)] = asyncio.create_task(work)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def _join_round(
        self, task_id: str, round_id: str, secure: dict[str, Any]
    ) -> dict[str, X25519PublicKey]:
        """Agree to take part in a round, or refuse (``Refusal``) saying why; returns the
        peers' public keys as the hub listed them.

        The keys come from the hub, which could list its own in their place and so learn
        the masks: nothing here can tell (see ``accord.trust.secagg`` on key substitution).
        What the node can check it does: its own key is its own, a peer's key does not
        change between rounds of a task, a repeated round drops members and never adds
        any, and a superseded round is not computed again, so the hub cannot rerun a sum
        over member sets of its choosing and subtract the totals. It cannot check that a
        dropped member really failed to deliver (the hub that lies, ``accord.trust.secagg``).
        """
        members = _round_members(secure)
        me = self.identity.name
        own_key = b64url_encode(self.identity.encryption_key.public_key().public_bytes_raw())
        if not round_id.startswith(f"{task_id}/"):
            raise Refusal(f"round {round_id} does not belong to task {task_id}")
        if members.get(me) != own_key:
            raise Refusal(f"round {round_id} does not list this member with its own encryption key")
        if len(members) < protocol.MIN_SECURE_MEMBERS:
            raise Refusal(
                f"round {round_id} has {len(members)} members; this node takes part in "
                f"secure sums of at least {protocol.MIN_SECURE_MEMBERS}"
            )
        recorded = self.outcomes.recorded_round(round_id)
        latest = self.outcomes.last_round(task_id)
        if recorded is not None:
            if recorded != (task_id, members):
                raise Refusal(f"round id {round_id} was used before with other members")
            if latest is not None and latest[0] != round_id:
                raise Refusal(f"round {round_id} was superseded by a later round of the task")
        else:
            if latest is not None:
                previous = latest[1]
                if not set(members) < set(previous):
                    raise Refusal(
                        f"round {round_id} repeats task {task_id} with members that are not "
                        "a strict subset of the previous round's; totals over two member "
                        "sets would reveal the figures of the members in one and not the other"
                    )
                if any(previous[m] != key for m, key in members.items()):
                    raise Refusal(
                        f"round {round_id} lists a member with another key than the "
                        "previous round of the task"
                    )
            self.outcomes.record_round(task_id, round_id, members)
            self.audit.append(
                "task.secure_round",
                {"task_id": task_id, "round": round_id, "members": sorted(members)},
            )
        return {
            name: X25519PublicKey.from_public_bytes(b64url_decode(key))
            for name, key in members.items()
            if name != me
        }

    async def _refuse(self, task_id: str, error: Exception, round_id: str = "") -> None:
        """Store, audit and send a refusal: the member's own reason, never raw details."""
        if not isinstance(error, Refusal):
            # Details stay in the node's own log; the hub gets a reason without them.
            self.say(f"task {task_id} failed: {''.join(format_exception(error)).strip()}")
        body: dict[str, Any] = {"task_id": task_id, "reason": _refusal_reason(error)}
        if round_id:
            body["round_id"] = round_id
        self.outcomes.put(task_id, protocol.TASK_REFUSED, body, round_id)
        self.audit.append("task.refused", body)
        await self._send(protocol.TASK_REFUSED, body)

    async def _run_secure(
        self,
        task_id: str,
        round_id: str,
        peers: dict[str, X25519PublicKey],
        analysis: dict[str, Any],
    ) -> None:
        try:
            self.audit.append("task.received", {"task_id": task_id, "round": round_id})
            await self._report_quality()
            delay = self.config.fault_injection.delay_before_execute
            if delay:
                await asyncio.sleep(delay)
            try:
                if self.config.fault_injection.refuse_secure:
                    raise Refusal("this member does not take part in secure sums")
                result = await asyncio.to_thread(
                    execute,
                    analysis,
                    self.database,
                    self.config.disclosure,
                    patient_key=self.patient_key,
                    secure=True,
                )
                masked = await asyncio.to_thread(self._mask, result["vector"], peers, round_id)
            except Exception as error:  # every failure must still answer the hub
                await self._refuse(task_id, error, round_id)
                return
            contribution = {
                "analysis": result["analysis"],
                "round_id": round_id,
                "masked": [str(value) for value in masked.tolist()],
                "profile": result["profile"],
            }
            sealed = seal_json(
                self.hub.encryption_key,
                contribution,
                info=protocol.secure_info(task_id, round_id, self.identity.name),
            )
            body = {"task_id": task_id, "round_id": round_id, "sealed": sealed}
            if not self.outcomes.put_masked(task_id, round_id, body):
                stored = self.outcomes.get(task_id, round_id)
                if stored is not None:
                    await self._send(*stored)
                return
            self.audit.append(
                "task.secure_contribution",
                {"task_id": task_id, "round": round_id, "members": len(peers) + 1},
            )
            await self._send(protocol.TASK_RESULT, body)
        finally:
            self.running.pop((task_id, round_id), None)

    def _mask(
        self, vector: list[float], peers: dict[str, X25519PublicKey], round_id: str
    ) -> NDArray[np.uint64]:
        """The member's raw sums encoded in the ring and masked for the round."""
        try:
            ring = secagg.encode(vector, protocol.SECURE_SCALE_BITS, max_members=len(peers) + 1)
        except DataError as error:
            self.say(f"round {round_id}: {error.message}")  # the values stay in this log
            raise Refusal(
                "this member's sums are too large to add securely at the consortium's precision"
            ) from None
        return secagg.mask(self.identity.name, self.identity.encryption_key, peers, round_id, ring)

    async def _run_task(self, task_id: str, analysis: dict[str, Any]) -> None:
        try:
            self.audit.append("task.received", {"task_id": task_id})
            await self._report_quality()
            delay = self.config.fault_injection.delay_before_execute
            if delay:
                await asyncio.sleep(delay)
            try:
                result = await asyncio.to_thread(
                    execute,
                    analysis,
                    self.database,
                    self.config.disclosure,
                    patient_key=self.patient_key,
                )
            except Exception as error:  # every failure must still answer the hub
                await self._refuse(task_id, error)
                return
            sealed = seal_json(
                self.hub.encryption_key,
                result,
                info=protocol.result_info(task_id, self.identity.name),
            )
            body = {"task_id": task_id, "sealed": sealed}
            self.outcomes.put(task_id, protocol.TASK_RESULT, body)
            self.audit.append("task.executed", {"task_id": task_id, "display": _display(result)})
            await self._send(protocol.TASK_RESULT, body)
        finally:
            self.running.pop((task_id, ""), None)


def _display(result: dict[str, Any]) -> str:
    """What the audit log says was released: a count as shown, else what kind of result."""
    if "disclosed" in result:
        return str(result["disclosed"]["display"])
    return f"{result['analysis']} result"


def _round_id(secure: object) -> str:
    """The round id of TASK_RUN's ``secure`` field; ValueError if it is not one."""
    if not isinstance(secure, dict):
        raise ValueError("secure: expected an object")
    round_id = secure.get("round_id")
    if not isinstance(round_id, str) or secagg.ROUND_ID_PATTERN.fullmatch(round_id) is None:
        raise ValueError(f"secure.round_id: expected {secagg.ROUND_ID_RULE}")
    return round_id


def _round_members(secure: dict[str, Any]) -> dict[str, str]:
    """A round's members with their public keys (base64url); ValueError if malformed."""
    entries = secure.get("members")
    if not isinstance(entries, list) or len(entries) > secagg.MAX_MEMBERS:
        raise ValueError("secure.members: expected a list of members")
    members: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"member", "encryption_key"}:
            raise ValueError("secure.members: each entry has a member and an encryption_key")
        name, key = entry["member"], entry["encryption_key"]
        if not is_valid_name(name) or name in members:
            raise ValueError("secure.members: member names are valid and listed once")
        if not isinstance(key, str) or len(b64url_decode(key)) != KEY_BYTES:
            raise ValueError(f"secure.members: the key of {name} is not an X25519 public key")
        members[name] = key
    return members


def _refusal_reason(error: Exception) -> str:
    """A reason safe to send to the hub: ours, or the failure's type, never raw details."""
    if isinstance(error, Refusal):
        return str(error)
    return f"the analysis failed at the node ({type(error).__name__}); see the node's log"


def _reason(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:120]

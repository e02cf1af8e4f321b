"""The hub's web service: researchers submit tasks over HTTPS, nodes connect out to it.

Nodes hold one long-lived WebSocket each. The hub pushes a task the moment it is created
to every connected member, and re-sends every task a member still owes after it
reconnects, so nothing depends on a polling interval. Results arrive sealed with HPKE
to the hub's key inside envelopes signed by the node; the first accepted outcome per
member and task wins.

A task disclosed as a secure sum runs in rounds instead (``accord.hub.secure``): the hub
starts a round with the task's connected members and holds their masked vectors in
memory until every one delivered, then releases the total alone. A member that refuses,
or whose node is away when a round starts or leaves before delivering, is dropped and the
round repeated without it, with a new round id, while at least
``protocol.MIN_SECURE_MEMBERS`` remain.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from accord import protocol
from accord.errors import HubError, QueryError, TrustError, UserError
from accord.hub import secure
from accord.hub.aggregation import SECURE_TOTALS, accept_reason, accept_result, summarise
from accord.hub.layout import HubLayout
from accord.hub.quality import accept_quality_status
from accord.hub.store import HubStore, RoundView, TaskView
from accord.query import query_from_json
from accord.trust.audit import AuditLog
from accord.trust.canonical import b64url_decode, canonical_json
from accord.trust.envelope import ReplayGuard, SqliteNonceStore, open_envelope, seal
from accord.trust.hpke import open_json
from accord.trust.keys import Identity
from accord.trust.secagg import Round

log = logging.getLogger("accord.hub")

MAX_WAIT_SECONDS = 30.0


MAX_REQUEST_BYTES = 1 * 2**20
MAX_ANALYSIS_BYTES = 256 * 2**10  # well under what a node accepts in one frame
HELLO_TIMEOUT_SECONDS = 10.0
SEND_TIMEOUT_SECONDS = 10.0
SERVICE_RESTART = 1012
"""The close code a node's socket ends with when this hub shuts down (uvicorn closes the
connections before the app's shutdown runs). Such a node is not dropped from its secure
rounds: they go on once it reconnects to the restarted hub. A node closing with this code
itself only stays owed, as a node that never answers would."""


@dataclass
class NodeLink:
    """A connected node's socket; sends are serialised because pushes come from anywhere."""

    socket: WebSocket
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: dict[str, Any]) -> bool:
        """Send one message; a node that stops reading is dropped so it reconnects."""
        try:
            async with self.lock:
                await asyncio.wait_for(self.socket.send_json(message), SEND_TIMEOUT_SECONDS)
            return True
        except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
            with suppress(Exception):
                await self.socket.close()
            return False


class Hub:
    """Everything one running hub holds: keys, state, audit log and live node links."""

    def __init__(self, layout: HubLayout) -> None:
        self.layout = layout
        self.identity: Identity = layout.identity()
        self.store = HubStore.open_path(layout.database)
        self.audit = AuditLog.open(layout.audit_log, self.identity)
        self.nonces = SqliteNonceStore(layout.nonces)
        self.guard = ReplayGuard(self.nonces)
        self.links: dict[str, NodeLink] = {}
        self.changed = asyncio.Condition()
        self.closing = asyncio.Event()
        # Masked vectors by round id and member: in memory only, and only until their
        # round ends. A restarted hub has none, so members owe them again (and resend
        # what they stored for the same round).
        self.contributions: dict[str, dict[str, secure.Contribution]] = {}
        self.rounds_lock = asyncio.Lock()
        self.store.reopen_delivered()

    def close(self) -> None:
        self.audit.close()
        self.nonces.close()
        self.store.engine.dispose()

    @property
    def name(self) -> str:
        return self.identity.name

    def verify_key(self, role: str) -> Callable[[str], Ed25519PublicKey | None]:
        def lookup(name: str) -> Ed25519PublicKey | None:
            principal = self.store.principal(name)
            if principal is None or principal.role != role:
                return None
            # One query per message: the key is decoded from the row already read.
            return Ed25519PublicKey.from_public_bytes(b64url_decode(principal.verify_key))

        return lookup

    def open(self, envelope: Any, *, role: str, kind: str) -> dict[str, Any]:
        if not isinstance(envelope, dict):
            raise TrustError("message is not a signed envelope")
        return open_envelope(
            envelope, keys=self.verify_key(role), recipient=self.name, guard=self.guard, kind=kind
        )

    def seal_for(self, recipient: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        return seal(
            payload,
            sender=self.name,
            recipient=recipient,
            kind=kind,
            key=self.identity.signing_key,
        )

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    # -- pushing tasks to nodes -------------------------------------------------------

    async def push(
        self,
        member: str,
        task_id: str,
        analysis: dict[str, Any],
        secure_round: dict[str, Any] | None = None,
    ) -> bool:
        """Send TASK_RUN (with the round for a secure sum); False if the node is away."""
        link = self.links.get(member)
        if link is None:
            return False  # sent when the node next connects
        payload: dict[str, Any] = {"task_id": task_id, "analysis": analysis}
        if secure_round is not None:
            payload["secure"] = secure_round
        envelope = self.seal_for(member, protocol.TASK_RUN, payload)
        if not await link.send(envelope):
            log.info("node %s went away before task %s was pushed; it resyncs", member, task_id)
            return False
        return True

    async def resync(self, member: str, task_id: str, analysis: dict[str, Any]) -> None:
        """Push a task the member still owes; for a secure sum, its open round."""
        view = self.store.task(task_id)
        if view is None or not view.secure:
            await self.push(member, task_id, analysis)
            return
        current = self.store.open_round(task_id)
        if current is not None and member in current.members:
            await self.push(member, task_id, analysis, self._round_message(current))

    # -- secure sums ------------------------------------------------------------------

    def _round_message(self, round_: RoundView) -> dict[str, Any]:
        keys = {}
        for member in round_.members:
            principal = self.store.principal(member)
            if principal is None:
                raise HubError(f"member {member!r} of round {round_.round_id} is not registered")
            keys[member] = principal.encryption_key
        return secure.round_message(round_, keys)

    async def start_secure(self, view: TaskView) -> None:
        """Start a secure sum's first round with the task's members."""
        async with self.rounds_lock:
            members = [a.member_id for a in view.assignments]
            await self._run_round(view, members, previous=None, dropped={})

    async def _run_round(
        self,
        view: TaskView,
        candidates: list[str],
        *,
        previous: RoundView | None,
        dropped: dict[str, str],
    ) -> None:
        """Start the next round over ``candidates`` less ``dropped`` (the caller holds
        ``rounds_lock``): members whose node is away are dropped too, and the task ends
        without a total if fewer than the minimum remain."""
        seq = (previous.seq if previous is not None else 0) + 1
        while True:
            if previous is not None:
                self.contributions.pop(previous.round_id, None)  # never summed
            dropped = dict(dropped)
            for member in candidates:
                if member not in dropped and member not in self.links:
                    dropped[member] = secure.NOT_CONNECTED.format(seq=seq)
            remaining = sorted(set(candidates) - set(dropped))
            if len(remaining) < protocol.MIN_SECURE_MEMBERS:
                self._fail_secure(view, remaining, previous=previous, dropped=dropped)
                return
            if previous is None:
                new = Round.start(remaining, task=view.id)
            else:
                old = Round(round_id=previous.round_id, members=frozenset(previous.members))
                new = old.without(old.members - set(remaining))
            self.store.start_round(
                view.id,
                new.round_id,
                remaining,
                dropped=dropped,
                previous=previous.round_id if previous is not None else None,
            )
            self.contributions[new.round_id] = {}
            self.audit.append(
                "task.secure_round",
                {
                    "task_id": view.id,
                    "round": new.round_id,
                    "seq": seq,
                    "members": remaining,
                    "dropped": dropped,
                },
            )
            current = self.store.open_round(view.id)
            assert current is not None
            message = self._round_message(current)
            sent = await asyncio.gather(
                *(self.push(m, view.id, view.analysis, message) for m in remaining)
            )
            await self.notify()
            away = [m for m, ok in zip(remaining, sent, strict=True) if not ok]
            if not away:
                return
            previous, candidates, seq = current, remaining, seq + 1
            dropped = {m: secure.WENT_AWAY.format(seq=current.seq) for m in away}

    def _fail_secure(
        self,
        view: TaskView,
        remaining: list[str],
        *,
        previous: RoundView | None,
        dropped: dict[str, str],
    ) -> None:
        failed = (
            f"no total: {len(remaining)} member(s) remained after dropouts, and a secure sum "
            f"needs at least {protocol.MIN_SECURE_MEMBERS} (with two, each member learns "
            "the other's figure from the total)"
        )
        round_id = previous.round_id if previous is not None else None
        combined = {"status": "failed", "round": round_id, "members": remaining, "withheld": failed}
        self.store.end_secure(
            view.id, round_id=round_id, combined=combined, results={}, dropped=dropped
        )
        self.audit.append(
            "task.secure_failed",
            {"task_id": view.id, "round": round_id, "dropped": dropped, "reason": failed},
        )

    async def _repeat(self, current: RoundView, dropped: dict[str, str]) -> None:
        """Drop members from the open round and run the next one (lock held)."""
        view = self.store.task(current.task_id)
        assert view is not None
        candidates = [m for m in current.members if m not in dropped]
        await self._run_round(view, candidates, previous=current, dropped=dropped)

    async def _complete(self, view: TaskView, current: RoundView) -> None:
        """Every member of the round delivered: sum, release, forget the vectors."""
        held = self.contributions.pop(current.round_id, {})
        members = sorted(current.members)
        try:
            released = secure.total_of(view.analysis, current, held)
        except (ValueError, TrustError) as error:
            reason = error.message if isinstance(error, TrustError) else str(error)
            failed = f"no total: the members' contributions could not be summed ({reason})"
            combined = {
                "status": "failed",
                "round": current.round_id,
                "members": members,
                "withheld": failed[:500],
            }
            self.store.end_secure(
                view.id, round_id=current.round_id, combined=combined, results={}, dropped={}
            )
            self.audit.append(
                "task.secure_failed",
                {"task_id": view.id, "round": current.round_id, "reason": failed[:500]},
            )
            return
        combined = {"status": "complete", "round": current.round_id, "members": members, **released}
        results = {
            m: secure.member_result(view.analysis, current.round_id, held[m].profile)
            for m in members
        }
        self.store.end_secure(
            view.id, round_id=current.round_id, combined=combined, results=results, dropped={}
        )
        self.audit.append(
            "task.secure_total",
            {
                "task_id": view.id,
                "round": current.round_id,
                "members": members,
                "display": secure.display(view.analysis, released),
            },
        )

    async def receive_contribution(
        self, member: str, view: TaskView, payload: dict[str, Any]
    ) -> tuple[str, bool]:
        """A member's sealed masked vector for a round; ``(round_id, accepted)``."""
        round_id = payload.get("round_id")
        if not isinstance(round_id, str):
            raise HubError("a secure sum's result names its round")
        sealed = open_json(
            self.identity.encryption_key,
            str(payload["sealed"]),
            info=protocol.secure_info(view.id, round_id, member),
        )
        async with self.rounds_lock:
            current = self.store.open_round(view.id)
            if current is None or current.round_id != round_id or member not in current.members:
                return round_id, False  # a round that ended: its vectors are gone
            held = self.contributions.setdefault(round_id, {})
            if member in held:
                return round_id, False  # a resend after a reconnect: counted once
            try:
                contribution = secure.accept_contribution(view.analysis, round_id, sealed)
            except ValueError as error:
                reason = secure.refused(f"the hub refused the member's contribution: {error}")
                self.audit.append(
                    "task.result.refused",
                    {"task_id": view.id, "round": round_id, "member": member, "reason": reason},
                )
                await self._repeat(current, {member: reason})
                return round_id, True
            held[member] = contribution
            self.store.mark_delivered(view.id, member)
            self.audit.append(
                "task.secure_contribution",
                {"task_id": view.id, "round": round_id, "member": member},
            )
            if set(held) == set(current.members):
                await self._complete(view, current)
            return round_id, True

    async def receive_secure_refusal(
        self, member: str, view: TaskView, round_id: object, reason: str
    ) -> bool:
        """A member refused its part of a round: the round is repeated without it."""
        async with self.rounds_lock:
            current = self.store.open_round(view.id)
            if (
                current is None
                or member not in current.members
                or (round_id is not None and round_id != current.round_id)
                or member in self.contributions.get(current.round_id, {})
            ):
                return False
            self.audit.append(
                "task.refused",
                {"task_id": view.id, "round": current.round_id, "member": member, "reason": reason},
            )
            await self._repeat(current, {member: secure.refused(reason)})
            return True

    async def member_gone(self, member: str) -> None:
        """A node disconnected: drop it from every open round it has not delivered to.

        Not while the hub shuts down: every node disconnects then, and the rounds go on
        when they reconnect to the restarted hub."""
        if self.closing.is_set():
            return
        async with self.rounds_lock:
            for current in self.store.open_rounds():
                held = self.contributions.get(current.round_id, {})
                if member in current.members and member not in held:
                    reason = secure.DISCONNECTED.format(seq=current.seq)
                    await self._repeat(current, {member: reason})

    # -- handling what nodes send -----------------------------------------------------

    async def receive_outcome(self, link: NodeLink, member: str, message: Any) -> None:
        if not isinstance(message, dict):
            raise TrustError("message is not a signed envelope")
        kind = message.get("kind")
        if kind == protocol.QUALITY_STATUS:
            payload = self.open(message, role="node", kind=protocol.QUALITY_STATUS)
            self._check_sender(message, member)
            try:
                status = accept_quality_status(payload)
            except ValueError as error:
                raise HubError(f"quality status refused: {error}") from None
            self.store.record_quality(member, status)
            self.audit.append(
                "quality.status",
                {
                    "member": member,
                    "submission_id": status["submission_id"],
                    "decision": status["decision"],
                    "counts": status["counts"],
                },
            )
            await self.notify()
            return
        if kind == protocol.TASK_RESULT:
            payload = self.open(message, role="node", kind=protocol.TASK_RESULT)
            self._check_sender(message, member)
            task_id = str(payload["task_id"])
            view = self.store.task(task_id)
            if view is not None and view.secure:
                round_id, accepted = await self.receive_contribution(member, view, payload)
                await link.send(
                    self.seal_for(
                        member,
                        protocol.TASK_ACK,
                        {"task_id": task_id, "round_id": round_id, "accepted": accepted},
                    )
                )
                await self.notify()
                return
            sealed = open_json(
                self.identity.encryption_key,
                str(payload["sealed"]),
                info=protocol.result_info(task_id, member),
            )
            try:
                if view is None:
                    raise ValueError(f"there is no task {task_id}")
                result = accept_result(view.analysis, sealed)
            except ValueError as error:
                # Fail closed but finish: the member's share ends refused, nothing released.
                reason = f"the hub refused the member's result: {error}"[:500]
                accepted = self.store.record_outcome(task_id, member, reason=reason)
                if accepted:
                    self.audit.append(
                        "task.result.refused",
                        {"task_id": task_id, "member": member, "reason": reason},
                    )
            else:
                accepted = self.store.record_outcome(task_id, member, result=result)
                if accepted:
                    self.audit.append(
                        "task.result",
                        {"task_id": task_id, "member": member, "display": _display(result)},
                    )
        elif kind == protocol.TASK_REFUSED:
            payload = self.open(message, role="node", kind=protocol.TASK_REFUSED)
            self._check_sender(message, member)
            task_id = str(payload["task_id"])
            reason = accept_reason(payload.get("reason"))
            view = self.store.task(task_id)
            named_round = payload.get("round_id")
            if view is not None and view.secure:
                accepted = await self.receive_secure_refusal(member, view, named_round, reason)
            else:
                accepted = self.store.record_outcome(task_id, member, reason=reason)
                if accepted:
                    self.audit.append(
                        "task.refused", {"task_id": task_id, "member": member, "reason": reason}
                    )
            if isinstance(named_round, str):
                await link.send(
                    self.seal_for(
                        member,
                        protocol.TASK_ACK,
                        {"task_id": task_id, "round_id": named_round, "accepted": accepted},
                    )
                )
                await self.notify()
                return
        else:
            raise TrustError(f"unexpected message kind {kind!r} from node {member!r}")
        # The ack goes back on the connection the outcome came on, not whichever is newest.
        await link.send(
            self.seal_for(member, protocol.TASK_ACK, {"task_id": task_id, "accepted": accepted})
        )
        await self.notify()

    @staticmethod
    def _check_sender(message: dict[str, Any], member: str) -> None:
        # A node may only speak for itself on its own connection.
        if message.get("sender") != member:
            raise TrustError("envelope sender does not match the connected node")


def _display(result: dict[str, Any]) -> str:
    """What the audit log says was released: a count as shown, else what kind of result."""
    disclosed = result.get("disclosed")
    if isinstance(disclosed, dict):
        return str(disclosed.get("display"))
    return f"{result.get('analysis')} result"


def create_app(hub_dir: Path) -> FastAPI:
    """The hub's FastAPI application, with its state kept under ``hub_dir``."""
    layout = HubLayout(hub_dir)
    layout.require_initialised()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub = Hub(layout)
        app.state.hub = hub
        yield
        hub.closing.set()
        await hub.notify()
        for link in list(hub.links.values()):
            with suppress(Exception):
                await link.socket.close()
        hub.close()

    app = FastAPI(title="Accord hub", version="1", lifespan=lifespan)

    def hub_of(app_: Any) -> Hub:
        hub: Hub = app_.state.hub
        return hub

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_REQUEST_BYTES):
            return JSONResponse(
                {"detail": f"request body over {MAX_REQUEST_BYTES} bytes"}, status_code=413
            )
        return await call_next(request)

    @app.get(f"{protocol.API_PREFIX}/health")
    async def health() -> dict[str, Any]:
        hub = hub_of(app)
        return {"status": "ok", "hub": hub.name, "connected": sorted(hub.links)}

    @app.get(f"{protocol.API_PREFIX}/identity")
    async def identity() -> dict[str, str]:
        return hub_of(app).identity.public.to_json()

    @app.post(f"{protocol.API_PREFIX}/tasks")
    async def create_task(envelope: dict[str, Any]) -> dict[str, Any]:
        hub = hub_of(app)
        try:
            payload = hub.open(envelope, role="researcher", kind=protocol.TASK_CREATE)
            query = query_from_json(payload.get("analysis"))
        except (TrustError, QueryError) as error:
            # The sender is only claimed: an unauthenticated request proves nothing.
            hub.audit.append(
                "task.rejected",
                {"claimed_sender": str(envelope.get("sender"))[:64], "reason": error.message},
            )
            raise HTTPException(status_code=_status(error), detail=error.message) from None
        analysis = query.to_json()
        encoded = canonical_json(analysis)
        if len(encoded) > MAX_ANALYSIS_BYTES:
            raise HTTPException(413, f"analysis over {MAX_ANALYSIS_BYTES} bytes")
        all_members = [m.id for m in hub.store.members()]
        members = _requested_members(payload.get("members"), all_members)
        disclosure = _disclosure(payload.get("disclosure"), analysis, members)
        digest = hashlib.sha256(encoded).hexdigest()
        researcher = str(envelope["sender"])
        try:
            task_id = hub.store.create_task(
                created_by=researcher,
                analysis=analysis,
                sha256=digest,
                members=members,
                disclosure=disclosure,
            )
        except HubError as error:
            raise HTTPException(404, str(error)) from None
        hub.audit.append(
            "task.dispatched",
            {
                "task_id": task_id,
                "by": researcher,
                "analysis_sha256": digest,
                "members": members,
                "disclosure": disclosure,
            },
        )
        if disclosure == protocol.SECURE_SUM:
            view = hub.store.task(task_id)
            assert view is not None
            await hub.start_secure(view)
        else:
            await asyncio.gather(*(hub.push(member, task_id, analysis) for member in members))
        return {"task_id": task_id, "members": members, "disclosure": disclosure}

    @app.post(f"{protocol.API_PREFIX}/tasks/{{task_id}}/wait")
    async def wait_task(task_id: str, envelope: dict[str, Any]) -> dict[str, Any]:
        """Long-poll a task: answers at once if it changed since ``seen``, else on change
        (or, with ``until_done``, once every member has answered)."""
        hub = hub_of(app)
        try:
            payload = hub.open(envelope, role="researcher", kind=protocol.TASK_READ)
        except TrustError as error:
            raise HTTPException(401, error.message) from None
        view = hub.store.task(task_id)
        if view is None or view.created_by != envelope["sender"]:
            raise HTTPException(404, f"no task {task_id} for {envelope['sender']}")
        seen = str(payload.get("seen", ""))
        timeout = _wait_seconds(payload.get("wait_seconds", 0))
        # A caller that shows no progress waits for the end in one request.
        until_done = payload.get("until_done") is True
        deadline = asyncio.get_running_loop().time() + timeout
        while (
            view.status != "done"
            and (until_done or _fingerprint(view.to_json()) == seen)
            and not hub.closing.is_set()
        ):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            async with hub.changed:
                with suppress(TimeoutError):
                    await asyncio.wait_for(hub.changed.wait(), remaining)
            refreshed = hub.store.task(task_id)
            assert refreshed is not None
            view = refreshed
        body = view.to_json()
        if view.secure:
            body["summary"] = secure.summary(view, hub.store.rounds(task_id))
        else:
            body["summary"] = summarise(view)
        body["fingerprint"] = _fingerprint(view.to_json())
        return body

    @app.post(f"{protocol.API_PREFIX}/quality")
    async def quality(envelope: dict[str, Any]) -> dict[str, Any]:
        """Every member's latest quality-gate status: per check a status and a percentage."""
        hub = hub_of(app)
        try:
            hub.open(envelope, role="researcher", kind=protocol.QUALITY_READ)
        except TrustError as error:
            raise HTTPException(401, error.message) from None
        return {"members": hub.store.quality()}

    @app.websocket(protocol.NODE_CONNECT_PATH)
    async def node_connect(socket: WebSocket) -> None:
        hub = hub_of(app)
        await socket.accept()
        hello: Any = None
        try:
            text = await asyncio.wait_for(socket.receive_text(), HELLO_TIMEOUT_SECONDS)
            hello = json.loads(text)
            payload = hub.open(hello, role="node", kind=protocol.NODE_HELLO)
        except WebSocketDisconnect:
            return
        except (TimeoutError, TrustError, *MALFORMED) as error:
            # Before RuntimeError: RecursionError from deeply nested JSON is one.
            reason = _refusal(error)
            claimed = hello.get("sender") if isinstance(hello, dict) else None
            hub.audit.append("node.refused", {"claimed": str(claimed)[:64], "reason": reason})
            with suppress(Exception):
                await socket.send_json({"error": reason})
                await socket.close(code=protocol.CLOSE_REFUSED, reason=reason[:120])
            return
        except RuntimeError:
            return  # the socket closed under us
        member = str(hello["sender"])
        link = NodeLink(socket)
        restarting = False
        # Welcome first, then publish the link: nothing may reach the node before it.
        open_tasks = hub.store.open_assignments(member)
        welcome = hub.seal_for(member, protocol.NODE_WELCOME, {"open_tasks": len(open_tasks)})
        if not await link.send(welcome):
            return
        previous, hub.links[member] = hub.links.get(member), link
        try:
            if previous is not None:
                with suppress(Exception):
                    await previous.socket.close()
            hub.audit.append(
                "node.connected",
                {
                    "member": member,
                    "version": str(payload.get("version"))[:40],
                    "resync": len(open_tasks),
                },
            )
            for task_id, analysis in open_tasks:
                await hub.resync(member, task_id, analysis)
            await hub.notify()
            while True:
                text = await socket.receive_text()
                try:
                    await hub.receive_outcome(link, member, json.loads(text))
                except (TrustError, HubError, *MALFORMED) as error:
                    reason = _refusal(error)
                    hub.audit.append("message.rejected", {"member": member, "reason": reason})
                    await link.send({"error": reason})
        except WebSocketDisconnect as error:
            restarting = error.code == SERVICE_RESTART
        except (RuntimeError, KeyError):
            pass  # KeyError: a binary frame where text was expected
        finally:
            if hub.links.get(member) is link:
                del hub.links[member]
                hub.audit.append("node.disconnected", {"member": member})
                if not restarting:
                    await hub.member_gone(member)
            await hub.notify()

    return app


# What malformed JSON from a peer can raise while it is parsed or read.
MALFORMED = (ValueError, KeyError, TypeError, RecursionError)


def _refusal(error: BaseException) -> str:
    if isinstance(error, UserError):
        return error.message[:200]
    if isinstance(error, TimeoutError):
        return "no hello within the time allowed"
    return f"malformed message ({type(error).__name__})"


def _requested_members(requested: Any, all_members: list[str]) -> list[str]:
    if requested is None:
        return all_members
    if (
        not isinstance(requested, list)
        or not requested
        or not all(isinstance(m, str) and m for m in requested)
    ):
        raise HTTPException(422, "members: expected a non-empty list of member ids, or null")
    if len(set(requested)) != len(requested):
        raise HTTPException(422, "members: each member may be named once")
    return list(requested)


def _disclosure(requested: Any, analysis: dict[str, Any], members: list[str]) -> str:
    """The task's disclosure mode, or 422 saying why it cannot be used for this task."""
    if requested is None:
        return protocol.PER_MEMBER
    if requested not in protocol.DISCLOSURE_MODES:
        raise HTTPException(
            422,
            f"disclosure: expected one of {', '.join(protocol.DISCLOSURE_MODES)}, "
            f"got {str(requested)[:40]!r}",
        )
    if requested == protocol.SECURE_SUM:
        kind = str(analysis.get("type"))
        if kind not in SECURE_TOTALS:
            raise HTTPException(
                422,
                f"disclosure secure_sum: {kind} cannot be computed by secure aggregation "
                f"(it can for {', '.join(sorted(SECURE_TOTALS))}); use per_member",
            )
        if len(members) < protocol.MIN_SECURE_MEMBERS:
            raise HTTPException(
                422,
                f"disclosure secure_sum needs at least {protocol.MIN_SECURE_MEMBERS} members, "
                f"got {len(members)}: with two, each member learns the other's figure from "
                "the total",
            )
    return str(requested)


def _wait_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HTTPException(422, "wait_seconds: expected a finite number of seconds")
    return max(0.0, min(float(value), MAX_WAIT_SECONDS))


def _status(error: Exception) -> int:
    return 401 if isinstance(error, TrustError) else 422


def _fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()[:16]

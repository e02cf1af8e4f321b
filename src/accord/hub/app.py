"""The hub's web service: researchers submit tasks over HTTPS, nodes connect out to it.

Nodes hold one long-lived WebSocket each. The hub pushes a task the moment it is created
to every connected member, and re-sends every task a member still owes after it
reconnects, so nothing depends on a polling interval. Results arrive sealed with HPKE
to the hub's key inside envelopes signed by the node; the first accepted outcome per
member and task wins.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, HTTPException, WebSocket, WebSocketDisconnect

from accord import protocol
from accord.errors import HubError, QueryError, TrustError
from accord.hub.aggregation import summarise
from accord.hub.layout import HubLayout
from accord.hub.store import HubStore
from accord.query import query_from_json
from accord.trust.audit import AuditLog
from accord.trust.canonical import canonical_json
from accord.trust.envelope import ReplayGuard, SqliteNonceStore, open_envelope, seal
from accord.trust.hpke import open_json
from accord.trust.keys import Identity

log = logging.getLogger("accord.hub")

MAX_WAIT_SECONDS = 30.0


@dataclass
class NodeLink:
    """A connected node's socket; sends are serialised because pushes come from anywhere."""

    socket: WebSocket
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Hub:
    """Everything one running hub holds: keys, state, audit log and live node links."""

    def __init__(self, layout: HubLayout) -> None:
        self.layout = layout
        self.identity: Identity = layout.identity()
        self.store = HubStore.open_path(layout.database)
        self.audit = AuditLog.open(layout.audit_log, self.identity)
        self.guard = ReplayGuard(SqliteNonceStore(layout.nonces))
        self.links: dict[str, NodeLink] = {}
        self.changed = asyncio.Condition()

    @property
    def name(self) -> str:
        return self.identity.name

    def verify_key(self, role: str) -> Any:
        def lookup(name: str) -> Ed25519PublicKey | None:
            principal = self.store.principal(name)
            if principal is None or principal.role != role:
                return None
            public = self.store.public_identity(name)
            return public.verify_key if public else None

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

    async def push(self, member: str, task_id: str, analysis: dict[str, Any]) -> None:
        link = self.links.get(member)
        if link is None:
            return  # sent when the node next connects
        envelope = self.seal_for(
            member, protocol.TASK_RUN, {"task_id": task_id, "analysis": analysis}
        )
        try:
            async with link.lock:
                await link.socket.send_json(envelope)
        except (WebSocketDisconnect, RuntimeError):
            log.info("node %s went away before task %s was pushed; it resyncs", member, task_id)

    # -- handling what nodes send -----------------------------------------------------

    async def receive_outcome(self, member: str, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        if kind == protocol.TASK_RESULT:
            payload = self.open(message, role="node", kind=protocol.TASK_RESULT)
            self._check_sender(message, member)
            task_id = str(payload["task_id"])
            result = open_json(
                self.identity.encryption_key,
                str(payload["sealed"]),
                info=protocol.result_info(task_id, member),
            )
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
            reason = str(payload["reason"])
            accepted = self.store.record_outcome(task_id, member, reason=reason)
            if accepted:
                self.audit.append(
                    "task.refused", {"task_id": task_id, "member": member, "reason": reason}
                )
        else:
            raise TrustError(f"unexpected message kind {kind!r} from node {member!r}")
        ack = self.seal_for(member, protocol.TASK_ACK, {"task_id": task_id, "accepted": accepted})
        link = self.links.get(member)
        if link is not None:
            async with link.lock:
                await link.socket.send_json(ack)
        await self.notify()

    @staticmethod
    def _check_sender(message: dict[str, Any], member: str) -> None:
        # A node may only speak for itself on its own connection.
        if message.get("sender") != member:
            raise TrustError("envelope sender does not match the connected node")


def _display(result: dict[str, Any]) -> str:
    disclosed = result.get("disclosed")
    return str(disclosed.get("display")) if isinstance(disclosed, dict) else "?"


def create_app(hub_dir: Path) -> FastAPI:
    """The hub's FastAPI application, with its state kept under ``hub_dir``."""
    layout = HubLayout(hub_dir)
    layout.require_initialised()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.hub = Hub(layout)
        yield
        for link in list(app.state.hub.links.values()):
            with suppress(Exception):
                await link.socket.close()

    app = FastAPI(title="Accord hub", version="1", lifespan=lifespan)

    def hub_of(app_: Any) -> Hub:
        hub: Hub = app_.state.hub
        return hub

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
            hub.audit.append(
                "task.rejected", {"by": str(envelope.get("sender")), "reason": error.message}
            )
            raise HTTPException(status_code=_status(error), detail=error.message) from None
        analysis = query.to_json()
        members = payload.get("members") or [m.id for m in hub.store.members()]
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise HTTPException(422, "members: expected a list of member ids")
        digest = hashlib.sha256(canonical_json(analysis)).hexdigest()
        researcher = str(envelope["sender"])
        try:
            task_id = hub.store.create_task(
                created_by=researcher, analysis=analysis, sha256=digest, members=members
            )
        except HubError as error:
            raise HTTPException(404, str(error)) from None
        hub.audit.append(
            "task.dispatched",
            {"task_id": task_id, "by": researcher, "analysis_sha256": digest, "members": members},
        )
        for member in members:
            await hub.push(member, task_id, analysis)
        return {"task_id": task_id, "members": members}

    @app.post(f"{protocol.API_PREFIX}/tasks/{{task_id}}/wait")
    async def wait_task(task_id: str, envelope: dict[str, Any]) -> dict[str, Any]:
        """Long-poll a task: answers at once if it changed since ``seen``, else on change."""
        hub = hub_of(app)
        try:
            payload = hub.open(envelope, role="researcher", kind=protocol.TASK_READ)
        except TrustError as error:
            raise HTTPException(401, error.message) from None
        view = hub.store.task(task_id)
        if view is None or view.created_by != envelope["sender"]:
            raise HTTPException(404, f"no task {task_id} for {envelope['sender']}")
        seen = str(payload.get("seen", ""))
        timeout = min(float(payload.get("wait_seconds", 0)), MAX_WAIT_SECONDS)
        deadline = asyncio.get_running_loop().time() + timeout
        while view.status != "done" and _fingerprint(view.to_json()) == seen:
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
        body["summary"] = summarise(view)
        body["fingerprint"] = _fingerprint(view.to_json())
        return body

    @app.websocket(protocol.NODE_CONNECT_PATH)
    async def node_connect(socket: WebSocket) -> None:
        hub = hub_of(app)
        await socket.accept()
        try:
            hello = await socket.receive_json()
            payload = hub.open(hello, role="node", kind=protocol.NODE_HELLO)
        except (TrustError, ValueError, KeyError) as error:
            reason = error.message if isinstance(error, TrustError) else "malformed hello"
            sender = hello.get("sender") if isinstance(locals().get("hello"), dict) else None
            hub.audit.append("node.refused", {"claimed": str(sender), "reason": reason})
            await socket.send_json({"error": reason})
            await socket.close(code=protocol.CLOSE_REFUSED)
            return
        member = str(hello["sender"])
        previous = hub.links.get(member)
        link = NodeLink(socket)
        hub.links[member] = link
        if previous is not None:
            with suppress(Exception):
                await previous.socket.close()
        open_tasks = hub.store.open_assignments(member)
        hub.audit.append(
            "node.connected",
            {"member": member, "version": str(payload.get("version")), "resync": len(open_tasks)},
        )
        async with link.lock:
            await socket.send_json(
                hub.seal_for(member, protocol.NODE_WELCOME, {"open_tasks": len(open_tasks)})
            )
        for task_id, analysis in open_tasks:
            await hub.push(member, task_id, analysis)
        await hub.notify()
        try:
            while True:
                message = await socket.receive_json()
                try:
                    await hub.receive_outcome(member, message)
                except (TrustError, HubError, KeyError, ValueError) as error:
                    hub.audit.append(
                        "message.rejected", {"member": member, "reason": str(error)[:200]}
                    )
                    async with link.lock:
                        await socket.send_json({"error": str(error)[:200]})
        except WebSocketDisconnect:
            pass
        finally:
            if hub.links.get(member) is link:
                del hub.links[member]
                hub.audit.append("node.disconnected", {"member": member})
            await hub.notify()

    return app


def _status(error: Exception) -> int:
    return 401 if isinstance(error, TrustError) else 422


def _fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()[:16]

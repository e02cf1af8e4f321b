"""A real consortium for tests: hub and node processes on loopback, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from accord.demo import Consortium, DemoLayout, free_port, prepare
from accord.synth import ConsortiumManifest

MEMBERS = 3
PERSONS = 400


class Running:
    def __init__(self, consortium: Consortium, manifest: ConsortiumManifest) -> None:
        self.consortium = consortium
        self.manifest = manifest
        self.layout: DemoLayout = consortium.layout
        self.ids = [m.id for m in manifest.members]

    @property
    def as_of(self) -> date:
        return self.manifest.as_of


def start_consortium(
    root: Path, *, persons: int = PERSONS, members: int = MEMBERS
) -> Iterator[Running]:
    port = free_port()
    manifest = prepare(
        root, members=members, persons=persons, seed=11, hub_url=f"http://127.0.0.1:{port}"
    )
    consortium = Consortium(DemoLayout(root), "127.0.0.1", port)
    try:
        consortium.start_hub()
        for member in manifest.members:
            consortium.start_node(member.id)
        consortium.wait_connected([m.id for m in manifest.members])
        yield Running(consortium, manifest)
    finally:
        consortium.stop()


def node_socket_url(running: Running) -> str:
    """Where nodes connect: the hub's WebSocket endpoint."""
    from accord import protocol

    return running.consortium.url.replace("http://", "ws://") + protocol.NODE_CONNECT_PATH


def node_hello(running: Running, key_of: str, *, claiming: str | None = None) -> dict[str, Any]:
    """A hello signed with ``key_of``'s node key, claiming to be ``claiming`` (itself)."""
    from accord import protocol
    from accord.trust.envelope import seal
    from accord.trust.keys import load_identity

    key = load_identity(running.layout.nodes / key_of / f"{key_of}.key")
    return seal(
        {"version": "test"},
        sender=claiming or key_of,
        recipient="hub",
        kind=protocol.NODE_HELLO,
        key=key.signing_key,
    )

"""A real consortium for integration tests: hub and node processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

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


def start_consortium(root: Path) -> Iterator[Running]:
    port = free_port()
    manifest = prepare(
        root, members=MEMBERS, persons=PERSONS, seed=11, hub_url=f"http://127.0.0.1:{port}"
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


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from start_consortium(tmp_path_factory.mktemp("consortium"))


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Running]:
    """A consortium of its own, for tests that kill or reconfigure processes."""
    yield from start_consortium(tmp_path / "consortium")

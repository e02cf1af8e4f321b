"""A consortium of real processes on loopback, for the benchmarks that time tasks.

The hub and one node per member run as separate processes, exactly as ``accord demo``
starts them: every task crosses signatures, HPKE sealing and the loopback network.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from accord.client import Client
from accord.demo import Consortium, DemoLayout, free_port, prepare
from accord.synth import ConsortiumManifest
from accord.trust.keys import load_identity


@dataclass(frozen=True)
class Running:
    """What a benchmark gets: the processes, the members' ground truth, a researcher."""

    consortium: Consortium
    manifest: ConsortiumManifest
    client: Client
    layout: DemoLayout

    def member_database(self, member: str) -> Path:
        entry = next(m for m in self.manifest.members if m.id == member)
        return self.layout.members / entry.db_file


@contextmanager
def running_consortium(
    *,
    members: int,
    persons: int,
    seed: int = 11,
    progress: Callable[[str, int, int], None] | None = None,
) -> Iterator[Running]:
    """Lay out a consortium in a temporary directory, start it, and stop it afterwards."""
    with tempfile.TemporaryDirectory(prefix="accord-bench-") as directory:
        root = Path(directory)
        port = free_port()
        manifest = prepare(
            root,
            members=members,
            persons=persons,
            seed=seed,
            hub_url=f"http://127.0.0.1:{port}",
            progress=progress,
        )
        layout = DemoLayout(root)
        ids = [m.id for m in manifest.members]
        with Consortium(layout, "127.0.0.1", port) as consortium:
            consortium.start_hub()
            for member in ids:
                consortium.start_node(member)
            consortium.wait_connected(ids, timeout=120)
            identity = load_identity(layout.researcher_key)
            with Client(consortium.url, identity) as client:
                yield Running(consortium, manifest, client, layout)

"""A whole consortium on one machine: synthetic members, a hub and one node per member.

Every part runs as its own process on loopback and talks the same protocol as a real
deployment; only the data is synthetic. ``prepare`` lays the consortium out on disk,
``Consortium`` starts and stops its processes.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from accord.errors import NetworkError, NodeError
from accord.hub.layout import HubLayout
from accord.hub.store import HubStore
from accord.node.config import DatabaseConfig, NodeConfig, write_node_config
from accord.quality.gate import submit_database
from accord.synth import ConsortiumManifest, generate_consortium
from accord.trust.keys import generate_identity, write_identity

RESEARCHER = "demo-researcher"

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DemoLayout:
    root: Path

    @property
    def members(self) -> Path:
        return self.root / "members"

    @property
    def hub(self) -> Path:
        return self.root / "hub"

    @property
    def nodes(self) -> Path:
        return self.root / "nodes"

    @property
    def researcher_key(self) -> Path:
        return self.root / "researchers" / f"{RESEARCHER}.key"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def node_config(self, member: str) -> Path:
        return self.nodes / member / "node.json"

    @property
    def manifest(self) -> Path:
        return self.members / "manifest.json"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


NATIONAL_ID_SYSTEM = "urn:oid:2.16.840.1.113883.4.1"

# How the first members' data arrives; the rest already hold an OMOP CDM.
SOURCE_FORMATS = ("FHIR R4 ndjson", "legacy CSV (ICD-9-CM)", "OMOP CDM CSV")


def arrive_in_source_formats(
    layout: DemoLayout, manifest: ConsortiumManifest, progress: Progress | None = None
) -> dict[str, tuple[str, str]]:
    """Export the first members to source formats and harmonise them back into a CDM.

    Each such member's node then serves the harmonised database, so the federated count
    runs on data that went through the ingestion pipeline. Returns, per member, the
    source format and the database file its node uses.
    """
    from accord.ingest import CdmTarget, LoadReport
    from accord.ingest.csv import ingest_csv
    from accord.ingest.fhir import ingest_fhir
    from accord.ingest.omop import ingest_omop_csv
    from accord.synth.export_csv import export_legacy_csv
    from accord.synth.export_fhir import export_fhir
    from accord.synth.export_omop import export_omop_csv
    from accord.vocab import load_starter_vocabulary

    arrived: dict[str, tuple[str, str]] = {}
    for index, (member, label) in enumerate(zip(manifest.members, SOURCE_FORMATS, strict=False)):
        original = layout.members / member.db_file
        source = layout.members / f"{member.id}-source"
        harmonised = f"{member.id}.harmonised.duckdb"
        report = LoadReport(kind=label, source=str(source), rejects_path=source / "rejects.ndjson")
        with CdmTarget.open(layout.members / harmonised) as target:
            if index == 0:
                export_fhir(original, source, national_id_system=NATIONAL_ID_SYSTEM)
                load_starter_vocabulary(target.connection)
                ingest_fhir(source, target, report, national_id_system=NATIONAL_ID_SYSTEM)
            elif index == 1:
                mapping = export_legacy_csv(original, source)
                load_starter_vocabulary(target.connection)
                ingest_csv(mapping, target, report)
            else:
                export_omop_csv(original, source)
                ingest_omop_csv(source, target, report)
        report.write(source / "load-report.json")
        arrived[member.id] = (label, harmonised)
        if progress is not None:
            progress("harmonising source formats", index + 1, len(SOURCE_FORMATS))
    return arrived


def prepare(
    root: Path,
    *,
    members: int,
    persons: int,
    seed: int,
    hub_url: str,
    progress: Progress | None = None,
    source_formats: bool = False,
) -> ConsortiumManifest:
    """Generate members' data, keys, the hub's registry and each node's config.

    With ``source_formats``, the first members arrive as FHIR, legacy CSV and OMOP CSV
    and are harmonised before their nodes start.
    """
    layout = DemoLayout(root)
    manifest = generate_consortium(
        layout.members, members=members, persons_per_member=persons, seed=seed, progress=progress
    )
    arrived = arrive_in_source_formats(layout, manifest, progress) if source_formats else {}
    # Members written straight into a CDM are judged as they stand; harmonised ones were
    # judged by their loads. A node serves no data the gate has not seen.
    for index, member in enumerate(manifest.members):
        if member.id not in arrived:
            submit_database(
                layout.members / member.db_file,
                kind="synth",
                source="accord synth",
                member=member.id,
            )
        if progress is not None:
            progress("quality gate", index + 1, len(manifest.members))
    hub_identity = HubLayout(layout.hub).initialise()
    store = HubStore.open_path(HubLayout(layout.hub).database)
    researcher = generate_identity(RESEARCHER)
    layout.researcher_key.parent.mkdir(parents=True, exist_ok=True)
    write_identity(researcher, layout.researcher_key.parent)
    store.register(researcher.public, role="researcher", display_name="Demo researcher")
    # The members' shared patient-token key, for counting distinct patients; the hub
    # never gets it. One file per node, as each member would keep its own copy.
    patient_key = secrets.token_hex(32)
    for member in manifest.members:
        node_dir = layout.nodes / member.id
        node_dir.mkdir(parents=True, exist_ok=True)
        identity = generate_identity(member.id)
        write_identity(identity, node_dir)
        key_file = node_dir / "patient.key"
        key_file.write_text(patient_key + "\n", encoding="ascii")
        key_file.chmod(0o600)
        store.register(identity.public, role="node", kind=member.kind, display_name=member.name)
        config = NodeConfig(
            member=member.id,
            hub_url=hub_url,
            hub_public_key=Path("..") / ".." / "hub" / f"{hub_identity.name}.pub",
            key=Path(f"{member.id}.key"),
            patient_key=Path("patient.key"),
            database=DatabaseConfig(
                engine="duckdb",
                path=str(
                    Path("..") / ".." / "members" / arrived.get(member.id, ("", member.db_file))[1]
                ),
                # Every node runs on this one machine: share its cores rather than each
                # starting a thread per core and fighting over them.
                threads=max(1, (os.cpu_count() or 1) // len(manifest.members)),
            ),
        )
        write_node_config(layout.node_config(member.id), config)
    store.engine.dispose()
    return manifest


@dataclass
class Consortium:
    """The running processes of a laid-out consortium; stops them all on exit."""

    layout: DemoLayout
    host: str
    port: int
    tls: tuple[Path, Path] | None = None  # (certificate, key): serve HTTPS
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> None:
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        log = (self.layout.logs / f"{name}.log").open("ab")
        self._logs.append(log)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # Own session: a Ctrl-C at the terminal reaches only the demo, which then stops
        # its children in order instead of racing them.
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "accord", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )

    def start_hub(self, timeout: float = 30.0) -> None:
        args = ["hub", "serve", str(self.layout.hub), "--host", self.host, "--port", str(self.port)]
        if self.tls:
            args += ["--cert", str(self.tls[0]), "--cert-key", str(self.tls[1])]
        self._spawn("hub", args)
        self._wait(lambda body: True, "the hub to start", timeout)

    def start_node(self, member: str) -> None:
        self._spawn(member, ["node", "run", "--config", str(self.layout.node_config(member))])

    def stop_node(self, member: str) -> None:
        self._end(member, signal.SIGTERM)

    def kill_node(self, member: str) -> None:
        """SIGKILL: the node gets no chance to finish or say goodbye."""
        self._end(member, signal.SIGKILL)

    def restart_hub(self) -> None:
        self._end("hub", signal.SIGTERM)
        self.start_hub()

    def _end(self, name: str, how: signal.Signals) -> None:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(how)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def wait_connected(self, members: list[str], timeout: float = 30.0) -> None:
        wanted = set(members)

        def ready(body: dict[str, Any]) -> bool:
            return wanted <= set(body["connected"])

        self._wait(ready, "all nodes to connect", timeout)

    def _wait(self, ready: Callable[[dict[str, Any]], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise NodeError(
                        f"{name} exited with code {process.returncode} while waiting for {what}",
                        hint=f"see {self.layout.logs / (name + '.log')}",
                    )
            try:
                verify = ssl.create_default_context(cafile=self.tls[0]) if self.tls else True
                body = httpx.get(f"{self.url}/v1/health", timeout=2, verify=verify).json()
                if ready(body):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise NetworkError(f"timed out after {timeout:.0f}s waiting for {what}")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every child (nodes first, then the hub), SIGKILL any that linger."""
        order = [n for n in self.processes if n != "hub"] + (
            ["hub"] if "hub" in self.processes else []
        )
        for name in order:
            process = self.processes[name]
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name in order:
            process = self.processes[name]
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> Consortium:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

"""A member whose CDM lives in PostgreSQL is attached and queried in place by its node."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from accord.client import Client
from accord.demo import Consortium, DemoLayout, free_port, prepare
from accord.ingest import CdmTarget, LoadReport
from accord.ingest.omop import ingest_omop_csv
from accord.privacy.disclosure import apply_count
from accord.query.scenarios import trial_recruitment
from accord.synth.export_omop import export_omop_csv
from accord.trust.keys import load_identity


def test_node_counts_on_an_attached_postgres_cdm(
    tmp_path: Path, postgres_dsn: str, postgres_schema: str
) -> None:
    port = free_port()
    root = tmp_path / "consortium"
    manifest = prepare(root, members=3, persons=400, seed=13, hub_url=f"http://127.0.0.1:{port}")
    layout = DemoLayout(root)
    member = manifest.members[0]

    # The member's CDM moves into PostgreSQL the way a member would load it.
    export = tmp_path / "export"
    export_omop_csv(layout.members / member.db_file, export)
    report = LoadReport(kind="omop", source=str(export))
    with CdmTarget.open(postgres_dsn, schema=postgres_schema) as target:
        ingest_omop_csv(export, target, report)
    assert report.to_json()["rejects"]["count"] == 0

    attached = subprocess.run(
        [
            sys.executable,
            "-m",
            "accord",
            "ingest",
            "attach",
            postgres_dsn,
            "--schema",
            postgres_schema,
            "--node-config",
            str(layout.node_config(member.id)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert attached.returncode == 0, attached.stderr
    assert '"engine": "postgres"' in layout.node_config(member.id).read_text()

    consortium = Consortium(layout, "127.0.0.1", port)
    try:
        consortium.start_hub()
        for each in manifest.members:
            consortium.start_node(each.id)
        consortium.wait_connected([m.id for m in manifest.members])
        with Client(consortium.url, load_identity(layout.researcher_key)) as client:
            result = client.run(trial_recruitment(manifest.as_of), timeout=60)
    finally:
        consortium.stop()
    share = next(m for m in result.members if m.member == member.id)
    assert share.status == "done", share.reason
    assert share.profile is not None
    assert share.count == apply_count(share.profile, member.trial_recruitment)

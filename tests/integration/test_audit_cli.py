"""`accord audit verify` on a real hub's log: intact passes, one edited entry is named."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from accord.errors import ExitCode
from accord.hub.layout import HubLayout
from accord.trust.audit import AuditLog


def verify(log: Path, pub: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "accord", "audit", "verify", str(log), "--pub", str(pub)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_editing_one_entry_is_detected_and_named(tmp_path: Path) -> None:
    layout = HubLayout(tmp_path / "hub")
    identity = layout.initialise()
    with AuditLog.open(layout.audit_log, identity) as log:
        for n in range(5):
            log.append("task.result", {"task_id": f"t{n}", "member": "a-clinic", "display": "15"})

    intact = verify(layout.audit_log, layout.public_key)
    assert intact.returncode == 0, intact.stderr
    assert "6 entries" in intact.stdout

    with sqlite3.connect(layout.audit_log) as db:
        db.execute(
            "UPDATE audit_entries SET body = ? WHERE seq = 4",
            ('{"display":"20","member":"a-clinic","task_id":"t2"}',),
        )
    broken = verify(layout.audit_log, layout.public_key)
    assert broken.returncode == ExitCode.AUDIT
    assert "entry 4" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_a_log_checked_against_another_key_fails(tmp_path: Path) -> None:
    first, second = HubLayout(tmp_path / "one"), HubLayout(tmp_path / "two")
    first.initialise()
    second.initialise()
    done = verify(first.audit_log, second.public_key)
    assert done.returncode == ExitCode.AUDIT
    assert "signature" in done.stderr

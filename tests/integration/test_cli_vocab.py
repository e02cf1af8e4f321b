"""`accord vocab import` as a steward runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

from accord.errors import ExitCode
from accord.vocab.athena import current_vocabulary_version
from accord.vocab.starter import STARTER_VOCABULARY_VERSION, starter_directory


def accord(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "accord", *args], capture_output=True, text=True, timeout=120
    )


def test_import_an_athena_layout_folder(tmp_path: Path) -> None:
    db = tmp_path / "member.duckdb"
    report = tmp_path / "vocab.json"
    done = accord(
        "vocab", "import", str(starter_directory()), "--db", str(db), "--report", str(report)
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(report.read_text())
    assert body["vocabulary_version"] == STARTER_VOCABULARY_VERSION
    assert body["rows"]["concept"] > 100
    with duckdb.connect(str(db), read_only=True) as con:
        concepts = con.execute("SELECT count(*) FROM concept").fetchone()
        assert concepts is not None
        assert concepts[0] > 100
        assert current_vocabulary_version(con) == STARTER_VOCABULARY_VERSION


def test_a_folder_without_concept_csv_is_refused(tmp_path: Path) -> None:
    (tmp_path / "VOCABULARY.csv").write_text("vocabulary_id\n")
    done = accord("vocab", "import", str(tmp_path), "--db", str(tmp_path / "m.duckdb"))
    assert done.returncode == ExitCode.DATA
    assert "CONCEPT.csv" in done.stderr
    assert "Traceback" not in done.stderr

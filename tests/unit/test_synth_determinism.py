"""Same seed, same consortium: byte-identical manifest and identical tables."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

from accord.synth import generate_consortium
from accord.synth.writer import MEMBER_TABLES

VOCABULARY_TABLES = ("concept", "concept_relationship", "concept_ancestor", "vocabulary", "domain")


def table_digests(path: Path) -> dict[str, str]:
    con = duckdb.connect(str(path), read_only=True)
    digests = {}
    for table in MEMBER_TABLES + VOCABULARY_TABLES:
        # Values, not Arrow buffers: buffer layout may differ between equal results.
        rows = con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
        digests[table] = hashlib.sha256(repr(rows).encode()).hexdigest()
    con.close()
    return digests


def generate(directory: Path, seed: int) -> bytes:
    generate_consortium(directory, members=3, persons_per_member=600, seed=seed)
    return (directory / "manifest.json").read_bytes()


def test_same_seed_gives_the_same_manifest_bytes_and_tables(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", seed=3)
    second = generate(tmp_path / "b", seed=3)
    assert first == second
    for name in ("northgate-hospital", "riverside-clinic", "unity-insurance"):
        assert table_digests(tmp_path / "a" / f"{name}.duckdb") == table_digests(
            tmp_path / "b" / f"{name}.duckdb"
        )


def test_a_different_seed_gives_a_different_consortium(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", seed=3)
    second = generate(tmp_path / "b", seed=4)
    assert first != second
    a = table_digests(tmp_path / "a" / "northgate-hospital.duckdb")
    b = table_digests(tmp_path / "b" / "northgate-hospital.duckdb")
    assert a["person"] != b["person"]
    assert a["condition_occurrence"] != b["condition_occurrence"]
    assert a["concept"] == b["concept"]


def test_same_seed_plants_the_same_defects(tmp_path: Path) -> None:
    manifests = []
    for name in ("a", "b"):
        generate_consortium(tmp_path / name, members=2, persons_per_member=300, seed=3, defects=0.1)
        manifests.append((tmp_path / name / "manifest.json").read_bytes())
    assert manifests[0] == manifests[1]
    for name in ("northgate-hospital", "riverside-clinic"):
        assert table_digests(tmp_path / "a" / f"{name}.duckdb") == table_digests(
            tmp_path / "b" / f"{name}.duckdb"
        )

"""Bad input gets a clear error; a failed generation leaves nothing behind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import accord.synth.writer as writer
from accord.errors import DataError, UserError
from accord.synth import ConsortiumManifest, generate_consortium


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"members": 0}, "members must be"),
        ({"members": -2}, "members must be"),
        ({"persons_per_member": 0}, "persons_per_member must be"),
        ({"persons_per_member": 10**9}, "persons_per_member must be"),
        ({"seed": -1}, "seed must be"),
        ({"as_of": date(1800, 1, 1)}, "as_of must be"),
    ],
)
def test_bad_arguments_are_user_errors(
    tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(UserError, match=message) as caught:
        generate_consortium(tmp_path / "out", **arguments)
    assert caught.value.hint
    assert not (tmp_path / "out").exists()


def test_a_file_in_place_of_the_directory_is_a_data_error(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("not a directory")
    with pytest.raises(DataError, match="is a file"):
        generate_consortium(target, members=1, persons_per_member=10)


def test_an_uncreatable_directory_is_a_data_error(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(DataError, match="cannot create directory"):
        generate_consortium(blocker / "out", members=1, persons_per_member=10)


def test_a_non_empty_directory_needs_overwrite(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty") as caught:
        generate_consortium(tmp_path, members=1, persons_per_member=10)
    assert "overwrite" in str(caught.value)


def test_overwrite_replaces_a_previous_consortium_and_keeps_other_files(tmp_path: Path) -> None:
    generate_consortium(tmp_path, members=3, persons_per_member=50, seed=1)
    (tmp_path / "notes.txt").write_text("keep me")
    manifest = generate_consortium(
        tmp_path, members=2, persons_per_member=60, seed=2, overwrite=True
    )
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == [
        "manifest.json",
        "northgate-hospital.duckdb",
        "notes.txt",
        "riverside-clinic.duckdb",
    ]
    assert ConsortiumManifest.load(tmp_path) == manifest


def test_a_failure_midway_leaves_no_partial_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_tables = writer.member_tables

    def failing_tables(member: Any) -> Iterator[tuple[str, pa.Table]]:
        for number, item in enumerate(real_tables(member)):
            if member.spec.kind == "insurer" and number == 5:
                raise RuntimeError("disk gremlin")
            yield item

    monkeypatch.setattr(writer, "member_tables", failing_tables)
    with pytest.raises(RuntimeError, match="disk gremlin"):
        generate_consortium(tmp_path / "out", members=4, persons_per_member=200)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_manifest_that_is_not_one_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text('{"format": 99}')
    with pytest.raises(DataError, match="not a synthetic consortium manifest"):
        ConsortiumManifest.load(path)
    with pytest.raises(DataError, match="cannot read manifest"):
        ConsortiumManifest.load(tmp_path / "missing.json")


def test_progress_reports_population_then_each_member(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    manifest = generate_consortium(
        tmp_path, members=3, persons_per_member=40, progress=lambda *call: calls.append(call)
    )
    stages = {stage for stage, _, _ in calls}
    assert stages == {"population"} | {member.id for member in manifest.members}
    assert calls[0] == ("population", 0, 1)
    for member in manifest.members:
        mine = [(done, total) for stage, done, total in calls if stage == member.id]
        assert mine[0][0] == 0
        assert mine[-1][0] == mine[-1][1]


def test_overwrite_never_deletes_outside_the_directory(tmp_path: Path) -> None:
    directory = tmp_path / "consortium"
    generate_consortium(directory, members=1, persons_per_member=20)
    outside = tmp_path / "precious.duckdb"
    outside.write_text("not ours")
    manifest = (directory / "manifest.json").read_text()
    (directory / "manifest.json").write_text(
        manifest.replace('"northgate-hospital.duckdb"', '"../precious.duckdb"')
    )
    generate_consortium(directory, members=1, persons_per_member=20, overwrite=True)
    assert outside.read_text() == "not ours"

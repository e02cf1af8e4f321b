"""``generate_consortium``: a directory of member CDM databases and a manifest."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import numpy as np

from accord.errors import DataError, UserError
from accord.synth.defects import check_rate, plant_defects
from accord.synth.manifest import MANIFEST_FILE, ConsortiumManifest, MemberManifest, member_figures
from accord.synth.member import MemberData, build_member
from accord.synth.population import DAYS_PER_YEAR, SharingPlan, draw_consortium
from accord.synth.profiles import MemberSpec, plan_members
from accord.synth.seasons import InfluenzaSeasons, day_number
from accord.synth.writer import MEMBER_TABLES, partial_path, remove_database, write_member
from accord.vocab.starter import STARTER_VOCABULARY_VERSION

Progress = Callable[[str, int, int], None]
Written = tuple[dict[str, int], dict[str, int]]
"""Rows written per table, rows planted per quality check."""

MAX_PERSONS_PER_MEMBER = 20_000_000
"""Keeps every generated row id within the CDM's 32-bit integer ids."""
SEASON_WINDOW_DAYS = round(19 * DAYS_PER_YEAR)
"""Influenza seasons cover the longest observation history a member can have."""
DB_FILE_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*\.duckdb")
MAX_WRITERS = 2
"""Members written to DuckDB at once (each DuckDB write also uses several threads)."""


@dataclass(frozen=True)
class Planting:
    """Defects to plant in a member once written: rate, seed and the gate's date."""

    rate: float
    seed: int
    today: date


def generate_consortium(
    out_dir: Path,
    *,
    members: int = 4,
    persons_per_member: int = 5000,
    seed: int = 7,
    as_of: date = date(2025, 12, 31),
    progress: Progress | None = None,
    overwrite: bool = False,
    defects: float = 0.0,
) -> ConsortiumManifest:
    """Generate a synthetic consortium of OMOP CDM databases, one DuckDB file per member.

    Members cycle through hospital, clinic, insurer, trial site and public-health agency.
    Each holds ``persons_per_member`` persons, some of them shared with another member
    under the same national id (``person.person_source_value``). The same ``seed`` gives
    the same tables and a byte-identical ``manifest.json``. ``progress(stage, done,
    total)`` is called as work proceeds: stage ``"population"``, then one stage per member
    id; it may be called from a worker thread. Nothing half-written is left behind if
    generation fails.

    ``defects`` (0 to 0.5) plants data quality defects of every class in
    :mod:`accord.synth.defects` in that fraction of their eligible rows, after each
    member is written; the exact rows planted per quality check are the member's
    ``planted_defects`` in the manifest. They are placed relative to ``as_of``: run the
    quality gate with ``today=as_of`` (or a date up to eight years later) to find exactly
    those counts. The manifest's other figures describe the data before planting.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as directory:
    ...     manifest = generate_consortium(Path(directory), members=2, persons_per_member=500)
    >>> [m.db_file for m in manifest.members]
    ['northgate-hospital.duckdb', 'riverside-clinic.duckdb']
    """
    _check_arguments(members, persons_per_member, seed, as_of)
    defects = check_rate(defects)
    out_dir = Path(out_dir)
    specs = plan_members(members)
    _prepare_directory(out_dir, specs, overwrite)
    report: Progress = progress if progress is not None else _silent
    as_of_day = day_number(as_of)
    population_seed, seasons_seed, *member_seeds = np.random.SeedSequence(seed).spawn(members + 2)

    report("population", 0, 1)
    people, plan = draw_consortium(
        specs, persons_per_member, as_of_day, np.random.default_rng(population_seed)
    )
    seasons = InfluenzaSeasons.build(
        as_of_day - SEASON_WINDOW_DAYS, as_of_day, np.random.default_rng(seasons_seed)
    )
    report("population", 1, 1)

    overlaps = _overlaps_by_member(specs, plan)
    needed_later = _partners_of_insurers(specs, plan)
    finished: dict[int, MemberData] = {}
    figures: dict[int, MemberManifest] = {}
    steps = len(MEMBER_TABLES) + 1
    workers = min(MAX_WRITERS, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="accord-synth")
    writes: dict[int, Future[Written]] = {}
    try:
        # Insurers last: they hold claims for the care their shared persons got elsewhere.
        # Members are simulated one after another here while earlier ones are written to
        # DuckDB on worker threads (DuckDB and most of numpy release the GIL).
        for spec in sorted(specs, key=lambda s: (s.profile.claims, s.index)):
            report(spec.id, 0, steps)
            data = build_member(
                spec,
                people,
                plan,
                as_of_day,
                seasons,
                finished,
                np.random.default_rng(member_seeds[spec.index]),
            )
            report(spec.id, 1, steps)
            figures[spec.index] = member_figures(
                member_id=spec.id,
                name=spec.name,
                kind=spec.kind.value,
                db_file=spec.db_file,
                birth=data.people.birth,
                death=data.people.death,
                events=data.events,
                overlaps=overlaps[spec.index],
                as_of=as_of,
                as_of_day=as_of_day,
            )
            if spec.index in needed_later:
                finished[spec.index] = data
            _wait_for_room(writes, workers)
            writes[spec.index] = pool.submit(
                _write,
                out_dir / spec.db_file,
                data,
                functools.partial(_report_table, report, spec.id, steps),
                Planting(defects, _defect_seed(seed, members, spec.index), as_of),
            )
            del data
        for index, write in writes.items():
            rows, planted = write.result()
            figures[index] = dataclasses.replace(figures[index], rows=rows, planted_defects=planted)
        manifest = ConsortiumManifest(
            seed=seed,
            as_of=as_of,
            vocabulary_version=STARTER_VOCABULARY_VERSION,
            persons_per_member=persons_per_member,
            members=tuple(figures[spec.index] for spec in specs),
            defect_rate=defects,
        )
        _write_text_atomically(out_dir / MANIFEST_FILE, manifest.to_json())
    except BaseException:
        for write in writes.values():
            write.cancel()
        pool.shutdown(wait=True)
        for spec in specs:
            remove_database(out_dir / spec.db_file)
            remove_database(partial_path(out_dir / spec.db_file))
        raise
    pool.shutdown(wait=True)
    return manifest


def _silent(stage: str, done: int, total: int) -> None:
    return None


def _overlaps_by_member(
    specs: tuple[MemberSpec, ...], plan: SharingPlan
) -> dict[int, dict[str, int]]:
    """For each member, the other members it shares persons with and how many."""
    overlaps: dict[int, dict[str, int]] = {spec.index: {} for spec in specs}
    for (a, b), count in plan.pairs.items():
        overlaps[a][specs[b].id] = count
        overlaps[b][specs[a].id] = count
    return {index: dict(sorted(shared.items())) for index, shared in overlaps.items()}


def _partners_of_insurers(specs: tuple[MemberSpec, ...], plan: SharingPlan) -> set[int]:
    """Members whose records an insurer mirrors, so must be kept until it is built."""
    needed: set[int] = set()
    for spec in specs:
        if spec.profile.claims:
            partner = plan.partner[spec.index]
            needed.update(np.unique(partner[partner >= 0]).tolist())
    return needed


def _report_table(report: Progress, member_id: str, steps: int, tables_done: int) -> None:
    report(member_id, 1 + tables_done, steps)


def _wait_for_room(writes: dict[int, Future[Written]], workers: int) -> None:
    """Block until fewer than ``workers`` writes are running, so at most that many
    members' arrays wait in memory; a failed write raises here."""
    running = [write for write in writes.values() if not write.done()]
    while len(running) >= workers:
        wait(running, return_when=FIRST_COMPLETED)
        running = [write for write in running if not write.done()]
    for write in writes.values():
        if write.done():
            write.result()


def _check_arguments(members: int, persons: int, seed: int, as_of: date) -> None:
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise UserError(
            f"members must be a whole number of at least 1, got {members!r}",
            hint="ask for 1 or more members",
        )
    if (
        isinstance(persons, bool)
        or not isinstance(persons, int)
        or not 1 <= persons <= MAX_PERSONS_PER_MEMBER
    ):
        raise UserError(
            f"persons_per_member must be between 1 and {MAX_PERSONS_PER_MEMBER:,}, got {persons!r}",
            hint="ask for a population size in that range",
        )
    if not isinstance(seed, int) or seed < 0:
        raise UserError(
            f"seed must be a non-negative whole number, got {seed!r}", hint="pass e.g. seed=7"
        )
    if not isinstance(as_of, date) or not 1990 <= as_of.year <= 2100:
        raise UserError(
            f"as_of must be a date between 1990 and 2100, got {as_of!r}",
            hint="pass e.g. as_of=date(2025, 12, 31)",
        )


def _prepare_directory(out_dir: Path, specs: tuple[MemberSpec, ...], overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(
            f"{out_dir} is a file, not a directory", hint="give a directory path for the consortium"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create directory {out_dir}: {exc.strerror}",
            hint="choose a directory you can write to",
        ) from exc
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise DataError(
            f"cannot write to directory {out_dir}", hint="choose a directory you can write to"
        )
    if not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise DataError(
            f"directory {out_dir} is not empty",
            hint="choose an empty or new directory, or pass overwrite=True to replace a consortium",
        )
    # Replace only what a consortium consists of: the files a previous manifest lists and
    # the ones about to be written; anything else in the directory is left alone.
    stale = {spec.db_file for spec in specs}
    previous = out_dir / MANIFEST_FILE
    if previous.exists():
        with contextlib.suppress(DataError):
            listed = (member.db_file for member in ConsortiumManifest.load(previous).members)
            # Only plain member file names: a manifest is data, not a list of paths to delete.
            stale.update(name for name in listed if DB_FILE_PATTERN.fullmatch(name))
    for name in stale:
        remove_database(out_dir / name)
        remove_database(partial_path(out_dir / name))
    previous.unlink(missing_ok=True)


def _defect_seed(seed: int, members: int, index: int) -> int:
    """A member's seed for planting defects, apart from the seeds its data come from."""
    sequence = np.random.SeedSequence(seed, spawn_key=(members + 2, index))
    return int(sequence.generate_state(1, np.uint32)[0])


def _write(
    path: Path, data: MemberData, progress: Callable[[int], None], planting: Planting
) -> Written:
    """Write a member's database, then plant its defects (if any) in it; returns the
    rows per table and the rows planted per check."""
    try:
        rows = write_member(path, data, progress)
        if planting.rate == 0:
            return rows, {}
        with duckdb.connect(str(path)) as con:
            planted = plant_defects(
                con, rate=planting.rate, seed=planting.seed, today=planting.today
            )
            counted = con.execute("SELECT count(*) FROM concept").fetchone()
        rows["concept"] = int(counted[0]) if counted else rows["concept"]
        return rows, planted
    except (OSError, duckdb.IOException) as exc:
        raise DataError(
            f"cannot write {path}: {exc}",
            hint="check the disk has room and the directory is writable",
        ) from exc


def _write_text_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise DataError(
            f"cannot write {path}: {exc.strerror}", hint="check the directory is writable"
        ) from exc

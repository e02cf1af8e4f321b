"""Loading the CSV files a mapping file describes, as one load.

Order and choices a reader should know:

* The mapping file is checked whole first (against the target's vocabularies), and
  every CSV file it names must exist; nothing is read before both pass.
* Files of table ``person`` are loaded first, so the other files find their patients
  through ``person.person_source_value`` (persons of earlier loads are found too).
* A header lacking a column the mapping reads rejects the file whole, with one reject
  at ``line 1``; extra columns are ignored.
* A row that cannot be loaded (an unreadable date or number, a value its value map
  lacks, an empty key, an unknown patient, no code) is rejected with its line and the
  load goes on; the same goes for a row whose field count differs from the header's.
* Source keys are ``csv:<file name>:<key values>`` (``#2``, ``#3`` for a code's second
  and third concept), so loading the same files again adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from accord.cdm import load_spec
from accord.errors import DataError
from accord.ingest.csv.codes import CodeRouter
from accord.ingest.csv.mapping import FileMapping, MappingFile, read_mapping
from accord.ingest.csv.reading import Malformed, header_problem, read_batches, read_header
from accord.ingest.csv.values import Verdicts, apply_rule, cleaned, mask
from accord.ingest.fhir.routing import EVENT_TABLES
from accord.ingest.fhir.tables import cdm_rows
from accord.ingest.periods import derive_observation_periods
from accord.ingest.report import LoadReport
from accord.ingest.target import CdmTarget, Load
from accord.vocab.gem import read_gem

Progress = Callable[[str, int, int], None]

_UNKNOWN_PATIENT: Final = "no person has this patient's id (load the patients file first)"


def ingest_csv(
    mapping_file: Path,
    target: CdmTarget,
    report: LoadReport,
    *,
    data_dir: Path | None = None,
    progress: Progress | None = None,
) -> None:
    """Load the CSV files described by ``mapping_file`` into ``target`` as one load.

    CSV paths are relative to the mapping file's folder, or to ``data_dir`` if given.
    Rejected rows and files go to ``report``; a bad mapping file raises
    :class:`~accord.errors.ConfigError` and a missing or unreadable CSV file
    :class:`~accord.errors.DataError`, both leaving the target as it was.
    ``progress(file name, bytes read, file size)`` is called as each file is read.
    """
    mapping = read_mapping(Path(mapping_file), vocabularies=_vocabularies(target))
    folder = Path(data_dir) if data_dir is not None else mapping.path.parent
    paths = {described.name: folder / described.name for described in mapping.files}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise DataError(
            f"{folder} lacks {', '.join(missing)}, named in mapping file {mapping.path}",
            hint="pass --data-dir to read the CSV files from another folder",
        )
    gem = read_gem(mapping.gem) if mapping.gem is not None else None
    persons_first = sorted(mapping.files, key=lambda d: d.table != "person")
    with target.load(report) as load:
        report.mapping_version = mapping.mapping_version
        report.vocabulary_version = target.vocabulary_version()
        router = CodeRouter.build(target.connection, target.schema, report, gem)
        for described in persons_first:
            run = _FileRun(described, mapping, target, load, report, router)
            run.load(paths[described.name], progress)
        router.note_gem_use()
        derive_observation_periods(target, load)


def _vocabularies(target: CdmTarget) -> frozenset[str]:
    names = target.names
    sql = f"SELECT {names.column('vocabulary_id')} FROM {names.table('vocabulary')}"
    return frozenset(str(row[0]) for row in _fetch(target, sql))


def _fetch(target: CdmTarget, sql: str) -> list[tuple[object, ...]]:
    if target.dialect == "duckdb":
        return list(target.connection.execute(sql).fetchall())
    with target.connection.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


class _FileRun:
    """One described file being loaded."""

    def __init__(
        self,
        described: FileMapping,
        mapping: MappingFile,
        target: CdmTarget,
        load: Load,
        report: LoadReport,
        router: CodeRouter,
    ) -> None:
        self.described = described
        self.version = mapping.mapping_version
        self.target = target
        self.cdm_load = load
        self.report = report
        self.router = router
        self.persons: pa.Table | None = None
        self.seen_keys = pa.chunked_array([], pa.string())

    def load(self, path: Path, progress: Progress | None) -> None:
        name = self.described.name
        header = read_header(path, self.described)
        if header is None:
            self.report.note(f"{name} is empty; nothing loaded from it")
            return
        problem = header_problem(header, self.described)
        if problem is not None:
            self.report.reject(name, "line 1", problem)
            return
        if self.described.table != "person":
            self.persons = _persons(self.target)
        malformed = Malformed()
        size = path.stat().st_size
        for batch, lines, done in read_batches(path, self.described, header, malformed):
            self._batch(dict(zip(batch.schema.names, batch.columns, strict=True)), lines)
            if progress is not None:
                progress(name, done, size)
        expected = len(header)
        for line, found, text in malformed.rows:
            reason = f"has {found} fields where the header has {expected}"
            self.report.reject(name, f"line {line}", reason, value=text)

    def _batch(self, raw: dict[str, pa.Array], lines: NDArray[np.int64]) -> None:
        described = self.described
        blank = np.ones(len(lines), dtype=np.bool_)
        for column in raw.values():
            blank &= mask(column.is_null())
        if blank.any():
            # A line with only separators is no record; it is skipped, not rejected.
            keep = pa.array(~blank)
            raw = {name: column.filter(keep) for name, column in raw.items()}
            lines = lines[~blank]
        n = len(lines)
        verdicts = Verdicts(n)
        columns = {name: cleaned(column) for name, column in raw.items()}
        for key in described.key:
            verdicts.flag(mask(columns[key].is_null()), f"key column {key} is empty")
        keys = pc.binary_join_element_wise(
            f"csv:{described.name}", *(pc.fill_null(columns[k], "") for k in described.key), ":"
        )
        repeated = _repeats(keys) | mask(pc.is_in(keys, value_set=self.seen_keys))
        verdicts.flag(repeated, "key repeats an earlier line", keys)
        patient = columns[described.patient]
        verdicts.flag(mask(patient.is_null()), f"patient column {described.patient} is empty")
        person_id = self._person_ids(patient, verdicts)
        values = {
            rule.field: apply_rule(rule, raw, n, described.date_formats, verdicts)
            for rule in described.rules
        }
        self._check_required(values, verdicts)
        if described.codes:
            self._append_coded(keys, person_id, values, columns, lines, verdicts)
        else:
            self._append_fixed(keys, person_id, patient, values, lines, verdicts)
        self.seen_keys = pa.chunked_array(
            [*self.seen_keys.chunks, keys.filter(pa.array(verdicts.ok))], pa.string()
        )
        for index in np.flatnonzero(~verdicts.ok):
            value = verdicts.values[index]
            self.report.reject(
                described.name,
                f"line {lines[index]}",
                str(verdicts.reasons[index]),
                value=None if value is None else str(value),
            )

    def _person_ids(self, patient: pa.Array, verdicts: Verdicts) -> pa.Array | None:
        if self.persons is None:
            return None
        position = pc.index_in(patient, value_set=self.persons.column("person_source_value"))
        unknown = mask(patient.is_valid()) & ~mask(position.is_valid())
        verdicts.flag(unknown, _UNKNOWN_PATIENT, patient)
        return self.persons.column("person_id").take(position)

    def _check_required(self, values: dict[str, pa.Array], verdicts: Verdicts) -> None:
        described = self.described
        if described.codes:
            required = ["start_date", "type_concept_id"]
        else:
            assert described.table is not None
            fields = load_spec().table(described.table).fields
            required = [f.name for f in fields if f.required and f.name in values]
        for name in required:
            column = next(r.column for r in described.rules if r.field == name)
            verdicts.flag(
                mask(values[name].is_null()),
                f"{name} is required but {column or 'its constant'} is empty",
            )

    def _append_fixed(
        self,
        keys: pa.Array,
        person_id: pa.Array | None,
        patient: pa.Array,
        values: dict[str, pa.Array],
        lines: NDArray[np.int64],
        verdicts: Verdicts,
    ) -> None:
        table = self.described.table
        assert table is not None
        ok = pa.array(verdicts.ok)
        rows = {name: column.filter(ok) for name, column in values.items()}
        if table == "person":
            rows["person_source_value"] = patient.filter(ok)
        elif person_id is not None and "person_id" in load_spec().table(table).field_names:
            rows["person_id"] = person_id.filter(ok)
        self._append(table, rows, keys.filter(ok), _locators(lines[verdicts.ok]))

    def _append_coded(
        self,
        keys: pa.Array,
        person_id: pa.Array | None,
        values: dict[str, pa.Array],
        columns: dict[str, pa.Array],
        lines: NDArray[np.int64],
        verdicts: Verdicts,
    ) -> None:
        coded = {c.column: columns[c.column] for c in self.described.codes}
        no_code = np.ones(len(lines), dtype=np.bool_)
        for codes in coded.values():
            no_code &= mask(codes.is_null())
        names = ", ".join(coded)
        verdicts.flag(no_code, f"no code in {names}")
        ok = pa.array(verdicts.ok)
        kept = np.flatnonzero(verdicts.ok)
        mapped = self.router.route(self.described, {k: v.filter(ok) for k, v in coded.items()})
        rows = pa.array(kept).take(mapped.column("row"))
        generic = {name: column.take(rows) for name, column in values.items()}
        assert person_id is not None
        generic["person_id"] = person_id.take(rows)
        generic["concept_id"] = mapped.column("concept_id")
        generic["source_concept_id"] = mapped.column("source_concept_id")
        generic["source_value"] = mapped.column("code")
        all_keys = _numbered(keys.take(rows), mapped.column("row").to_numpy())
        all_lines = _locators(lines[rows.to_numpy()])
        target = mapped.column("table")
        for table in pc.unique(target).to_pylist():
            layout = EVENT_TABLES[table]
            selected = pc.equal(target, table)
            picked = {
                layout.columns[name]: _plain(column).filter(selected)
                for name, column in generic.items()
                if name in layout.columns
            }
            value_column = layout.columns.get("value_as_concept_id")
            if value_column is not None and value_column not in picked:
                picked[value_column] = _plain(mapped.column("value_as_concept_id")).filter(selected)
            if layout.end_required:
                end, start = layout.columns["end_date"], layout.columns["start_date"]
                picked[end] = pc.coalesce(picked.get(end, picked[start]), picked[start])
            self._append(table, picked, all_keys.filter(selected), all_lines.filter(selected))

    def _append(
        self, table: str, rows: dict[str, pa.Array], keys: pa.Array, locators: pa.Array
    ) -> None:
        """Append the rows no earlier load brought, with newly allocated ids."""
        if not len(keys):
            return
        existing = mask(self.cdm_load.existing_keys(table, keys))
        if existing.any():
            self.report.skipped_existing(table, int(existing.sum()))
        count = int((~existing).sum())
        if not count:
            return
        new = pa.array(~existing)
        columns = {name: column.filter(new) for name, column in rows.items()}
        primary_key = load_spec().table(table).primary_key
        if len(primary_key) == 1:
            columns[primary_key[0]] = pa.array(self.cdm_load.allocate_ids(table, count))
        self.cdm_load.append(
            table,
            cdm_rows(table, columns),
            source_keys=keys.filter(new),
            source_file=self.described.name,
            locators=locators.filter(new),
            mapping_version=self.version,
        )


def _persons(target: CdmTarget) -> pa.Table:
    """Every person's ``person_source_value`` and ``person_id``, smallest id first."""
    names = target.names
    sql = (
        f"SELECT {names.column('person_source_value')}, {names.column('person_id')} "
        f"FROM {names.table('person')} "
        f"WHERE {names.column('person_source_value')} IS NOT NULL "
        f"ORDER BY {names.column('person_id')}"
    )
    rows = _fetch(target, sql)
    return pa.table(
        {
            "person_source_value": pa.array([row[0] for row in rows], pa.string()),
            "person_id": pa.array([row[1] for row in rows], pa.int64()),
        }
    )


def _repeats(keys: pa.Array) -> NDArray[np.bool_]:
    """Rows whose key an earlier row of the batch already has."""
    values = keys.to_numpy(zero_copy_only=False)
    order = np.argsort(values, kind="stable")
    repeated = np.zeros(len(values), dtype=np.bool_)
    repeated[order[1:]] = values[order[1:]] == values[order[:-1]]
    return repeated


def _numbered(keys: pa.Array, rows: NDArray[np.int64]) -> pa.Array:
    """``keys`` with ``#2``, ``#3``... on the second and later rows of one CSV row."""
    n = len(rows)
    position = np.arange(n, dtype=np.int64)
    starts = np.ones(n, dtype=np.bool_)
    starts[1:] = rows[1:] != rows[:-1]
    ordinal = position - np.maximum.accumulate(np.where(starts, position, 0))
    suffix = pc.binary_join_element_wise("#", pa.array(ordinal + 1).cast(pa.string()), "")
    return pc.if_else(pa.array(ordinal == 0), keys, pc.binary_join_element_wise(keys, suffix, ""))


def _locators(lines: NDArray[np.int64]) -> pa.Array:
    return pc.binary_join_element_wise("line ", pa.array(lines).cast(pa.string()), "")


def _plain(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values

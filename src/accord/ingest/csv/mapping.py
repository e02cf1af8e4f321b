"""A member's CSV mapping file: what each CSV file holds and where each column goes.

A member whose system exports plain CSV files describes them once, in a YAML file kept
next to the extract. It is read and checked whole before any row is read: every problem
(an unknown key, a CDM table or field that does not exist, an unknown vocabulary, a bad
date format, a missing section) is reported at once in one
:class:`~accord.errors.ConfigError`, each with its line in the YAML file.

A full example::

    mapping_version: "legacy-his extract 2.3"   # recorded with every loaded row
    gem: icd9_to_icd10_gem.txt                  # optional: CMS ICD-9-CM -> ICD-10-CM GEM
    files:
      - name: patients.csv             # relative to this file's folder (or --data-dir)
        table: person                  # a fixed CDM table ...
        delimiter: ";"                 # default ","
        encoding: utf-8                # default utf-8; any Python codec name
        date_formats: ["%d/%m/%Y"]     # tried in order; default ["%Y-%m-%d"]
        key: [patient_no]              # source key: csv:patients.csv:<patient_no>
        patient: national_id           # -> person.person_source_value
        columns:                       # CDM field: source column, or a rule
          gender_concept_id:
            column: sex
            values: {1: 8507, 2: 8532, 9: 0}   # source text -> value
            default: 0                         # for text not in values (else rejected)
          year_of_birth: {column: birth_date, part: year}
          month_of_birth: {column: birth_date, part: month}
          day_of_birth: {column: birth_date, part: day}
          gender_source_value: sex
        constants:
          race_concept_id: 0
          ethnicity_concept_id: 0
      - name: diagnoses.csv
        code:                          # ... or coded rows, routed by concept domain
          - {column: icd9, vocabulary: ICD9CM}     # the first non-empty column wins
          - {column: icd10, vocabulary: ICD10CM}
        unmapped_table: condition_occurrence   # where rows with concept 0 go
        key: [diagnosis_id]
        patient: national_id           # looked up in person.person_source_value
        columns:                       # event fields, named as in every event table
          start_date: diagnosed_on
          end_date: resolved_on
        constants:
          type_concept_id: 32817

Rules a reader should know:

* Value-map keys are compared with the CSV text, so ``1:`` and ``"1":`` are the same.
* ``part`` (``year``, ``month``, ``day``) takes one part of a date column.
* Rows of a coded file go to the table of their standard concept's domain
  (Condition, Procedure, Drug, Measurement, Observation); a code mapping to two
  concepts gives two rows. The event fields are ``start_date``, ``start_datetime``,
  ``end_date``, ``end_datetime``, ``type_concept_id``, ``visit_occurrence_id``,
  ``provider_id`` and the table-specific ones (``quantity``, ``days_supply``,
  ``value_as_number``, ...); a field the target table lacks is left out for its rows.
* ``person_id``, primary keys and the concept columns of coded files are filled by the
  loader, so the mapping may not set them.
* Vocabularies are the ``vocabulary_id`` values of the target's VOCABULARY table, so a
  member's local vocabulary works once its concepts are loaded.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import yaml

from accord.cdm import load_spec
from accord.errors import ConfigError
from accord.ingest.csv.nodes import (
    Entries,
    Problems,
    check_keys,
    mapping_entries,
    text_value,
    text_values,
)
from accord.ingest.csv.rules import ColumnRule, parse_rules
from accord.ingest.fhir.routing import EVENT_TABLES

_TOP_KEYS: Final = {"mapping_version", "gem", "files"}
_FILE_KEYS: Final = {
    "name",
    "table",
    "code",
    "unmapped_table",
    "delimiter",
    "encoding",
    "date_formats",
    "key",
    "patient",
    "columns",
    "constants",
}
_CODE_KEYS: Final = {"column", "vocabulary"}
_PROBE: Final = datetime(2001, 11, 23, 14, 5, 6)


@dataclass(frozen=True)
class CodeColumn:
    column: str
    vocabulary: str


@dataclass(frozen=True)
class FileMapping:
    """One CSV file: how to read it, its key and patient columns, and its rules."""

    name: str
    line: int
    key: tuple[str, ...]
    patient: str
    rules: tuple[ColumnRule, ...]
    table: str | None = None
    codes: tuple[CodeColumn, ...] = ()
    unmapped_table: str | None = None
    delimiter: str = ","
    encoding: str = "utf-8"
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)

    @property
    def source_columns(self) -> tuple[str, ...]:
        """Every CSV column the mapping reads, in first-use order."""
        named = [*self.key, self.patient, *(c.column for c in self.codes)]
        named += [r.column for r in self.rules if r.column is not None]
        return tuple(dict.fromkeys(named))


@dataclass(frozen=True)
class MappingFile:
    path: Path
    mapping_version: str
    files: tuple[FileMapping, ...]
    gem: Path | None = None


def read_mapping(path: Path, *, vocabularies: frozenset[str] | None = None) -> MappingFile:
    """Read and check the mapping file at ``path``; raises one ConfigError for all problems.

    ``vocabularies`` are the vocabulary ids codes may be in; ``None`` skips that check.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read mapping file {path}: {error}") from error
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"mapping file {path}{line}: not valid YAML: {error.problem}",
            hint="check indentation and quoting",
        ) from error
    problems = Problems()
    if root is None:
        raise ConfigError(f"mapping file {path} is empty", hint="see accord.ingest.csv.mapping")
    top = mapping_entries(root, "the mapping file", problems)
    mapping = None
    if top is not None:
        mapping = _mapping_file(path, root, top, problems, vocabularies)
    if problems.found or mapping is None:
        listed = "\n".join(f"  line {line}: {message}" for line, message in sorted(problems.found))
        raise ConfigError(
            f"mapping file {path} has {len(problems.found)} problem(s):\n{listed}",
            hint="the format is described in accord.ingest.csv.mapping",
        )
    return mapping


def _mapping_file(
    path: Path,
    root: yaml.Node,
    top: Entries,
    problems: Problems,
    vocabularies: frozenset[str] | None,
) -> MappingFile | None:
    check_keys(root, top, _TOP_KEYS, {"mapping_version", "files"}, "the mapping file", problems)
    version = text_value(top, "mapping_version", problems)
    gem = text_value(top, "gem", problems)
    gem_path = None
    if gem is not None:
        gem_path = path.parent / gem
        if not gem_path.is_file():
            problems.add(top["gem"][1], f"gem: no file {gem} next to the mapping file")
    files: list[FileMapping] = []
    if "files" in top:
        node = top["files"][1]
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            problems.add(node, "files: expected a list of CSV file descriptions")
        else:
            for item in node.value:
                described = _file(item, problems, vocabularies)
                if described is not None:
                    files.append(described)
            _check_unique_names(files, problems)
    if version is None or problems.found:
        return None
    return MappingFile(path, version, tuple(files), gem_path)


def _check_unique_names(files: list[FileMapping], problems: Problems) -> None:
    seen: set[str] = set()
    for described in files:
        if described.name in seen:
            problems.found.append((described.line, f"file {described.name} is described twice"))
        seen.add(described.name)


def _file(
    node: yaml.Node, problems: Problems, vocabularies: frozenset[str] | None
) -> FileMapping | None:
    entries = mapping_entries(node, "a file description", problems)
    if entries is None:
        return None
    name = text_value(entries, "name", problems) or "?"
    where = f"file {name}"
    required = {"name", "key", "patient", "columns"}
    check_keys(node, entries, _FILE_KEYS, required, where, problems)
    table = text_value(entries, "table", problems)
    codes = _codes(entries, where, problems, vocabularies)
    unmapped = text_value(entries, "unmapped_table", problems)
    spec = load_spec()
    if ("table" in entries) == ("code" in entries):
        problems.add(node, f"{where}: give either table (a fixed CDM table) or code (coded rows)")
    if table is not None and table not in spec.tables:
        problems.add(entries["table"][1], f"{where}: {table!r} is not an OMOP CDM v5.4 table")
        table = None
    if codes and unmapped is None:
        problems.add(node, f"{where}: coded rows need unmapped_table, for codes with concept 0")
    if unmapped is not None and unmapped not in EVENT_TABLES:
        problems.add(
            entries["unmapped_table"][1],
            f"{where}: unmapped_table must be one of {', '.join(EVENT_TABLES)}",
        )
    delimiter = text_value(entries, "delimiter", problems)
    if delimiter is not None and (len(delimiter) != 1 or delimiter in '"\r\n'):
        problems.add(entries["delimiter"][1], f"{where}: delimiter must be one character")
    encoding = text_value(entries, "encoding", problems)
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            problems.add(entries["encoding"][1], f"{where}: unknown encoding {encoding!r}")
    formats = _date_formats(entries, where, problems)
    rules = parse_rules(node, entries, table, "code" in entries, where, problems)
    key = text_values(entries, "key", problems)
    patient = text_value(entries, "patient", problems)
    if not key or patient is None:
        return None
    return FileMapping(
        name=name,
        line=node.start_mark.line + 1,
        key=tuple(key),
        patient=patient,
        rules=rules,
        table=table,
        codes=codes,
        unmapped_table=unmapped,
        delimiter=delimiter or ",",
        encoding=encoding or "utf-8",
        date_formats=formats,
    )


def _codes(
    entries: Entries, where: str, problems: Problems, vocabularies: frozenset[str] | None
) -> tuple[CodeColumn, ...]:
    if "code" not in entries:
        return ()
    node = entries["code"][1]
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    found: list[CodeColumn] = []
    for item in items:
        code = mapping_entries(item, f"{where}: code", problems)
        if code is None:
            continue
        check_keys(item, code, _CODE_KEYS, _CODE_KEYS, f"{where}: code", problems)
        column = text_value(code, "column", problems)
        vocabulary = text_value(code, "vocabulary", problems)
        if vocabulary is not None and vocabularies is not None and vocabulary not in vocabularies:
            problems.add(
                code["vocabulary"][1],
                f"{where}: vocabulary {vocabulary!r} is not in the target's VOCABULARY table",
            )
        if column is not None and vocabulary is not None:
            found.append(CodeColumn(column, vocabulary))
    return tuple(found)


def _date_formats(entries: Entries, where: str, problems: Problems) -> tuple[str, ...]:
    formats = text_values(entries, "date_formats", problems)
    if formats is None:
        return ("%Y-%m-%d",)
    for fmt in formats:
        try:
            ok = datetime.strptime(_PROBE.strftime(fmt), fmt).date() == _PROBE.date()
        except ValueError:
            ok = False
        if not ok:
            problems.add(
                entries["date_formats"][1],
                f"{where}: date format {fmt!r} does not read back a whole date "
                "(it needs %Y, %m or %b, and %d, e.g. '%d/%m/%Y')",
            )
    return tuple(formats)

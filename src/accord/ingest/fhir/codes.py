"""From FHIR codings to OMOP concepts, in bulk.

A CodeableConcept may carry several codings for the same idea (a SNOMED code and its
ICD-10-CM billing code). :meth:`CodingChooser.choose` picks what the record means: the
first coding in a standard vocabulary, else the first in any vocabulary the member's
mapping knows, else the first at all, which is kept as a source value and reported
unmapped. :meth:`CodingChooser.choose_recorded` picks what was recorded, as the CDM's
``*_source_value`` and ``*_source_concept_id`` want it: the first coding in a known
non-standard vocabulary (the billed code), with the standard coding kept beside it for
when the billed code maps to nothing. The chosen codes of a whole batch go to the
concept mapper once per vocabulary, each distinct code once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from accord.ingest.fhir.contracts import Mapper, Report, SystemLookup

# Vocabularies whose codes are, or map one-to-one onto, standard concepts; a coding in one
# of them says what the record means rather than how it was billed.
STANDARD_VOCABULARIES: Final = frozenset(
    {"SNOMED", "LOINC", "RxNorm", "RxNorm Extension", "CVX", "CPT4", "HCPCS", "UCUM"}
)
NO_SYSTEM: Final = "(no system)"

MAPPED_SCHEMA: Final = pa.schema(
    [
        ("row", pa.int64()),
        ("source_concept_id", pa.int32()),
        ("concept_id", pa.int32()),
        ("domain_id", pa.string()),
        ("value_as_concept_id", pa.int32()),
    ]
)


class Code(NamedTuple):
    """A chosen coding: its vocabulary id (or its system URI when unknown) and code.

    ``standard`` is a standard coding of the same concept that supplies the concept when
    this code maps to none.
    """

    vocabulary: str
    code: str
    known: bool
    standard: Code | None = None


class CodingChooser:
    """Chooses one coding per CodeableConcept, remembering each system's vocabulary."""

    def __init__(self, vocabulary_for_system: SystemLookup) -> None:
        self._lookup = vocabulary_for_system
        self._vocabularies: dict[str, str | None] = {}

    def vocabulary(self, system: str) -> str | None:
        """The OMOP vocabulary id of a code system URI, or ``None``."""
        try:
            return self._vocabularies[system]
        except KeyError:
            found = self._vocabularies[system] = self._lookup(system)
            return found

    def choose(self, concept: Any) -> Code | None:
        """The coding to map from a CodeableConcept, or ``None`` if it has no code.

        >>> chooser = CodingChooser({"http://snomed.info/sct": "SNOMED"}.get)
        >>> chooser.choose({"coding": [{"system": "urn:local", "code": "7"},
        ...                            {"system": "http://snomed.info/sct", "code": "1"}]})
        Code(vocabulary='SNOMED', code='1', known=True, standard=None)
        """
        standard, first_known, first_any = self._scan(concept)
        return standard or first_known or first_any

    def choose_recorded(self, concept: Any) -> Code | None:
        """The coding as recorded at the source, or ``None`` if it has no code.

        A billed code in a known vocabulary wins over a standard one and carries that
        standard coding along; with no such code this is :meth:`choose`.

        >>> chooser = CodingChooser(
        ...     {"http://snomed.info/sct": "SNOMED", "urn:icd": "ICD10CM"}.get
        ... )
        >>> chooser.choose_recorded({"coding": [{"system": "http://snomed.info/sct", "code": "1"},
        ...                                     {"system": "urn:icd", "code": "I10"}]})
        ... # doctest: +NORMALIZE_WHITESPACE
        Code(vocabulary='ICD10CM', code='I10', known=True,
             standard=Code(vocabulary='SNOMED', code='1', known=True, standard=None))
        """
        standard, first_known, first_any = self._scan(concept)
        if first_known is not None:
            return first_known._replace(standard=standard)
        return standard or first_any

    def _scan(self, concept: Any) -> tuple[Code | None, Code | None, Code | None]:
        """The first standard, first other known, and first unknown coding."""
        codings = concept.get("coding") if isinstance(concept, dict) else None
        if not isinstance(codings, list):
            return None, None, None
        standard: Code | None = None
        first_known: Code | None = None
        first_any: Code | None = None
        for coding in codings:
            if not isinstance(coding, dict):
                continue
            code = coding.get("code")
            if not isinstance(code, str) or not code:
                continue
            system = coding.get("system")
            vocabulary = self.vocabulary(system) if isinstance(system, str) else None
            if vocabulary is None:
                if first_any is None:
                    first_any = Code(system if isinstance(system, str) else NO_SYSTEM, code, False)
            elif vocabulary in STANDARD_VOCABULARIES:
                if standard is None:
                    standard = Code(vocabulary, code, True)
            elif first_known is None:
                first_known = Code(vocabulary, code, True)
        return standard, first_known, first_any


def map_codes(
    mapper: Mapper,
    report: Report,
    vocabularies: pa.Array,
    codes: pa.Array,
    known: pa.Array,
    *,
    standard_vocabularies: pa.Array | None = None,
    standard_codes: pa.Array | None = None,
) -> pa.Table:
    """Map each input code; a code mapping to two concepts gives two rows.

    Returns :data:`MAPPED_SCHEMA` rows sorted by input ``row`` then ``concept_id``; every
    non-null input has at least one row, with ``concept_id`` 0 when unmapped. Where a code
    maps to nothing and the row has a standard code too, that code's concepts stand in,
    keeping the first code's ``source_concept_id``. Codes left unmapped are reported with
    the number of inputs that carried them. Null codes (no coding to map) get no row.
    """
    inputs = _inputs(vocabularies, codes, known)
    mapped = _map_inputs(mapper, inputs)
    if standard_vocabularies is not None and standard_codes is not None:
        mapped = _fall_back(mapper, mapped, codes, standard_vocabularies, standard_codes)
    _report_unmapped(report, inputs, mapped)
    return mapped


def _inputs(vocabularies: pa.Array, codes: pa.Array, known: pa.Array) -> pa.Table:
    return pa.table(
        {
            "row": pa.array(np.arange(len(codes), dtype=np.int64)),
            "vocabulary": vocabularies,
            "code": codes,
            "known": pc.fill_null(known, False),
        }
    ).filter(pc.is_valid(codes))


def _map_inputs(mapper: Mapper, inputs: pa.Table) -> pa.Table:
    pieces: list[pa.Table] = []
    for vocabulary in pc.unique(inputs.column("vocabulary")).to_pylist():
        group = inputs.filter(
            pc.and_(pc.equal(inputs.column("vocabulary"), vocabulary), inputs.column("known"))
        )
        if group.num_rows:
            pieces.append(_map_vocabulary(mapper, vocabulary, group))
    unknown = inputs.filter(pc.invert(inputs.column("known")))
    if unknown.num_rows:
        pieces.append(_unmapped_rows(unknown.column("row")))
    if not pieces:
        return MAPPED_SCHEMA.empty_table()
    return pa.concat_tables(pieces).sort_by([("row", "ascending"), ("concept_id", "ascending")])


def _fall_back(
    mapper: Mapper,
    mapped: pa.Table,
    codes: pa.Array,
    standard_vocabularies: pa.Array,
    standard_codes: pa.Array,
) -> pa.Table:
    """Replace the unmapped rows of ``mapped`` by the mapping of their standard code."""
    n = len(codes)
    rows = mapped.column("row").to_numpy()
    # Sorted by row then concept, so the last assignment per row is its highest concept
    # and its source concept is the (single) one of its code.
    best = np.zeros(n, dtype=np.int64)
    best[rows] = mapped.column("concept_id").to_numpy()
    source = np.zeros(n, dtype=np.int32)
    source[rows] = mapped.column("source_concept_id").to_numpy()
    wanted = pc.and_(pa.array(best == 0), pc.and_(pc.is_valid(codes), pc.is_valid(standard_codes)))
    if not pc.any(wanted).as_py():
        return mapped
    fallback_codes = pc.if_else(wanted, standard_codes, pa.scalar(None, pa.string()))
    found = _map_inputs(
        mapper, _inputs(standard_vocabularies, fallback_codes, pc.is_valid(fallback_codes))
    )
    found = found.filter(pc.not_equal(found.column("concept_id"), 0))
    if not found.num_rows:
        return mapped
    found_rows = found.column("row")
    found = found.set_column(
        found.schema.get_field_index("source_concept_id"),
        MAPPED_SCHEMA.field("source_concept_id"),
        pa.array(source[found_rows.to_numpy()]),
    )
    replaced = pc.unique(found_rows.combine_chunks())
    kept = mapped.filter(pc.invert(pc.is_in(mapped.column("row"), value_set=replaced)))
    return pa.concat_tables([kept, found]).sort_by(
        [("row", "ascending"), ("concept_id", "ascending")]
    )


def first_concepts(mapped: pa.Table, n: int) -> pa.Array:
    """One standard concept per input row (the lowest id), null where there is none."""
    concept = np.full(n, -1, dtype=np.int64)
    rows = mapped.column("row").to_numpy()
    ids = mapped.column("concept_id").to_numpy().astype(np.int64)
    # Sorted by row then id, so the reversed assignment leaves each row's first id.
    concept[rows[::-1]] = ids[::-1]
    return pa.array(concept, mask=concept <= 0).cast(pa.int32())


def _map_vocabulary(mapper: Mapper, vocabulary: str, group: pa.Table) -> pa.Table:
    encoded = pc.dictionary_encode(group.column("code").combine_chunks())
    distinct = encoded.dictionary
    result = mapper.map_codes(vocabulary, distinct)
    right = pa.table(
        {
            "distinct": result.column("input_index").cast(pa.int64()),
            "source_concept_id": result.column("source_concept_id").cast(pa.int32()),
            "concept_id": result.column("concept_id").cast(pa.int32()),
            "domain_id": result.column("domain_id").cast(pa.string()),
            "value_as_concept_id": result.column("value_as_concept_id").cast(pa.int32()),
        }
    )
    left = pa.table({"row": group.column("row"), "distinct": encoded.indices.cast(pa.int64())})
    joined = left.join(right, "distinct", join_type="left outer").drop_columns(["distinct"])
    # A code the mapper returned nothing for is unmapped, not lost.
    return pa.table(
        {
            "row": joined.column("row"),
            "source_concept_id": pc.fill_null(joined.column("source_concept_id"), 0),
            "concept_id": pc.fill_null(joined.column("concept_id"), 0),
            "domain_id": joined.column("domain_id"),
            "value_as_concept_id": joined.column("value_as_concept_id"),
        },
        schema=MAPPED_SCHEMA,
    )


def _unmapped_rows(rows: pa.ChunkedArray) -> pa.Table:
    n = len(rows)
    return pa.table(
        {
            "row": rows,
            "source_concept_id": pa.array(np.zeros(n, dtype=np.int32)),
            "concept_id": pa.array(np.zeros(n, dtype=np.int32)),
            "domain_id": pa.nulls(n, pa.string()),
            "value_as_concept_id": pa.nulls(n, pa.int32()),
        },
        schema=MAPPED_SCHEMA,
    )


def _report_unmapped(report: Report, inputs: pa.Table, mapped: pa.Table) -> None:
    unmapped_rows = mapped.filter(pc.equal(mapped.column("concept_id"), 0)).column("row")
    if not len(unmapped_rows):
        return
    found = inputs.filter(pc.is_in(inputs.column("row"), value_set=unmapped_rows.combine_chunks()))
    counts = found.group_by(["vocabulary", "code"]).aggregate([("row", "count")])
    for vocabulary, code, count in zip(
        counts.column("vocabulary").to_pylist(),
        counts.column("code").to_pylist(),
        counts.column("row_count").to_pylist(),
        strict=True,
    ):
        report.unmapped(vocabulary, code, count)


def concept_lookup(table: Mapping[str, int], values: pa.Array) -> pa.Array:
    """Fixed code-to-concept tables (FHIR gender, encounter class) applied to a column."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    ids = pa.array([table.get(value, 0) for value in encoded.dictionary.to_pylist()], pa.int32())
    return pc.if_else(pc.is_null(values), 0, ids.take(encoded.indices))

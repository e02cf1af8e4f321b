"""Codes of a coded CSV file to standard concepts, and each resulting row to its table.

Mapping is a relation (:class:`~accord.vocab.mapping.ConceptMapper`): one code can give
several rows. ICD-9-CM codes the vocabulary leaves without a 'Maps to' are mapped, when
the mapping file names a GEM, through the ICD-9-CM to ICD-10-CM General Equivalence
Mappings and then the ICD-10-CM code's 'Maps to'; every GEM target gives its own row
(a combination code is several conditions), and the GEM flags of each code used are
written to the load report's notes.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from accord.ingest.csv.mapping import FileMapping
from accord.ingest.fhir.routing import DOMAIN_TABLES
from accord.ingest.report import LoadReport
from accord.vocab.gem import as_fallback_relation, gem_to_concept_relationships
from accord.vocab.mapping import RELATION_SCHEMA, ConceptMapper

ICD9CM: Final = "ICD9CM"
_FLAGS: Final = ("approximate", "no_map", "combination")
_NOTED_CODES: Final = 20
"""GEM-mapped codes named one by one in the report; the summary counts all of them."""

MAPPED_ROWS: Final = pa.schema(
    [
        pa.field("row", pa.int64()),
        pa.field("code", pa.string()),
        pa.field("concept_id", pa.int32()),
        pa.field("source_concept_id", pa.int32()),
        pa.field("value_as_concept_id", pa.int32()),
        pa.field("table", pa.string()),
    ]
)
"""What :meth:`CodeRouter.route` returns: one row per (CSV row, standard target)."""


class CodeRouter:
    """Maps the codes of coded files for one load, and remembers what the GEM did."""

    def __init__(
        self, mapper: ConceptMapper, report: LoadReport, gem_relationships: pa.Table | None
    ) -> None:
        self._report = report
        self._gem: dict[str, list[dict[str, object]]] = {}
        self._gem_rows: Counter[str] = Counter()
        if gem_relationships is not None and gem_relationships.num_rows:
            fallback = as_fallback_relation(gem_relationships)
            # Two GEM rows for one code can reach the same standard concept through two
            # ICD-10-CM codes; the concept is one row, not two.
            fallback = fallback.group_by(RELATION_SCHEMA.names, use_threads=False).aggregate([])
            mapper = mapper.with_fallback(ICD9CM, fallback.select(RELATION_SCHEMA.names))
            useful = gem_relationships.filter(pc.not_equal(gem_relationships["concept_id"], 0))
            for entry in useful.to_pylist():
                self._gem.setdefault(str(entry["source_code"]), []).append(entry)
        self._mapper = mapper

    @classmethod
    def build(
        cls, connection: object, schema: str | None, report: LoadReport, gem: pa.Table | None
    ) -> CodeRouter:
        mapper = ConceptMapper.from_connection(connection, schema=schema)
        relationships = None
        if gem is not None:
            relationships = gem_to_concept_relationships(gem, connection, schema=schema)
        return cls(mapper, report, relationships)

    def route(self, described: FileMapping, columns: dict[str, pa.Array]) -> pa.Table:
        """Map each row's code (the first non-empty code column) and pick its table.

        Rows with no code at all are absent from the result; the caller rejects them.
        """
        assert described.unmapped_table is not None
        parts = []
        taken = np.zeros(len(next(iter(columns.values()))), dtype=np.bool_)
        for code_column in described.codes:
            codes = columns[code_column.column]
            present = np.asarray(
                pc.fill_null(pc.is_valid(codes), False).to_numpy(zero_copy_only=False), np.bool_
            )
            rows = np.flatnonzero(present & ~taken)
            taken |= present
            if not len(rows):
                continue
            chosen = codes.take(pa.array(rows))
            mapped = self._mapper.map_codes(code_column.vocabulary, chosen)
            index = mapped.column("input_index")
            self._count_unmapped(code_column.vocabulary, chosen, mapped)
            if code_column.vocabulary == ICD9CM and self._gem:
                self._count_gem(chosen)
            parts.append(
                pa.table(
                    {
                        "row": pa.array(rows).take(index),
                        "code": chosen.take(index),
                        "concept_id": mapped.column("concept_id"),
                        "source_concept_id": mapped.column("source_concept_id"),
                        "value_as_concept_id": mapped.column("value_as_concept_id"),
                        "table": _tables(mapped, described.unmapped_table),
                    }
                )
            )
        if not parts:
            return MAPPED_ROWS.empty_table()
        return pa.concat_tables(parts).cast(MAPPED_ROWS).sort_by([("row", "ascending")])

    def note_gem_use(self) -> None:
        """Write which ICD-9-CM codes went through the GEM, with its flags, to the report."""
        if not self._gem_rows:
            return
        flagged: Counter[str] = Counter()
        for code, rows in self._gem_rows.most_common():
            for flag in _FLAGS:
                if any(entry[flag] for entry in self._gem[code]):
                    flagged[flag] += rows
        self._report.note(
            f"{len(self._gem_rows)} ICD-9-CM codes ({self._gem_rows.total()} rows) had no "
            "'Maps to' and were mapped through the ICD-9-CM to ICD-10-CM GEM; rows with "
            + ", ".join(f"{flag} flags: {flagged[flag]}" for flag in _FLAGS)
        )
        for code, rows in self._gem_rows.most_common(_NOTED_CODES):
            targets = sorted({str(entry["target_code"]) for entry in self._gem[code]})
            flags = sorted({flag for entry in self._gem[code] for flag in _FLAGS if entry[flag]})
            self._report.note(
                f"GEM: ICD9CM {code} -> ICD10CM {', '.join(targets)}"
                + (f" ({', '.join(flags)})" if flags else "")
                + f", {rows} rows"
            )

    def _count_unmapped(self, vocabulary: str, codes: pa.Array, mapped: pa.Table) -> None:
        unmapped = pc.filter(mapped.column("input_index"), pc.equal(mapped["concept_id"], 0))
        if not len(unmapped):
            return
        for entry in pc.value_counts(codes.take(unmapped)).to_pylist():
            self._report.unmapped(vocabulary, str(entry["values"]), int(entry["counts"]))

    def _count_gem(self, codes: pa.Array) -> None:
        via_gem = pc.is_in(codes, value_set=pa.array(list(self._gem), pa.string()))
        for entry in pc.value_counts(codes.filter(via_gem)).to_pylist():
            self._gem_rows[str(entry["values"])] += int(entry["counts"])


def _tables(mapped: pa.Table, unmapped_table: str) -> pa.Array:
    """Each mapped row's table: its concept's domain's, else ``unmapped_table``."""
    domain = mapped.column("domain_id").combine_chunks()
    encoded = pc.dictionary_encode(domain)
    by_domain = pa.array(
        [DOMAIN_TABLES.get(d) for d in encoded.dictionary.to_pylist()], pa.string()
    ).take(encoded.indices)
    mapped_to_something = pc.not_equal(mapped.column("concept_id").combine_chunks(), 0)
    routed = pc.if_else(mapped_to_something, by_domain, pa.scalar(None, pa.string()))
    return pc.fill_null(routed, unmapped_table)

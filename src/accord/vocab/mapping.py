"""Mapping source codes to standard concepts, as a relation rather than a dictionary.

A source code can map to several standard concepts (ICD-10-CM E11.65 is a diabetes
condition and a hyperglycaemia finding), to none, or carry a value ('Maps to value').
So :meth:`ConceptMapper.map_codes` returns a table with one row per (input, target)
pair, joined column-wise in Arrow; nothing loops over codes in Python. The target's
domain decides which CDM table a record goes to, as in the HL7 FHIR-to-OMOP guide.

>>> import duckdb
>>> from accord.vocab.athena import import_vocabulary
>>> from accord.vocab.starter import starter_directory
>>> con = duckdb.connect()
>>> _ = import_vocabulary(starter_directory(), con, "duckdb")
>>> mapped = ConceptMapper.from_connection(con).map_codes("ICD10CM", ["I10", "nonsense"])
>>> mapped.select(["input_index", "concept_id", "domain_id"]).to_pylist()[1]
{'input_index': 1, 'concept_id': 0, 'domain_id': None}
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Final, TypeAlias

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlglot import exp

from accord.errors import DataError

Codes: TypeAlias = pa.Array | pa.ChunkedArray | Sequence[str | None]

MAPPED_SCHEMA: Final = pa.schema(
    [
        pa.field("input_index", pa.int64(), nullable=False),
        pa.field("source_concept_id", pa.int32(), nullable=False),
        pa.field("concept_id", pa.int32(), nullable=False),
        pa.field("domain_id", pa.string()),
        pa.field("value_as_concept_id", pa.int32()),
    ]
)
"""What :meth:`ConceptMapper.map_codes` returns."""

RELATION_SCHEMA: Final = pa.schema(
    [
        pa.field("code", pa.string(), nullable=False),
        pa.field("source_concept_id", pa.int32(), nullable=False),
        pa.field("concept_id", pa.int32(), nullable=False),
        pa.field("domain_id", pa.string()),
        pa.field("value_as_concept_id", pa.int32()),
    ]
)
"""One vocabulary's codes and their standard targets, as the mapper joins against."""

UNMAPPED_SCHEMA: Final = pa.schema(
    [
        pa.field("vocabulary_id", pa.string(), nullable=False),
        pa.field("code", pa.string()),
        pa.field("count", pa.int64(), nullable=False),
    ]
)

# Only observations and measurements have a value_as_concept_id column, so a 'Maps to
# value' target is attached to those rows and not to, say, a condition from the same code.
VALUE_DOMAINS: Final = ("Observation", "Measurement")

_RELATION_SQL: Final = """
WITH source AS (
    SELECT concept_id, concept_code, standard_concept FROM {concept}
    WHERE vocabulary_id = {vocabulary_id}
), maps AS (
    SELECT r.concept_id_1 AS source_id, r.concept_id_2 AS target_id
    FROM {concept_relationship} r JOIN source ON source.concept_id = r.concept_id_1
    WHERE r.relationship_id = 'Maps to' AND r.invalid_reason IS NULL
    UNION
    SELECT concept_id, concept_id FROM source WHERE standard_concept = 'S'
), vals AS (
    SELECT r.concept_id_1 AS source_id, r.concept_id_2 AS value_id
    FROM {concept_relationship} r JOIN source ON source.concept_id = r.concept_id_1
    WHERE r.relationship_id = 'Maps to value' AND r.invalid_reason IS NULL
)
SELECT source.concept_code AS code, source.concept_id AS source_concept_id,
       COALESCE(target.concept_id, 0) AS concept_id, target.domain_id AS domain_id,
       vals.value_id AS value_as_concept_id
FROM source
LEFT JOIN maps ON maps.source_id = source.concept_id
LEFT JOIN {concept} target ON target.concept_id = maps.target_id
LEFT JOIN vals ON vals.source_id = source.concept_id AND target.domain_id IN {value_domains}
"""


class ConceptMapper:
    """Maps source codes of any vocabulary to standard concepts in one CDM database.

    Build one per load with :meth:`from_connection`; each vocabulary's relation is read
    from the database the first time it is asked for and kept, so a load of millions of
    records reads CONCEPT and CONCEPT_RELATIONSHIP once per vocabulary it meets.
    """

    def __init__(self, connection: Any, *, schema: str | None = None) -> None:
        self._connection = connection
        self._schema = schema
        self._relations: dict[str, pa.Table] = {}
        self._fallbacks: dict[str, pa.Table] = {}

    @classmethod
    def from_connection(cls, connection: Any, *, schema: str | None = None) -> ConceptMapper:
        """A mapper over the vocabulary in ``connection`` (DuckDB or psycopg), whose CDM
        tables are in ``schema`` (default: the connection's current schema)."""
        return cls(connection, schema=schema)

    def with_fallback(self, vocabulary_id: str, relation: pa.Table) -> ConceptMapper:
        """A mapper that, for codes of ``vocabulary_id`` the vocabulary leaves unmapped,
        uses the targets in ``relation`` (columns as :data:`RELATION_SCHEMA`).

        ICD-9-CM codes missing a 'Maps to' reach standard concepts this way through the
        General Equivalence Mappings (:func:`accord.vocab.gem.as_fallback_relation`).
        """
        missing = [name for name in RELATION_SCHEMA.names if name not in relation.column_names]
        if missing:
            raise DataError(
                f"a fallback relation for {vocabulary_id} lacks columns {', '.join(missing)}",
                hint=f"give the columns {', '.join(RELATION_SCHEMA.names)}",
            )
        mapper = ConceptMapper(self._connection, schema=self._schema)
        mapper._fallbacks = {**self._fallbacks, vocabulary_id: _conform(relation)}
        return mapper

    def relation(self, vocabulary_id: str) -> pa.Table:
        """Every code of ``vocabulary_id`` with its standard targets (:data:`RELATION_SCHEMA`).

        A code without a 'Maps to' has one row with ``concept_id`` 0; a standard concept
        maps to itself.
        """
        if vocabulary_id not in self._relations:
            table = _fetch_relation(self._connection, self._schema, vocabulary_id)
            fallback = self._fallbacks.get(vocabulary_id)
            if fallback is not None:
                table = _with_fallback(table, fallback)
            self._relations[vocabulary_id] = table
        return self._relations[vocabulary_id]

    def map_codes(self, vocabulary_id: str, codes: Codes) -> pa.Table:
        """Map ``codes`` of ``vocabulary_id`` (e.g. ``"ICD10CM"``) to standard concepts.

        Returns :data:`MAPPED_SCHEMA` rows ordered by ``input_index``, the position of the
        code in ``codes``: one row per standard target, so a code mapping to two concepts
        gives two rows with the same ``input_index``. A code not in CONCEPT has
        ``source_concept_id`` 0; a code with no standard target has ``concept_id`` 0 and
        no ``domain_id``. Codes are matched exactly as CONCEPT spells them (ICD codes
        with their dots).
        """
        array = as_code_array(codes)
        inputs = pa.table(
            {"input_index": pa.array(np.arange(len(array), dtype=np.int64)), "code": array}
        )
        joined = inputs.join(self.relation(vocabulary_id), keys="code", join_type="left outer")
        joined = joined.sort_by([("input_index", "ascending"), ("concept_id", "ascending")])
        return pa.Table.from_arrays(
            [
                joined.column("input_index"),
                pc.fill_null(joined.column("source_concept_id"), 0),
                pc.fill_null(joined.column("concept_id"), 0),
                joined.column("domain_id"),
                joined.column("value_as_concept_id"),
            ],
            schema=MAPPED_SCHEMA,
        )


def unmapped_counts(
    vocabulary_id: str, codes: Codes, mapped: pa.Table, *, previous: pa.Table | None = None
) -> pa.Table:
    """How often each code of ``codes`` found no standard concept, most frequent first.

    ``mapped`` is what :meth:`ConceptMapper.map_codes` returned for ``codes``. Pass the
    table from an earlier call as ``previous`` to add up counts across batches and
    vocabularies for a load report (columns ``vocabulary_id``, ``code``, ``count``).
    """
    array = as_code_array(codes)
    unmapped = pc.filter(mapped.column("input_index"), pc.equal(mapped.column("concept_id"), 0))
    counts = (
        pa.table({"code": array.take(unmapped)})
        .group_by("code")
        .aggregate([([], "count_all")])
        .rename_columns(["code", "count"])
    )
    counts = counts.add_column(
        0, "vocabulary_id", pa.array([vocabulary_id] * counts.num_rows, pa.string())
    )
    counts = counts.select(UNMAPPED_SCHEMA.names).cast(UNMAPPED_SCHEMA)
    if previous is not None:
        counts = (
            pa.concat_tables([previous.select(UNMAPPED_SCHEMA.names).cast(UNMAPPED_SCHEMA), counts])
            .group_by(["vocabulary_id", "code"])
            .aggregate([("count", "sum")])
            .rename_columns(["vocabulary_id", "code", "count"])
            .select(UNMAPPED_SCHEMA.names)
            .cast(UNMAPPED_SCHEMA)
        )
    return counts.sort_by(
        [("count", "descending"), ("vocabulary_id", "ascending"), ("code", "ascending")]
    )


def as_code_array(codes: Codes) -> pa.Array:
    """``codes`` as one Arrow string array (nulls allowed)."""
    if isinstance(codes, str):
        raise DataError(
            f"codes must be a sequence of codes, not the single string {codes!r}",
            hint=f"pass [{codes!r}]",
        )
    if isinstance(codes, pa.ChunkedArray):
        codes = codes.combine_chunks()
    array = codes if isinstance(codes, pa.Array) else pa.array(list(codes), pa.string())
    text = (pa.types.is_string, pa.types.is_large_string, pa.types.is_dictionary)
    if not any(is_text(array.type) for is_text in (*text, pa.types.is_null)):
        raise DataError(
            f"codes must be text, not Arrow type {array.type}",
            hint="codes are compared with CONCEPT.concept_code, which is text",
        )
    return array.cast(pa.string())


def _fetch_relation(connection: Any, schema: str | None, vocabulary_id: str) -> pa.Table:
    dialect = "duckdb" if isinstance(connection, duckdb.DuckDBPyConnection) else "postgres"
    sql = _RELATION_SQL.format(
        concept=exp.table_("concept", db=schema, quoted=True).sql(dialect),
        concept_relationship=exp.table_("concept_relationship", db=schema, quoted=True).sql(
            dialect
        ),
        vocabulary_id=exp.Literal.string(vocabulary_id).sql(dialect),
        value_domains="(" + ", ".join(f"'{d}'" for d in VALUE_DOMAINS) + ")",
    )
    if dialect == "duckdb":
        return _conform(connection.sql(sql).to_arrow_table())
    return _conform(_copy_out(connection, sql))


def _copy_out(connection: Any, sql: str) -> pa.Table:
    # COPY to CSV and pyarrow's reader, so the relation never passes through Python rows.
    buffer = io.BytesIO()
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv, HEADER true)") as copy,
    ):
        for chunk in copy:
            buffer.write(chunk)
    buffer.seek(0)
    return pacsv.read_csv(
        buffer,
        convert_options=pacsv.ConvertOptions(
            column_types=dict(zip(RELATION_SCHEMA.names, RELATION_SCHEMA.types, strict=True)),
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )


def _conform(table: pa.Table) -> pa.Table:
    return table.select(RELATION_SCHEMA.names).cast(RELATION_SCHEMA)


def _with_fallback(relation: pa.Table, fallback: pa.Table) -> pa.Table:
    """``relation`` with codes it leaves unmapped taken from ``fallback`` where it maps."""
    mapped = pc.not_equal(relation.column("concept_id"), 0)
    directly = pc.unique(pc.filter(relation.column("code"), mapped))
    useful = pc.and_(
        pc.not_equal(fallback.column("concept_id"), 0),
        pc.invert(pc.is_in(fallback.column("code"), directly)),
    )
    extra = fallback.filter(useful)
    kept = relation.filter(pc.invert(pc.is_in(relation.column("code"), pc.unique(extra["code"]))))
    return pa.concat_tables([kept, extra])

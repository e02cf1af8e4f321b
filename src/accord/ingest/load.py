"""One running load: id allocation, idempotent bulk appends and provenance look-ups.

A :class:`Load` lives inside the transaction :meth:`accord.ingest.target.CdmTarget.load`
opens; everything it writes is committed or rolled back with that transaction. Source
keys travel with the rows into a staging table and are matched against
``accord_provenance`` there, in one statement per batch, never one key at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from accord.cdm import load_spec
from accord.errors import DataError
from accord.ingest import provenance as bookkeeping
from accord.ingest.engines import Engine
from accord.ingest.provenance import LOCATOR, POSITION, SOURCE_KEY, SqlNames
from accord.ingest.report import LoadReport
from accord.ingest.shaping import (
    INTEGER_LIMITS,
    check_unique,
    integer_key,
    row_strings,
    shape_rows,
)

_ROW_ID = "row_id"


class Load:
    """One running load: id allocation and idempotent bulk appends, inside its transaction."""

    def __init__(self, engine: Engine, report: LoadReport, load_id: str, names: SqlNames) -> None:
        self.load_id = load_id
        self.report = report
        self._engine = engine
        self._names = names
        self._allocated: dict[str, int] = {}
        self._stages = 0
        self._closed = False

    def allocate_ids(self, table: str, n: int) -> NDArray[np.int64]:
        """The next ``n`` primary keys of ``table``: above every id it holds and every id
        allocated earlier in this load. On PostgreSQL the table is locked against other
        writers until the load ends, so concurrent loads cannot draw the same ids."""
        self._check_open()
        if n < 0:
            raise ValueError(f"cannot allocate {n} ids")
        spec_table = load_spec().table(table)
        key = integer_key(spec_table)
        if key is None:
            raise DataError(f"table {table!r} has no integer primary key to allocate ids for")
        if table not in self._allocated:
            self._engine.lock(self._names.table(table))
        rows = self._engine.fetch(
            f"SELECT max({self._names.column(key)}) FROM {self._names.table(table)}"
        )
        highest = max(int(rows[0][0] or 0), self._allocated.get(table, 0))
        limit = INTEGER_LIMITS[spec_table.field(key).base_type]
        if highest + n > limit:
            raise DataError(
                f"{table}.{key} would pass {limit:,} allocating {n:,} ids above {highest:,}",
                hint="the CDM declares this id as a 32-bit integer",
            )
        self._allocated[table] = highest + n
        return np.arange(highest + 1, highest + n + 1, dtype=np.int64)

    def append(
        self,
        table: str,
        rows: pa.Table,
        *,
        source_keys: pa.Array,
        source_file: str,
        locators: pa.Array,
        mapping_version: str,
    ) -> int:
        """Insert ``rows`` into CDM table ``table`` unless their source keys are loaded.

        ``rows`` may hold any subset of the table's columns: missing ones become null and
        every column is cast to the CDM type; a missing or empty required column is a
        :class:`DataError`. Rows whose ``(table, source key)`` is already recorded are
        skipped. Inserted and skipped rows are counted in the load's report
        (``add_rows``, ``skipped_existing``), so callers do not count them again.
        Returns the number of rows inserted.
        """
        self._check_open()
        spec_table = load_spec().table(table)
        keys = row_strings(source_keys, "source_keys", rows.num_rows)
        where = row_strings(locators, "locators", rows.num_rows)
        shaped = shape_rows(spec_table, rows)
        if rows.num_rows == 0:
            return 0
        check_unique(keys, table)
        staged = shaped.append_column(SOURCE_KEY, keys).append_column(LOCATOR, where)
        with self._staged(staged, table) as stage:
            inserted = self._engine.insert(
                bookkeeping.insert_new_rows(self._names, table, shaped.column_names, stage),
                (table,),
            )
            self._engine.insert(
                bookkeeping.insert_provenance(self._names, integer_key(spec_table), stage),
                (table, source_file, mapping_version, self.load_id, table),
            )
        self.report.add_rows(table, inserted)
        if inserted < rows.num_rows:
            self.report.skipped_existing(table, rows.num_rows - inserted)
        return inserted

    def append_vocabulary(self, table: str, rows: pa.Table) -> int:
        """Insert vocabulary rows (CONCEPT, CONCEPT_ANCESTOR, ...) without provenance.

        Vocabulary rows are reference data, the same at every member and identified as a
        whole by their release; recording each of Athena's tens of millions of ancestor
        rows would double the database for nothing. Returns the number inserted.
        """
        self._check_open()
        spec_table = load_spec().table(table)
        if spec_table.category != "vocabulary":
            raise ValueError(f"{table} is not a vocabulary table; use append")
        shaped = shape_rows(spec_table, rows)
        if rows.num_rows == 0:
            return 0
        columns = self._names.columns(shaped.column_names)
        with self._staged(shaped, table) as stage:
            inserted = self._engine.insert(
                f"INSERT INTO {self._names.table(table)} ({columns}) "
                f"SELECT {columns} FROM {self._names.temporary(stage)}"
            )
        self.report.add_rows(table, inserted)
        return inserted

    def existing_keys(self, table: str, source_keys: pa.Array) -> pa.Array:
        """A boolean mask: which of ``source_keys`` are already loaded into ``table``."""
        return self._matching(table, source_keys, this_load_only=False)

    def keys_loaded_here(self, table: str, source_keys: pa.Array) -> pa.Array:
        """A boolean mask: which of ``source_keys`` this load has already appended, for
        telling a duplicate inside one source from a row an earlier load brought."""
        return self._matching(table, source_keys, this_load_only=True)

    def existing_ids(self, table: str, source_keys: pa.Array) -> pa.Array:
        """The id each of ``source_keys`` was given when it was loaded into ``table``.

        An int64 array aligned with ``source_keys``: null where the key was never loaded
        (or ``table`` has no integer primary key to record). Rows appended earlier in this
        load count as loaded. Keys may repeat; each gets its row's id. An incremental
        load uses this to point new rows at the people and visits an earlier load wrote.
        """
        self._check_open()
        load_spec().table(table)
        keys = row_strings(source_keys, "source_keys", len(source_keys))
        ids = np.zeros(len(keys), dtype=np.int64)
        found = np.zeros(len(keys), dtype=np.bool_)
        if len(keys):
            positions = pa.array(np.arange(len(keys), dtype=np.int64))
            staged = pa.table({SOURCE_KEY: keys, POSITION: positions})
            with self._staged(staged, table) as stage:
                at, row_ids = self._engine.fetch_integers(
                    bookkeeping.loaded_row_ids(self._names, stage), (table,), (POSITION, _ROW_ID)
                )
            ids[at] = row_ids
            found[at] = True
        return pa.array(ids, type=pa.int64(), mask=~found)

    def _matching(self, table: str, source_keys: pa.Array, *, this_load_only: bool) -> pa.Array:
        self._check_open()
        load_spec().table(table)
        keys = row_strings(source_keys, "source_keys", len(source_keys))
        mask = np.zeros(len(keys), dtype=np.bool_)
        if len(keys):
            positions = pa.array(np.arange(len(keys), dtype=np.int64))
            staged = pa.table({SOURCE_KEY: keys, POSITION: positions})
            params: tuple[str, ...] = (table, self.load_id) if this_load_only else (table,)
            with self._staged(staged, table) as stage:
                sql = bookkeeping.matching_keys(self._names, stage, this_load_only=this_load_only)
                (at,) = self._engine.fetch_integers(sql, params, (POSITION,))
                mask[at] = True
        return pa.array(mask, type=pa.bool_())

    @contextmanager
    def _staged(self, rows: pa.Table, table: str) -> Iterator[str]:
        self._stages += 1
        name = f"accord_stage_{table}_{self._stages}"
        self._engine.stage(name, rows)
        try:
            yield name
        except Exception as error:
            reason = self._engine.describe(error)
            if reason is not None:
                raise DataError(f"cannot load rows into {table}: {reason}") from error
            raise
        finally:
            # After a database error PostgreSQL refuses every statement until ROLLBACK,
            # and the rollback drops the staging table anyway.
            with suppress(Exception):
                self._engine.unstage(name)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this load has ended; start another with CdmTarget.load")

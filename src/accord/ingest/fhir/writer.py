"""Appending rows to the CDM with ids, provenance and idempotence.

Every row carries a source key (``fhir:Condition/abc#0``). A row whose key an earlier
load already holds is not inserted again and, for the resources others refer to, keeps
the id it was given then, so an incremental export's new Conditions find the Patients
of the first export.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from accord.ingest.fhir.contracts import Load, Report
from accord.ingest.fhir.tables import cdm_rows

ExistingIds = Callable[[str, list[str]], NDArray[np.int64]]
"""The ids of rows an earlier load inserted, given their table and source keys."""


class CdmWriter:
    """Writes one batch of rows of one CDM table at a time, in bulk."""

    def __init__(
        self,
        load: Load,
        report: Report,
        *,
        mapping_version: str,
        existing_ids: ExistingIds,
    ) -> None:
        self.load = load
        self.report = report
        self.mapping_version = mapping_version
        self.existing_ids = existing_ids

    def write(
        self,
        table: str,
        columns: Mapping[str, Any],
        *,
        keys: pa.Array,
        locators: pa.Array,
        source_file: str,
        id_column: str | None,
        keep_existing_ids: bool = False,
    ) -> NDArray[np.int64]:
        """Append the rows not yet loaded; returns every row's id.

        ``columns`` maps CDM column names to arrays aligned with ``keys``. The primary
        key ``id_column`` is allocated here for new rows. A key repeated within the
        batch (the same Practitioner in two Bundles) is one row. Ids of rows loaded
        before are looked up only with ``keep_existing_ids``, for the tables other
        resources refer to; elsewhere they come back as -1.
        """
        n = len(keys)
        if n == 0:
            return np.empty(0, dtype=np.int64)
        distinct = pc.unique(keys)
        position = pc.index_in(keys, value_set=distinct).to_numpy()
        first = np.full(len(distinct), -1, dtype=np.int64)
        first[position[::-1]] = np.arange(n - 1, -1, -1)
        first_rows = pa.array(first)

        unique_keys = keys.take(first_rows)
        existing = _mask(self.load.existing_keys(table, unique_keys))
        new = ~existing
        unique_ids = np.full(len(distinct), -1, dtype=np.int64)
        if id_column is not None and new.any():
            unique_ids[new] = self.load.allocate_ids(table, int(new.sum()))
        if keep_existing_ids and existing.any():
            earlier = unique_keys.filter(pa.array(existing)).to_pylist()
            unique_ids[existing] = self.existing_ids(table, earlier)
        ids: NDArray[np.int64] = unique_ids[position]
        if existing.any():
            # Left out of the append below, so the load cannot count them itself.
            self.report.skipped_existing(table, int(existing.sum()))

        if new.any():
            take = pa.array(first[new])
            rows: dict[str, Any] = {}
            if id_column is not None:
                rows[id_column] = pa.array(unique_ids[new])
            for name, values in columns.items():
                array = values if isinstance(values, pa.Array) else pa.array(values)
                rows[name] = array.take(take)
            # The load counts inserted and skipped rows in the report itself.
            self.load.append(
                table,
                cdm_rows(table, rows),
                source_keys=unique_keys.take(pa.array(np.flatnonzero(new))),
                source_file=source_file,
                locators=locators.take(take),
                mapping_version=self.mapping_version,
            )
        return ids


def _mask(values: Any) -> NDArray[np.bool_]:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(values, dtype=bool)


def provenance_ids(load: Load) -> ExistingIds:
    """Earlier rows' ids from ``accord_provenance``, read in bulk inside the running load."""

    def lookup(table: str, wanted: list[str]) -> NDArray[np.int64]:
        ids = load.existing_ids(table, pa.array(wanted, type=pa.string()))
        found: NDArray[np.int64] = pc.fill_null(ids, -1).to_numpy()
        return found

    return lookup

"""What FHIR ingestion needs from the rest of the load, as structural types.

The real pieces are :class:`accord.ingest.report.LoadReport`, the ``Load`` that
:class:`accord.ingest.target.CdmTarget` opens, and
:class:`accord.vocab.mapping.ConceptMapper`; naming only the methods used here keeps the
mapping code testable without a database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

Progress = Callable[[str, int, int], None]
"""Called with what is being read, the bytes read so far and the bytes to read in all."""


class Report(Protocol):
    """Where rows, rejects and unmapped codes are counted."""

    def add_rows(self, table: str, n: int) -> None: ...

    def skipped_existing(self, table: str, n: int) -> None: ...

    def reject(
        self, source: str, locator: str, reason: str, *, value: str | None = None
    ) -> None: ...

    def unmapped(self, vocabulary_id: str, code: str, count: int = 1) -> None: ...


class Load(Protocol):
    """One transaction on the member's CDM."""

    def allocate_ids(self, table: str, n: int) -> NDArray[np.int64]: ...

    def append(
        self,
        table: str,
        rows: pa.Table,
        *,
        source_keys: pa.Array,
        source_file: str,
        locators: pa.Array,
        mapping_version: str,
    ) -> int: ...

    def existing_keys(self, table: str, source_keys: pa.Array) -> pa.Array: ...

    def existing_ids(self, table: str, source_keys: pa.Array) -> pa.Array: ...


class Mapper(Protocol):
    """Source codes to standard concepts; one code may give several rows."""

    def map_codes(self, vocabulary_id: str, codes: Any) -> pa.Table: ...


SystemLookup = Callable[[str], "str | None"]
"""A code system URI to its OMOP vocabulary id, or ``None`` when it is not known."""

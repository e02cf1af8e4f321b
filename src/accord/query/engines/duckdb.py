"""DuckDB: the embedded default engine for a member's CDM."""

from __future__ import annotations

from typing import ClassVar

from accord.query.compiler import BaseCompiler


class DuckDBCompiler(BaseCompiler):
    """The base SQL runs unchanged on DuckDB; only the dialect is named."""

    DIALECT: ClassVar[str] = "duckdb"

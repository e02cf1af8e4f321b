"""PostgreSQL: a member's existing OMOP database."""

from __future__ import annotations

from typing import ClassVar

from accord.query.compiler import BaseCompiler


class PostgresCompiler(BaseCompiler):
    """The base SQL runs unchanged on PostgreSQL; only the dialect is named."""

    DIALECT: ClassVar[str] = "postgres"

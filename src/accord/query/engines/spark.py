"""Apache Spark: a member's CDM in a Spark database, such as a data lake's parquet tables
read in place (see :mod:`accord.node.spark`).

SQLGlot writes the base SQL in Spark's dialect: schema names quoted with backticks (a
backtick in a name doubled), ``CAST('2025-12-31' AS DATE)`` for dates, ``DATE_ADD`` for
the days around an index date. Spark runs correlated ``EXISTS``, correlated scalar
``COUNT``, ``MIN`` and ``MAX`` subqueries and ``IN (subquery)`` as the other engines do.

What it cannot run is a subquery referring to a query two levels out: the base compiler
finds a person's latest measurement value with one (the latest day, inside the subquery
that reads the values). Spark gets it in one aggregate instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

from sqlglot import exp

from accord.query.compiler import MEASUREMENTS, BaseCompiler, Scope, VariableHandler
from accord.query.model import MeasurementValue
from accord.query.nodes import Node


class SparkCompiler(BaseCompiler):
    """The base SQL, but for the latest measurement value."""

    DIALECT: ClassVar[str] = "spark"

    def measurement_value(self, node: MeasurementValue, scope: Scope) -> exp.Expr:
        """With ``latest``, the largest value on the latest day, as ``MAX_BY(value,
        (day, value))``: the value of the greatest pair, ordered by day and then value,
        over the same measurements the base compiler reads for their ``max``."""
        if node.summary != "latest":
            return super().measurement_value(node, scope)
        summarised = super().measurement_value(dataclasses.replace(node, summary="max"), scope)
        select = summarised.this if isinstance(summarised, exp.Subquery) else None
        largest = select.expressions[0] if isinstance(select, exp.Select) else None
        if not isinstance(largest, exp.Max) or not isinstance(largest.this, exp.Column):
            raise TypeError(f"unexpected SQL for a measurement's max: {summarised.sql()}")
        value = largest.this
        day = exp.column(MEASUREMENTS.start, table=value.table)
        latest = exp.ArgMax(
            this=value.copy(), expression=exp.Struct(expressions=[day, value.copy()])
        )
        largest.replace(latest)
        return summarised

    VARIABLES: ClassVar[Mapping[type[Node], VariableHandler]] = {
        **BaseCompiler.VARIABLES,
        MeasurementValue: measurement_value,
    }

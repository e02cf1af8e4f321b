"""Compiling query nodes to SQL over the OMOP CDM with SQLGlot.

``BaseCompiler`` walks the tree with one method per node type, looked up in a dispatch
table, and builds SQLGlot expressions; an engine is a subclass naming its SQLGlot
dialect and whatever else differs, as class constants. Values from a query reach SQL only
as SQLGlot literals built from validated ints, floats and dates, never as text.

The SQL for a count is one statement yielding one row with one column, ``n``::

    SELECT COUNT(DISTINCT p.person_id) AS n FROM person AS p
    WHERE p.year_of_birth BETWEEN 1950 AND 1980
      AND EXISTS(SELECT 1 FROM condition_occurrence AS co1 WHERE ...)

The SQL for a model's part is the cohort's design: one row per person with the outcome
``y`` and the covariates ``x1``, ``x2``, ... (it is read at the member and never leaves).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, ClassVar, TypeAlias

from sqlglot import exp

from accord.query.model import (
    Age,
    AgeBetween,
    Analysis,
    Cohort,
    ConceptSet,
    CountPersons,
    Criterion,
    GlmStep,
    HasCondition,
    HasDrugExposure,
    HasMeasurement,
    Indicator,
    Node,
    Not,
    SexIs,
    Variable,
)


@dataclass(frozen=True)
class EventTable:
    """A CDM table of dated, coded events belonging to a person."""

    name: str
    alias: str
    concept: str
    start: str
    value: str | None = None


@dataclass(frozen=True)
class Scope:
    """What a criterion is evaluated against: the outer person row and the cohort date."""

    person: str
    as_of: date


# Strings, because these aliases are evaluated at import time and ``exp.Expr`` is recent.
AnalysisHandler: TypeAlias = "Callable[[Any, Any], exp.Expr]"
CriterionHandler: TypeAlias = "Callable[[Any, Any, Scope], exp.Expr]"
VariableHandler: TypeAlias = "Callable[[Any, Any, Scope], exp.Expr]"


class BaseCompiler:
    """Turns an analysis into SQL for one engine; one instance compiles one query."""

    DIALECT: ClassVar[str]
    PERSON: ClassVar[str] = "person"
    CONCEPT_ANCESTOR: ClassVar[str] = "concept_ancestor"
    CONDITIONS: ClassVar[EventTable] = EventTable(
        "condition_occurrence", "co", "condition_concept_id", "condition_start_date"
    )
    DRUGS: ClassVar[EventTable] = EventTable(
        "drug_exposure", "de", "drug_concept_id", "drug_exposure_start_date"
    )
    MEASUREMENTS: ClassVar[EventTable] = EventTable(
        "measurement", "m", "measurement_concept_id", "measurement_date", "value_as_number"
    )

    def __init__(self, *, schema: str | None = None) -> None:
        self.schema = schema
        self._numbers = itertools.count(1)

    def compile(self, query: Analysis) -> str:
        """The SQL text of ``query`` in this engine's dialect."""
        return self.analysis(query).sql(dialect=self.DIALECT, pretty=True)

    # Dispatch: the tables at the end of the class map node types to these methods.

    def analysis(self, node: Node) -> exp.Expr:
        return self.ANALYSES[type(node)](self, node)

    def criterion(self, node: Criterion, scope: Scope) -> exp.Expr:
        return self.CRITERIA[type(node)](self, node, scope)

    def variable(self, node: Variable, scope: Scope) -> exp.Expr:
        return self.VARIABLES[type(node)](self, node, scope)

    # Analyses

    def count_persons(self, node: CountPersons) -> exp.Expr:
        person = "p"
        person_id = exp.column("person_id", table=person)
        select = exp.select(
            exp.alias_(exp.Count(this=exp.Distinct(expressions=[person_id])), "n")
        ).from_(self.table(self.PERSON, person))
        where = self.cohort(node.cohort, person)
        return select if where is None else select.where(where)

    def glm_step(self, node: GlmStep) -> exp.Expr:
        person = "p"
        scope = Scope(person=person, as_of=node.cohort.as_of)
        columns = [exp.alias_(self.variable(node.outcome, scope), "y")]
        columns += [
            exp.alias_(self.variable(v, scope), f"x{i}") for i, v in enumerate(node.covariates, 1)
        ]
        select = exp.select(*columns).from_(self.table(self.PERSON, person))
        where = self.cohort(node.cohort, person)
        return select if where is None else select.where(where)

    def cohort(self, node: Cohort, person: str) -> exp.Expr | None:
        scope = Scope(person=person, as_of=node.as_of)
        conditions = [self.criterion(c, scope) for c in node.criteria]
        return exp.and_(*conditions) if conditions else None

    # Criteria. year_of_birth and gender_concept_id are NOT NULL in the CDM, so these
    # predicates are never unknown and Not is a plain complement.

    def age_between(self, node: AgeBetween, scope: Scope) -> exp.Expr:
        # Solving the age bounds for year_of_birth here keeps the SQL free of date
        # arithmetic (which differs between engines) and lets an index on it be used.
        year = scope.as_of.year
        return exp.Between(
            this=exp.column("year_of_birth", table=scope.person),
            low=exp.Literal.number(year - node.max_age),
            high=exp.Literal.number(year - node.min_age),
        )

    def sex_is(self, node: SexIs, scope: Scope) -> exp.Expr:
        column = exp.column("gender_concept_id", table=scope.person)
        return column.isin(*_numbers(node.concept_ids))

    def has_condition(self, node: HasCondition, scope: Scope) -> exp.Expr:
        return self.has_event(
            self.CONDITIONS, node.concepts, scope, count=node.min_count, days=node.within_days
        )

    def has_drug_exposure(self, node: HasDrugExposure, scope: Scope) -> exp.Expr:
        return self.has_event(
            self.DRUGS, node.concepts, scope, count=node.min_count, days=node.within_days
        )

    def has_measurement(self, node: HasMeasurement, scope: Scope) -> exp.Expr:
        return self.has_event(
            self.MEASUREMENTS,
            node.concepts,
            scope,
            bounds=(node.min_value, node.max_value),
            count=node.min_count,
            days=node.within_days,
        )

    def not_(self, node: Not, scope: Scope) -> exp.Expr:
        return exp.not_(self.criterion(node.criterion, scope))

    # Variables: one number per person.

    def age(self, node: Age, scope: Scope) -> exp.Expr:
        return exp.Sub(
            this=exp.Literal.number(scope.as_of.year),
            expression=exp.column("year_of_birth", table=scope.person),
        )

    def indicator(self, node: Indicator, scope: Scope) -> exp.Expr:
        met = self.criterion(node.criterion, scope)
        return exp.Case().when(met, exp.Literal.number(1)).else_(exp.Literal.number(0))

    # Building blocks

    def has_event(
        self,
        events: EventTable,
        concepts: ConceptSet,
        scope: Scope,
        *,
        bounds: tuple[float | None, float | None] = (None, None),
        count: int = 1,
        days: int | None = None,
    ) -> exp.Expr:
        """The person has ``count`` events in the concept set, on or before as_of (and
        within ``days`` days up to it): EXISTS for one, a correlated COUNT for more."""
        alias = self.alias(events.alias)
        start = exp.column(events.start, table=alias)
        conditions: list[exp.Expr] = [
            exp.column("person_id", table=alias).eq(exp.column("person_id", table=scope.person)),
            exp.LTE(this=start, expression=_date(scope.as_of)),
            self.concept_set(concepts, exp.column(events.concept, table=alias)),
        ]
        if days is not None:
            # The window's first day is worked out here, so no engine's date arithmetic
            # is needed: 30 days up to 31 December start on 2 December.
            first = scope.as_of - timedelta(days=days - 1)
            conditions.append(exp.GTE(this=start.copy(), expression=_date(first)))
        low, high = bounds
        if events.value is not None and low is not None:
            value = exp.column(events.value, table=alias)
            conditions.append(exp.GTE(this=value, expression=exp.Literal.number(low)))
        if events.value is not None and high is not None:
            value = exp.column(events.value, table=alias)
            conditions.append(exp.LTE(this=value, expression=exp.Literal.number(high)))
        if count == 1:
            subquery = exp.select(exp.Literal.number(1)).from_(self.table(events.name, alias))
            return exp.Exists(this=subquery.where(exp.and_(*conditions)))
        counted = (
            exp.select(exp.Count(this=exp.Star()))
            .from_(self.table(events.name, alias))
            .where(exp.and_(*conditions))
        )
        return exp.GTE(this=exp.Subquery(this=counted), expression=exp.Literal.number(count))

    def concept_set(self, node: ConceptSet, column: exp.Column) -> exp.Expr:
        """``column`` holds a concept of the set (descendants and exclusions applied)."""
        included = self.concepts_in(node.ids, node.include_descendants, column)
        if not node.exclude:
            return included
        excluded = self.concepts_in(node.exclude, node.include_descendants, column)
        return exp.and_(included, exp.not_(excluded))

    def concepts_in(self, ids: Iterable[int], descendants: bool, column: exp.Column) -> exp.Expr:
        literals = _numbers(ids)
        listed = column.copy().isin(*literals)
        if not descendants:
            return listed
        # The listed ids are matched directly as well, because a vocabulary need not
        # carry the self-rows (ancestor = descendant) that a full Athena download has.
        alias = self.alias("ca")
        descendant_ids = (
            exp.select(exp.column("descendant_concept_id", table=alias))
            .from_(self.table(self.CONCEPT_ANCESTOR, alias))
            .where(
                exp.column("ancestor_concept_id", table=alias).isin(
                    *(literal.copy() for literal in literals)
                )
            )
        )
        return exp.or_(listed, column.copy().isin(query=descendant_ids))

    def table(self, name: str, alias: str) -> exp.Table:
        # The schema comes from the member's configuration and is quoted so that it
        # names exactly that schema on every engine, whatever its case or characters.
        return exp.Table(
            this=exp.to_identifier(name),
            db=exp.to_identifier(self.schema, quoted=True) if self.schema else None,
            alias=exp.TableAlias(this=exp.to_identifier(alias)),
        )

    def alias(self, prefix: str) -> str:
        """A table alias unique within this query, so nested subqueries never shadow."""
        return f"{prefix}{next(self._numbers)}"

    ANALYSES: ClassVar[Mapping[type[Node], AnalysisHandler]] = {
        CountPersons: count_persons,
        GlmStep: glm_step,
    }
    VARIABLES: ClassVar[Mapping[type[Node], VariableHandler]] = {
        Age: age,
        Indicator: indicator,
    }
    CRITERIA: ClassVar[Mapping[type[Node], CriterionHandler]] = {
        AgeBetween: age_between,
        SexIs: sex_is,
        HasCondition: has_condition,
        HasDrugExposure: has_drug_exposure,
        HasMeasurement: has_measurement,
        Not: not_,
    }


def _numbers(values: Iterable[int]) -> list[exp.Expr]:
    return [exp.Literal.number(v) for v in values]


def _date(value: date) -> exp.Expr:
    return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.build("date"))

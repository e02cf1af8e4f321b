"""Compiling query nodes to SQL over the OMOP CDM with SQLGlot.

``BaseCompiler`` walks the tree with one method per node type, looked up in a dispatch
table, and builds SQLGlot expressions; an engine is a subclass naming its SQLGlot
dialect and whatever else differs, as class constants. Values from a query reach SQL only
as SQLGlot literals built from validated ints, floats and dates, never as text.

Every analysis reads the cohort's persons the same way: ``person AS p``, joined, when the
cohort has an entry, to each person's index date (``ix.index_date``), and filtered by the
criteria. What it selects differs:

- a count is one row with one column, ``n``::

    SELECT COUNT(DISTINCT p.person_id) AS n FROM person AS p
    WHERE p.year_of_birth BETWEEN 1950 AND 1980
      AND EXISTS(SELECT 1 FROM condition_occurrence AS co1 WHERE ...)

- a stratified count is one row per stratum: ``s1``, ``s2``, ... and ``n``;
- a model, a histogram, a summary or a correlation reads the cohort's values, one row per
  person: ``y`` and ``x1``, ``x2``, ... for a model, ``v1``, ``v2``, ... otherwise;
- survival reads each person's ``index_date``, first ``event_date`` and ``censor_date``;
- distinct patients read each person's ``national_id`` (``person_source_value``).

Rows read for the last three never leave the member: the node reduces them to sums,
counts or a sketch first.

Without an entry the index date is the cohort's ``as_of`` date, and windows are worked out
here as date literals, so no engine's date arithmetic is involved. With an entry they are
``CAST(ix.index_date + n days AS DATE)``, which SQLGlot writes in each engine's dialect.
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
    AgeGroup,
    AllOf,
    Analysis,
    AnyOf,
    AtLeastOf,
    Cohort,
    ConceptSet,
    Correlation,
    CountBy,
    CountPersons,
    Criterion,
    DistinctPersons,
    Entry,
    EventCriterion,
    GlmStep,
    HasCondition,
    HasDrugExposure,
    HasMeasurement,
    HasObservation,
    HasProcedure,
    HasVisit,
    Histogram,
    Indicator,
    InObservation,
    KaplanMeier,
    MeasurementValue,
    Not,
    Sex,
    SexIs,
    Summary,
    ValuedEventCriterion,
    Variable,
)
from accord.query.nodes import Node


@dataclass(frozen=True)
class EventTable:
    """A CDM table of dated, coded events belonging to a person."""

    name: str
    alias: str
    concept: str
    start: str
    value: str | None = None
    unit: str | None = None


EVENT_TABLES: Mapping[type[EventCriterion], EventTable] = {
    HasCondition: EventTable(
        "condition_occurrence", "co", "condition_concept_id", "condition_start_date"
    ),
    HasDrugExposure: EventTable(
        "drug_exposure", "de", "drug_concept_id", "drug_exposure_start_date"
    ),
    HasProcedure: EventTable(
        "procedure_occurrence", "po", "procedure_concept_id", "procedure_date"
    ),
    HasVisit: EventTable("visit_occurrence", "vo", "visit_concept_id", "visit_start_date"),
    HasMeasurement: EventTable(
        "measurement",
        "m",
        "measurement_concept_id",
        "measurement_date",
        "value_as_number",
        "unit_concept_id",
    ),
    HasObservation: EventTable(
        "observation",
        "o",
        "observation_concept_id",
        "observation_date",
        "value_as_number",
        "unit_concept_id",
    ),
}
MEASUREMENTS = EVENT_TABLES[HasMeasurement]


class ConsentHook:
    """Restricts every cohort to the persons whose consent covers the analysis.

    The consent model decides what a predicate looks like; the compiler adds it to every
    cohort it compiles. Hooks are frozen and hashable, so compiled queries can be cached.
    """

    def predicate(self, compiler: BaseCompiler, person: str) -> exp.Expr:
        raise NotImplementedError


@dataclass(frozen=True)
class ConsentTable(ConsentHook):
    """Persons listed in ``table`` (by ``person_id``) have consented; nobody else counts."""

    table: str

    def predicate(self, compiler: BaseCompiler, person: str) -> exp.Expr:
        alias = compiler.alias("cs")
        listed = (
            exp.select(exp.Literal.number(1))
            .from_(compiler.table(self.table, alias))
            .where(exp.column("person_id", table=alias).eq(exp.column("person_id", table=person)))
        )
        return exp.Exists(this=listed)


@dataclass(frozen=True)
class Scope:
    """What a criterion is evaluated against: the outer person row, the cohort's date,
    and the index date: a column when the cohort has an entry, else ``as_of`` itself."""

    person: str
    as_of: date
    index: exp.Expr | None = None

    def day(self, offset: int | None, *, open_end: exp.Expr | None) -> exp.Expr | None:
        """The date ``offset`` days from the index date (``open_end`` when ``None``)."""
        if offset is None:
            return open_end
        if self.index is None:
            return _date(_moved(self.as_of, offset))
        return _shifted(self.index, offset)

    def year(self) -> exp.Expr:
        """The index date's year."""
        if self.index is None:
            return exp.Literal.number(self.as_of.year)
        return exp.Extract(this=exp.var("YEAR"), expression=self.index.copy())


# Strings, because these aliases are evaluated at import time and ``exp.Expr`` is recent.
AnalysisHandler: TypeAlias = "Callable[[Any, Any], exp.Expr]"
CriterionHandler: TypeAlias = "Callable[[Any, Any, Scope], exp.Expr]"
VariableHandler: TypeAlias = "Callable[[Any, Any, Scope], exp.Expr]"


class BaseCompiler:
    """Turns an analysis into SQL for one engine; one instance compiles one query."""

    DIALECT: ClassVar[str]
    PERSON: ClassVar[str] = "person"
    CONCEPT_ANCESTOR: ClassVar[str] = "concept_ancestor"
    OBSERVATION_PERIOD: ClassVar[str] = "observation_period"

    def __init__(self, *, schema: str | None = None, consent: ConsentHook | None = None) -> None:
        self.schema = schema
        self.consent = consent
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
        select, _ = self.persons(node.cohort)
        person_id = exp.column("person_id", table="p")
        return select.select(exp.alias_(exp.Count(this=exp.Distinct(expressions=[person_id])), "n"))

    def count_by(self, node: CountBy) -> exp.Expr:
        strata = [f"s{i}" for i in range(1, len(node.by) + 1)]
        inner = self.values(node.cohort, node.by, strata)
        grouped = exp.select(*strata, exp.alias_(exp.Count(this=exp.Star()), "n"))
        return grouped.from_(inner.subquery("d")).group_by(*strata)

    def glm_step(self, node: GlmStep) -> exp.Expr:
        names = ["y", *(f"x{i}" for i in range(1, len(node.covariates) + 1))]
        return self.values(node.cohort, (node.outcome, *node.covariates), names)

    def one_variable(self, node: Histogram | Summary) -> exp.Expr:
        return self.values(node.cohort, (node.variable,), ["v1"])

    def correlation(self, node: Correlation) -> exp.Expr:
        names = [f"v{i}" for i in range(1, len(node.variables) + 1)]
        return self.values(node.cohort, node.variables, names)

    def kaplan_meier(self, node: KaplanMeier) -> exp.Expr:
        select, scope = self.persons(node.cohort)
        assert scope.index is not None  # the model requires an entry
        event = self.first_event(node.event, scope)
        op = self.alias("op")
        holding = (
            exp.select(exp.Max(this=exp.column("observation_period_end_date", table=op)))
            .from_(self.table(self.OBSERVATION_PERIOD, op))
            .where(
                exp.and_(
                    exp.column("person_id", table=op).eq(exp.column("person_id", table="p")),
                    exp.LTE(
                        this=exp.column("observation_period_start_date", table=op),
                        expression=scope.index.copy(),
                    ),
                    exp.GTE(
                        this=exp.column("observation_period_end_date", table=op),
                        expression=scope.index.copy(),
                    ),
                )
            )
        )
        return select.select(
            exp.alias_(scope.index.copy(), "index_date"),
            exp.alias_(event, "event_date"),
            exp.alias_(exp.Subquery(this=holding), "censor_date"),
        )

    def distinct_persons(self, node: DistinctPersons) -> exp.Expr:
        select, _ = self.persons(node.cohort)
        return select.select(
            exp.alias_(exp.column("person_source_value", table="p"), "national_id")
        )

    # The cohort

    def persons(self, node: Cohort) -> tuple[exp.Select, Scope]:
        """``FROM person AS p`` (joined to the index dates) ``WHERE`` the cohort's
        criteria, with nothing selected yet; and the scope its criteria were read in."""
        person = "p"
        select = exp.select().from_(self.table(self.PERSON, person))
        index: exp.Expr | None = None
        if node.entry is not None:
            entries = self.entries(node.entry, node.as_of)
            select = select.join(
                entries.subquery("ix"),
                on=exp.column("person_id", table="ix").eq(exp.column("person_id", table=person)),
            )
            index = exp.column("index_date", table="ix")
        scope = Scope(person=person, as_of=node.as_of, index=index)
        conditions = [self.criterion(c, scope) for c in node.criteria]
        if self.consent is not None:
            conditions.append(self.consent.predicate(self, person))
        return (select.where(exp.and_(*conditions)) if conditions else select), scope

    def values(
        self, cohort: Cohort, variables: Iterable[Variable], names: Iterable[str]
    ) -> exp.Select:
        """One row per person of the cohort with each variable under its name."""
        select, scope = self.persons(cohort)
        return select.select(
            *(exp.alias_(self.variable(v, scope), n) for v, n in zip(variables, names, strict=True))
        )

    def entries(self, node: Entry, as_of: date) -> exp.Select:
        """Each entering person's index date: their first entry event on or before
        ``as_of`` that lies in an observation period with the days asked for around it."""
        events = []
        for event in node.events:
            assert isinstance(event, EventCriterion)  # the model only allows these
            table = EVENT_TABLES[type(event)]
            alias = self.alias(table.alias)
            start = exp.column(table.start, table=alias)
            events.append(
                exp.select(
                    exp.column("person_id", table=alias), exp.alias_(start.copy(), "start_date")
                )
                .from_(self.table(table.name, alias))
                .where(exp.and_(*self.event_matches(table, alias, event, as_of)))
            )
        union: exp.Query = events[0]
        for more in events[1:]:
            union = exp.union(union, more, distinct=False)
        ev = self.alias("ev")
        op = self.alias("op")
        start = exp.column("start_date", table=ev)
        observed = (
            exp.select(exp.Literal.number(1))
            .from_(self.table(self.OBSERVATION_PERIOD, op))
            .where(
                exp.and_(
                    exp.column("person_id", table=op).eq(exp.column("person_id", table=ev)),
                    exp.LTE(
                        this=exp.column("observation_period_start_date", table=op),
                        expression=_shifted(start, -node.prior_days),
                    ),
                    exp.GTE(
                        this=exp.column("observation_period_end_date", table=op),
                        expression=_shifted(start, node.post_days),
                    ),
                )
            )
        )
        return (
            exp.select(
                exp.column("person_id", table=ev),
                exp.alias_(exp.Min(this=start.copy()), "index_date"),
            )
            .from_(union.subquery(ev))
            .where(exp.Exists(this=observed))
            .group_by(exp.column("person_id", table=ev))
        )

    # Criteria. year_of_birth and gender_concept_id are NOT NULL in the CDM, so these
    # predicates are never unknown and Not is a plain complement.

    def age_between(self, node: AgeBetween, scope: Scope) -> exp.Expr:
        year_of_birth = exp.column("year_of_birth", table=scope.person)
        if scope.index is None:
            # Solving the age bounds for year_of_birth keeps the SQL free of date
            # arithmetic and lets an index on it be used.
            year = scope.as_of.year
            return exp.Between(
                this=year_of_birth,
                low=exp.Literal.number(year - node.max_age),
                high=exp.Literal.number(year - node.min_age),
            )
        return exp.Between(
            this=exp.Sub(this=scope.year(), expression=year_of_birth),
            low=exp.Literal.number(node.min_age),
            high=exp.Literal.number(node.max_age),
        )

    def sex_is(self, node: SexIs, scope: Scope) -> exp.Expr:
        column = exp.column("gender_concept_id", table=scope.person)
        return column.isin(*_numbers(node.concept_ids))

    def has_event(self, node: EventCriterion, scope: Scope) -> exp.Expr:
        """Between ``min_count`` and ``max_count`` records in the days asked for: EXISTS
        for the common "at least one", a correlated COUNT otherwise."""
        table = EVENT_TABLES[type(node)]
        alias = self.alias(table.alias)
        conditions = [
            exp.column("person_id", table=alias).eq(exp.column("person_id", table=scope.person)),
            *self.event_matches(table, alias, node, scope.as_of),
            *self.in_days(exp.column(table.start, table=alias), node.from_day, node.to_day, scope),
        ]
        if node.min_count == 1 and node.max_count is None:
            subquery = exp.select(exp.Literal.number(1)).from_(self.table(table.name, alias))
            return exp.Exists(this=subquery.where(exp.and_(*conditions)))
        counted = exp.Subquery(
            this=exp.select(exp.Count(this=exp.Star()))
            .from_(self.table(table.name, alias))
            .where(exp.and_(*conditions))
        )
        low, high = exp.Literal.number(node.min_count), node.max_count
        if high is None:
            return exp.GTE(this=counted, expression=low)
        if node.min_count == 0:
            return exp.LTE(this=counted, expression=exp.Literal.number(high))
        return exp.Between(this=counted, low=low, high=exp.Literal.number(high))

    def in_observation(self, node: InObservation, scope: Scope) -> exp.Expr:
        op = self.alias("op")
        anchor = scope.day(0, open_end=None)
        assert anchor is not None
        period = (
            exp.select(exp.Literal.number(1))
            .from_(self.table(self.OBSERVATION_PERIOD, op))
            .where(
                exp.and_(
                    exp.column("person_id", table=op).eq(
                        exp.column("person_id", table=scope.person)
                    ),
                    exp.LTE(
                        this=exp.column("observation_period_start_date", table=op),
                        expression=scope.day(-node.prior_days, open_end=None),
                    ),
                    exp.GTE(
                        this=exp.column("observation_period_end_date", table=op),
                        expression=scope.day(node.post_days, open_end=None),
                    ),
                )
            )
        )
        return exp.Exists(this=period)

    def not_(self, node: Not, scope: Scope) -> exp.Expr:
        return exp.not_(self.criterion(node.criterion, scope))

    def all_of(self, node: AllOf, scope: Scope) -> exp.Expr:
        if not node.criteria:
            return exp.true()
        return exp.paren(exp.and_(*(self.criterion(c, scope) for c in node.criteria)))

    def any_of(self, node: AnyOf, scope: Scope) -> exp.Expr:
        return exp.paren(exp.or_(*(self.criterion(c, scope) for c in node.criteria)))

    def at_least_of(self, node: AtLeastOf, scope: Scope) -> exp.Expr:
        met = [self.indicator(Indicator(c), scope) for c in node.criteria]
        total = met[0]
        for more in met[1:]:
            total = exp.Add(this=total, expression=more)
        return exp.GTE(this=exp.paren(total), expression=exp.Literal.number(node.count))

    # Variables: one number per person.

    def age(self, node: Age, scope: Scope) -> exp.Expr:
        return exp.Sub(
            this=scope.year(), expression=exp.column("year_of_birth", table=scope.person)
        )

    def age_group(self, node: AgeGroup, scope: Scope) -> exp.Expr:
        width = exp.Literal.number(node.width)
        age = exp.paren(self.age(Age(), scope))
        groups = exp.Floor(this=exp.Div(this=age, expression=width))
        return exp.cast(exp.Mul(this=groups, expression=width.copy()), exp.DataType.build("int"))

    def sex(self, node: Sex, scope: Scope) -> exp.Expr:
        return exp.column("gender_concept_id", table=scope.person)

    def indicator(self, node: Indicator, scope: Scope) -> exp.Expr:
        met = self.criterion(node.criterion, scope)
        return exp.Case().when(met, exp.Literal.number(1)).else_(exp.Literal.number(0))

    def measurement_value(self, node: MeasurementValue, scope: Scope) -> exp.Expr:
        """The person's measurements in the days asked for, as one number; with
        ``latest``, the largest value on the latest day that has one."""

        def matching(alias: str) -> list[exp.Expr]:
            value = exp.column("value_as_number", table=alias)
            conditions = [
                exp.column("person_id", table=alias).eq(
                    exp.column("person_id", table=scope.person)
                ),
                exp.LTE(
                    this=exp.column(MEASUREMENTS.start, table=alias), expression=_date(scope.as_of)
                ),
                self.concept_set(node.concepts, exp.column(MEASUREMENTS.concept, table=alias)),
                exp.not_(exp.Is(this=value, expression=exp.null())),
                *self.in_days(
                    exp.column(MEASUREMENTS.start, table=alias), node.from_day, node.to_day, scope
                ),
            ]
            if node.unit_concept_ids:
                unit = exp.column("unit_concept_id", table=alias)
                conditions.append(unit.isin(*_numbers(node.unit_concept_ids)))
            return conditions

        alias = self.alias(MEASUREMENTS.alias)
        value = exp.column("value_as_number", table=alias)
        conditions = matching(alias)
        if node.summary == "latest":
            latest = self.alias(MEASUREMENTS.alias)
            last_day = (
                exp.select(exp.Max(this=exp.column(MEASUREMENTS.start, table=latest)))
                .from_(self.table(MEASUREMENTS.name, latest))
                .where(exp.and_(*matching(latest)))
            )
            conditions.append(
                exp.column(MEASUREMENTS.start, table=alias).eq(exp.Subquery(this=last_day))
            )
        aggregate = {"latest": exp.Max, "max": exp.Max, "min": exp.Min, "mean": exp.Avg}
        summarised = (
            exp.select(aggregate[node.summary](this=value))
            .from_(self.table(MEASUREMENTS.name, alias))
            .where(exp.and_(*conditions))
        )
        return exp.Subquery(this=summarised)

    # Building blocks

    def event_matches(
        self, table: EventTable, alias: str, node: EventCriterion, as_of: date
    ) -> list[exp.Expr]:
        """The record is in the concept set, within the value bounds and units, and
        starts on or before ``as_of``."""
        conditions: list[exp.Expr] = [
            exp.LTE(this=exp.column(table.start, table=alias), expression=_date(as_of)),
            self.concept_set(node.concepts, exp.column(table.concept, table=alias)),
        ]
        if isinstance(node, ValuedEventCriterion) and table.value is not None:
            value = exp.column(table.value, table=alias)
            if node.min_value is not None:
                conditions.append(
                    exp.GTE(this=value.copy(), expression=exp.Literal.number(node.min_value))
                )
            if node.max_value is not None:
                conditions.append(
                    exp.LTE(this=value.copy(), expression=exp.Literal.number(node.max_value))
                )
            if node.unit_concept_ids and table.unit is not None:
                unit = exp.column(table.unit, table=alias)
                conditions.append(unit.isin(*_numbers(node.unit_concept_ids)))
        return conditions

    def in_days(
        self, start: exp.Column, from_day: int | None, to_day: int | None, scope: Scope
    ) -> list[exp.Expr]:
        """``start`` lies from ``from_day`` to ``to_day`` relative to the index date."""
        conditions: list[exp.Expr] = []
        first = scope.day(from_day, open_end=None)
        if first is not None:
            conditions.append(exp.GTE(this=start.copy(), expression=first))
        # Without an entry the index date is as_of, which records never pass anyway.
        last = scope.day(to_day, open_end=None)
        if last is not None and not (scope.index is None and (to_day or 0) >= 0):
            conditions.append(exp.LTE(this=start.copy(), expression=last))
        return conditions

    def first_event(self, node: Criterion, scope: Scope) -> exp.Expr:
        """The date of the person's first record of ``node`` after the index date (from
        day 1), on or before ``as_of``."""
        assert isinstance(node, EventCriterion)  # the model only allows these
        table = EVENT_TABLES[type(node)]
        alias = self.alias(table.alias)
        start = exp.column(table.start, table=alias)
        after = scope.day(1, open_end=None)
        first = (
            exp.select(exp.Min(this=start.copy()))
            .from_(self.table(table.name, alias))
            .where(
                exp.and_(
                    exp.column("person_id", table=alias).eq(
                        exp.column("person_id", table=scope.person)
                    ),
                    *self.event_matches(table, alias, node, scope.as_of),
                    exp.GTE(this=start, expression=after),
                )
            )
        )
        return exp.Subquery(this=first)

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
        return exp.paren(exp.or_(listed, column.copy().isin(query=descendant_ids)))

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
        CountBy: count_by,
        GlmStep: glm_step,
        Histogram: one_variable,
        Summary: one_variable,
        Correlation: correlation,
        KaplanMeier: kaplan_meier,
        DistinctPersons: distinct_persons,
    }
    VARIABLES: ClassVar[Mapping[type[Node], VariableHandler]] = {
        Age: age,
        AgeGroup: age_group,
        Sex: sex,
        Indicator: indicator,
        MeasurementValue: measurement_value,
    }
    CRITERIA: ClassVar[Mapping[type[Node], CriterionHandler]] = {
        AgeBetween: age_between,
        SexIs: sex_is,
        **dict.fromkeys(EVENT_TABLES, has_event),
        InObservation: in_observation,
        Not: not_,
        AllOf: all_of,
        AnyOf: any_of,
        AtLeastOf: at_least_of,
    }


def _numbers(values: Iterable[int]) -> list[exp.Expr]:
    return [exp.Literal.number(v) for v in values]


def _date(value: date) -> exp.Expr:
    return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.build("date"))


def _moved(day: date, days: int) -> date:
    """``day`` plus ``days`` days, held to the calendar's first and last day."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return date.max if days > 0 else date.min


def _shifted(day: exp.Expr, days: int) -> exp.Expr:
    """``day`` plus ``days`` days, as a date on every engine."""
    if days == 0:
        return day.copy()
    moved = exp.DateAdd(this=day.copy(), expression=exp.Literal.number(days), unit=exp.var("DAY"))
    return exp.cast(moved, exp.DataType.build("date"))

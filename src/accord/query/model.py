"""The query model: a small tree of frozen, validated nodes.

A researcher's analysis travels between hub and nodes as JSON and becomes this tree on
arrival. Every node checks itself when it is built, so a tree that exists is a tree every
engine can compile; engines never re-validate. JSON decoding collects every problem in
the document, each with its JSON path (``cohort.criteria[1].concepts.ids[0]``), so a
researcher fixes a query in one round trip.

Example:
    >>> from datetime import date
    >>> q = CountPersons(Cohort((AgeBetween(45, 75),), as_of=date(2025, 12, 31)))
    >>> query_from_json(q.to_json()) == q
    True
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, ClassVar, TypeAlias, cast

from accord.query.kinds import (
    MAX_BINS,
    MAX_CONCEPT_IDS,
    MAX_COVARIATES,
    MAX_CRITERIA,
    MAX_DAYS,
    MAX_DEPTH,
    MAX_STRATA,
    Boolean,
    Choice,
    ConceptIds,
    Date,
    Integer,
    Number,
    Numbers,
    at,
    show,
)
from accord.query.nodes import (
    Child,
    Children,
    Node,
    QueryValidationError,
    decode_node,
    meta,
    node_types,
)

_CONCEPT_IDS = meta(ConceptIds(required=True, most=MAX_CONCEPT_IDS))
_OPTIONAL_IDS = meta(ConceptIds(required=False, most=MAX_CONCEPT_IDS))
_AGE = meta(Integer(0, 150, "an age in whole years from 0 to 150"))
_MIN_COUNT = meta(Integer(0, 10_000, "a number of records from 0 to 10000"))
_MAX_COUNT = meta(
    Integer(0, 10_000, "a number of records from 0 to 10000, or null for no limit", optional=True)
)
_DAY = meta(
    Integer(
        -MAX_DAYS,
        MAX_DAYS,
        f"a day from {-MAX_DAYS} to {MAX_DAYS} relative to the index date, or null for no limit",
        optional=True,
    )
)
_DAYS = meta(Integer(0, MAX_DAYS, f"a number of days from 0 to {MAX_DAYS}"))
_CONCEPT_SET = meta(Child("concept_set", "a ConceptSet"))
_CRITERION = meta(Child("criterion", "a criterion"))
_COHORT = meta(Child("cohort", "a Cohort"))
_CRITERIA = meta(Children("criterion", "a criterion", "criteria", most=MAX_CRITERIA))


def _bounds_in_order(values: Mapping[str, Any], path: str, low: str, high: str) -> list[str]:
    lo, hi = values.get(low), values.get(high)
    if lo is not None and hi is not None and lo > hi:
        return [f"{at(path, low)}: {show(lo)} is greater than {high} {show(hi)}"]
    return []


@dataclass(frozen=True)
class ConceptSet(Node):
    """Standard concepts to match, optionally with all their descendants.

    ``exclude`` removes concepts from the set; when ``include_descendants`` is true the
    excluded concepts' descendants are removed too, so a whole branch can be cut off.
    """

    TYPE: ClassVar[str] = "concept_set"
    CATEGORY: ClassVar[str] = "concept_set"

    ids: tuple[int, ...] = field(metadata=_CONCEPT_IDS)
    include_descendants: bool = field(default=True, metadata=meta(Boolean()))
    exclude: tuple[int, ...] = field(default=(), metadata=_OPTIONAL_IDS)

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        included = set(values.get("ids", ()))
        return [
            f"{at(path, 'exclude')}[{i}]: concept {c} is also in ids; remove it from one"
            for i, c in enumerate(values.get("exclude", ()))
            if c in included
        ]


class Criterion(Node):
    """Something a person is or has at the cohort's index date; ``~c`` negates.

    The index date is the cohort's ``as_of`` date, or with an ``entry`` each person's
    first entry event. Records starting after ``as_of`` never count, whatever the index.
    """

    CATEGORY: ClassVar[str] = "criterion"

    def __invert__(self) -> Not:
        return Not(self)


@dataclass(frozen=True)
class AgeBetween(Criterion):
    """Age in whole years at the index date, year(index) - year_of_birth, within
    inclusive bounds."""

    TYPE: ClassVar[str] = "age_between"

    min_age: int = field(metadata=_AGE)
    max_age: int = field(metadata=_AGE)

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        return _bounds_in_order(values, path, "min_age", "max_age")


@dataclass(frozen=True)
class SexIs(Criterion):
    """Recorded sex (``person.gender_concept_id``) is one of the given concepts."""

    TYPE: ClassVar[str] = "sex_is"

    concept_ids: tuple[int, ...] = field(metadata=_CONCEPT_IDS)


@dataclass(frozen=True)
class EventCriterion(Criterion):
    """The person has between ``min_count`` and ``max_count`` records in the concept set
    starting from day ``from_day`` to day ``to_day`` relative to the index date (both
    inclusive; ``None`` leaves that side open), and never after ``as_of``.

    The defaults read "at least one record, on or before the index date".
    ``from_day=-29, to_day=0`` is the 30 days up to and including it; ``max_count=0``
    means none.
    """

    concepts: ConceptSet = field(metadata=_CONCEPT_SET)
    min_count: int = field(default=1, metadata=_MIN_COUNT, kw_only=True)
    max_count: int | None = field(default=None, metadata=_MAX_COUNT, kw_only=True)
    from_day: int | None = field(default=None, metadata=_DAY, kw_only=True)
    to_day: int | None = field(default=0, metadata=_DAY, kw_only=True)

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        problems = _bounds_in_order(values, path, "min_count", "max_count")
        problems += _bounds_in_order(values, path, "from_day", "to_day")
        if values.get("min_count") == 0 and "max_count" in values and values["max_count"] is None:
            problems.append(
                f"{at(path, 'min_count')}: 0 with no max_count matches everyone; "
                "give a max_count or a min_count of at least 1"
            )
        return problems


@dataclass(frozen=True)
class HasCondition(EventCriterion):
    """Conditions (``condition_occurrence``) in the set; see ``EventCriterion``."""

    TYPE: ClassVar[str] = "has_condition"


@dataclass(frozen=True)
class HasDrugExposure(EventCriterion):
    """Drug exposures in the set; see ``EventCriterion``."""

    TYPE: ClassVar[str] = "has_drug_exposure"


@dataclass(frozen=True)
class HasProcedure(EventCriterion):
    """Procedures (``procedure_occurrence``) in the set; see ``EventCriterion``."""

    TYPE: ClassVar[str] = "has_procedure"


@dataclass(frozen=True)
class HasVisit(EventCriterion):
    """Visits (``visit_occurrence``) of a kind in the set; see ``EventCriterion``."""

    TYPE: ClassVar[str] = "has_visit"


@dataclass(frozen=True)
class ValuedEventCriterion(EventCriterion):
    """An event criterion on a table with values: bounds on ``value_as_number`` and the
    units it must be recorded in (``unit_concept_id``; empty means any unit).

    With a bound given, records without a numeric value do not match.
    """

    min_value: float | None = field(default=None, metadata=meta(Number()), kw_only=True)
    max_value: float | None = field(default=None, metadata=meta(Number()), kw_only=True)
    unit_concept_ids: tuple[int, ...] = field(default=(), metadata=_OPTIONAL_IDS, kw_only=True)

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        problems = super().relations(values, path)
        return problems + _bounds_in_order(values, path, "min_value", "max_value")


@dataclass(frozen=True)
class HasMeasurement(ValuedEventCriterion):
    """Measurements in the set; see ``EventCriterion`` and ``ValuedEventCriterion``."""

    TYPE: ClassVar[str] = "has_measurement"


@dataclass(frozen=True)
class HasObservation(ValuedEventCriterion):
    """Observations in the set; see ``EventCriterion`` and ``ValuedEventCriterion``."""

    TYPE: ClassVar[str] = "has_observation"


@dataclass(frozen=True)
class InObservation(Criterion):
    """The index date lies in one of the person's observation periods, with at least
    ``prior_days`` observed before it and ``post_days`` after it."""

    TYPE: ClassVar[str] = "in_observation"

    prior_days: int = field(default=0, metadata=_DAYS)
    post_days: int = field(default=0, metadata=_DAYS)


@dataclass(frozen=True)
class Not(Criterion):
    """The person does not meet ``criterion``."""

    TYPE: ClassVar[str] = "not"

    criterion: Criterion = field(metadata=_CRITERION)


@dataclass(frozen=True)
class AllOf(Criterion):
    """The person meets every one of ``criteria`` (none given: everyone)."""

    TYPE: ClassVar[str] = "all_of"

    criteria: tuple[Criterion, ...] = field(metadata=_CRITERIA)


@dataclass(frozen=True)
class AnyOf(Criterion):
    """The person meets at least one of ``criteria``."""

    TYPE: ClassVar[str] = "any_of"

    criteria: tuple[Criterion, ...] = field(metadata=_CRITERIA)

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        if values.get("criteria") == ():
            return [f"{at(path, 'criteria')}: expected at least one criterion, got none"]
        return []


@dataclass(frozen=True)
class AtLeastOf(Criterion):
    """The person meets at least ``count`` of ``criteria``."""

    TYPE: ClassVar[str] = "at_least_of"

    count: int = field(metadata=meta(Integer(1, MAX_CRITERIA, "a number of criteria")))
    criteria: tuple[Criterion, ...] = field(metadata=_CRITERIA)

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        count, criteria = values.get("count"), values.get("criteria")
        if count is None or criteria is None or count <= len(criteria):
            return []
        return [f"{at(path, 'count')}: {count} is more than the {len(criteria)} criteria given"]


@dataclass(frozen=True)
class Entry(Node):
    """How a person enters a cohort: their first record matching any of ``events``
    (starting on or before ``as_of``, inside an observation period with at least
    ``prior_days`` observed before it and ``post_days`` after). Its date is the person's
    index date, to which criteria's days and ages refer. A person with no such record
    is not in the cohort.
    """

    TYPE: ClassVar[str] = "entry"
    CATEGORY: ClassVar[str] = "entry"

    events: tuple[Criterion, ...] = field(
        metadata=meta(Children("criterion", "an event criterion", "events", most=MAX_CRITERIA))
    )
    prior_days: int = field(default=0, metadata=_DAYS)
    post_days: int = field(default=0, metadata=_DAYS)

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        events = values.get("events")
        if events is None:
            return []
        if not events:
            return [f"{at(path, 'events')}: expected at least one event, got none"]
        problems: list[str] = []
        for i, event in enumerate(events):
            problems += _plain_event(event, f"{at(path, 'events')}[{i}]", "an entry event")
        return problems


def _plain_event(event: Criterion, here: str, what: str) -> list[str]:
    """Problems with ``event`` where a plain event is needed: an event criterion with no
    counts or days of its own (its date is what matters, not how many there are)."""
    if not isinstance(event, EventCriterion):
        return [
            f"{here}: expected an event criterion (has_condition, has_drug_exposure, ...), "
            f"got {event.TYPE}"
        ]
    if (event.min_count, event.max_count, event.from_day, event.to_day) != (1, None, None, 0):
        return [f"{here}: {what} takes no min_count, max_count, from_day or to_day"]
    return []


@dataclass(frozen=True)
class Cohort(Node):
    """Persons meeting every criterion at their index date.

    Without an ``entry`` the index date is ``as_of`` for everyone; with one it is each
    person's first entry event. Ages are taken at the index date, and only records
    starting on or before ``as_of`` count, so a cohort gives the same answer whenever it
    is run. No criteria means every person (who entered).
    """

    TYPE: ClassVar[str] = "cohort"
    CATEGORY: ClassVar[str] = "cohort"

    criteria: tuple[Criterion, ...] = field(metadata=_CRITERIA)
    as_of: date = field(metadata=meta(Date()))
    entry: Entry | None = field(
        default=None, metadata=meta(Child("entry", "an Entry", optional=True))
    )


@dataclass(frozen=True)
class CountPersons(Node):
    """The number of distinct persons in a cohort."""

    TYPE: ClassVar[str] = "count_persons"
    CATEGORY: ClassVar[str] = "analysis"

    cohort: Cohort = field(metadata=_COHORT)


class Variable(Node):
    """A number per person of a cohort, at the person's index date: a model's outcome or
    covariate, or a stratum. It is computed at the member; only sums or counts leave.
    ``None`` (SQL null) means unknown for that person."""

    CATEGORY: ClassVar[str] = "variable"

    @property
    def label(self) -> str:
        """A short name for tables and frames: ``age``, ``has_condition 201826``."""
        return self.TYPE


@dataclass(frozen=True)
class Age(Variable):
    """Age in whole years at the index date: year(index) - year_of_birth."""

    TYPE: ClassVar[str] = "age"


@dataclass(frozen=True)
class AgeGroup(Variable):
    """Age at the index date in groups of ``width`` years, as each group's first age:
    with width 10, ages 40 to 49 are 40."""

    TYPE: ClassVar[str] = "age_group"

    width: int = field(default=10, metadata=meta(Integer(1, 150, "a width in years, 1 to 150")))

    @property
    def label(self) -> str:
        return f"age_group {self.width}"


@dataclass(frozen=True)
class Sex(Variable):
    """Recorded sex, as its concept id (``person.gender_concept_id``)."""

    TYPE: ClassVar[str] = "sex"


@dataclass(frozen=True)
class Indicator(Variable):
    """1 if the person meets ``criterion`` at the index date, else 0."""

    TYPE: ClassVar[str] = "indicator"

    criterion: Criterion = field(metadata=_CRITERION)

    @property
    def label(self) -> str:
        concepts = getattr(self.criterion, "concepts", None)
        ids = concepts.ids if concepts is not None else getattr(self.criterion, "concept_ids", ())
        return " ".join([self.criterion.TYPE, *(str(i) for i in ids[:2])])


SUMMARIES: tuple[str, ...] = ("latest", "mean", "min", "max")


@dataclass(frozen=True)
class MeasurementValue(Variable):
    """A person's measurements in the set, in the units given, from ``from_day`` to
    ``to_day`` relative to the index date (never after ``as_of``), summarised as one
    number: the ``latest`` value (the largest on the latest day), their ``mean``, ``min``
    or ``max``. ``None`` when the person has no such measurement with a value."""

    TYPE: ClassVar[str] = "measurement_value"

    concepts: ConceptSet = field(metadata=_CONCEPT_SET)
    unit_concept_ids: tuple[int, ...] = field(default=(), metadata=_OPTIONAL_IDS)
    summary: str = field(default="latest", metadata=meta(Choice(SUMMARIES)))
    from_day: int | None = field(default=None, metadata=_DAY)
    to_day: int | None = field(default=0, metadata=_DAY)

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        return _bounds_in_order(values, path, "from_day", "to_day")

    @property
    def label(self) -> str:
        return " ".join([self.summary, *(str(i) for i in self.concepts.ids[:2])])


FAMILIES: tuple[str, ...] = ("gaussian", "binomial", "poisson")
_VARIABLE = meta(Child("variable", "a variable"))


@dataclass(frozen=True)
class GlmStep(Node):
    """One member's part of one Newton-Raphson step of a generalised linear model.

    The model is ``outcome ~ 1 + covariates`` over the cohort's persons, with the
    family's canonical link; ``beta`` holds the current coefficients, the intercept
    first. The member answers with its score vector, information matrix, deviance and
    number of persons, which the researcher's client sums over members to take the step.
    """

    TYPE: ClassVar[str] = "glm_step"
    CATEGORY: ClassVar[str] = "analysis"

    cohort: Cohort = field(metadata=_COHORT)
    outcome: Variable = field(metadata=_VARIABLE)
    covariates: tuple[Variable, ...] = field(
        metadata=meta(Children("variable", "a variable", "variables", most=MAX_COVARIATES))
    )
    family: str = field(metadata=meta(Choice(FAMILIES)))
    beta: tuple[float, ...] = field(metadata=meta(Numbers(most=MAX_COVARIATES + 1)))

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        covariates, beta = values.get("covariates"), values.get("beta")
        if covariates is None or beta is None or len(beta) == len(covariates) + 1:
            return []
        return [
            f"{at(path, 'beta')}: expected {len(covariates) + 1} coefficients (the "
            f"intercept and one per covariate), got {len(beta)}"
        ]

    def with_beta(self, beta: Sequence[float]) -> GlmStep:
        """The same model at other coefficients: the next step's question."""
        return GlmStep(
            self.cohort, self.outcome, self.covariates, self.family, tuple(map(float, beta))
        )


_EDGES = meta(Numbers(most=MAX_BINS + 1))


def _edges_increase(values: Mapping[str, Any], path: str) -> list[str]:
    edges = values.get("edges")
    if edges is None:
        return []
    if len(edges) < 2:
        return [f"{at(path, 'edges')}: expected at least 2 bin edges, got {len(edges)}"]
    return [
        f"{at(path, 'edges')}[{i}]: {show(high)} is not greater than the edge before it"
        for i, (low, high) in enumerate(itertools.pairwise(edges), 1)
        if not high > low
    ]


@dataclass(frozen=True)
class CountBy(Node):
    """The number of persons of a cohort in each stratum: a stratified count for one
    variable, a crosstab for two or three. Persons whose variable is unknown form their
    own stratum (``None``)."""

    TYPE: ClassVar[str] = "count_by"
    CATEGORY: ClassVar[str] = "analysis"

    cohort: Cohort = field(metadata=_COHORT)
    by: tuple[Variable, ...] = field(
        metadata=meta(Children("variable", "a variable", "variables", most=MAX_STRATA))
    )

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        if values.get("by") == ():
            return [f"{at(path, 'by')}: expected at least one variable to stratify by, got none"]
        return []


@dataclass(frozen=True)
class OnEdges(Node):
    """An analysis of one variable on bin edges agreed before any data is read."""

    CATEGORY: ClassVar[str] = "analysis"

    cohort: Cohort = field(metadata=_COHORT)
    variable: Variable = field(metadata=_VARIABLE)
    edges: tuple[float, ...] = field(metadata=_EDGES)

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        return _edges_increase(values, path)


@dataclass(frozen=True)
class Histogram(OnEdges):
    """How many persons' ``variable`` falls in each bin of ``edges``: bins are
    ``[e_i, e_i+1)``, the last one closed; values outside the edges and unknown values
    are counted apart."""

    TYPE: ClassVar[str] = "histogram"


@dataclass(frozen=True)
class Summary(OnEdges):
    """Summary statistics of ``variable`` over the cohort's persons with a known value:
    n, mean and standard deviation from summed moments, quantiles from the histogram on
    ``edges`` (so good to one bin's width)."""

    TYPE: ClassVar[str] = "summary"

    @property
    def shift(self) -> float:
        """What the moments are taken around: the middle of the edges, which every
        member knows before reading data, so sums of squares do not cancel."""
        return (self.edges[0] + self.edges[-1]) / 2


@dataclass(frozen=True)
class Correlation(Node):
    """Pearson correlations between ``variables`` over the persons with every value known,
    from summed cross-products."""

    TYPE: ClassVar[str] = "correlation"
    CATEGORY: ClassVar[str] = "analysis"

    cohort: Cohort = field(metadata=_COHORT)
    variables: tuple[Variable, ...] = field(
        metadata=meta(Children("variable", "a variable", "variables", most=MAX_COVARIATES))
    )

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        chosen = values.get("variables")
        if chosen is not None and len(chosen) < 2:
            return [f"{at(path, 'variables')}: expected at least 2 variables, got {len(chosen)}"]
        return []


@dataclass(frozen=True)
class KaplanMeier(Node):
    """Survival from each person's index date (the cohort needs an ``entry``) to their
    first ``event`` record from day 1 after it, censored at the end of the observation
    period holding the index date or at ``as_of``, whichever comes first. Counts are
    taken on a grid of ``step_days`` up to ``horizon_days``, the same at every member."""

    TYPE: ClassVar[str] = "kaplan_meier"
    CATEGORY: ClassVar[str] = "analysis"

    cohort: Cohort = field(metadata=_COHORT)
    event: Criterion = field(metadata=_CRITERION)
    horizon_days: int = field(metadata=meta(Integer(1, MAX_DAYS, "a number of days")))
    step_days: int = field(default=30, metadata=meta(Integer(1, MAX_DAYS, "a number of days")))

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        problems = []
        cohort, event = values.get("cohort"), values.get("event")
        if cohort is not None and cohort.entry is None:
            problems.append(
                f"{at(path, 'cohort.entry')}: survival needs an entry event to start from"
            )
        if event is not None:
            problems += _plain_event(event, at(path, "event"), "a survival event")
        horizon, step = values.get("horizon_days"), values.get("step_days")
        if horizon is not None and step is not None:
            if step > horizon:
                problems.append(f"{at(path, 'step_days')}: {step} is more than horizon_days")
            elif horizon // step > MAX_BINS:
                problems.append(
                    f"{at(path, 'step_days')}: gives {horizon // step} grid points; "
                    f"at most {MAX_BINS} allowed"
                )
        return problems


@dataclass(frozen=True)
class DistinctPersons(Node):
    """The number of distinct patients in a cohort across members: each member sends a
    HyperLogLog sketch of keyed tokens of its patients' national ids, so a patient at two
    members counts once. ``precision`` sets the sketch's size (2**precision registers)
    and its relative standard error, 1.04 / sqrt(2**precision)."""

    TYPE: ClassVar[str] = "distinct_persons"
    CATEGORY: ClassVar[str] = "analysis"

    cohort: Cohort = field(metadata=_COHORT)
    precision: int = field(default=14, metadata=meta(Integer(4, 16, "a precision from 4 to 16")))


Analysis: TypeAlias = (
    CountPersons
    | GlmStep
    | CountBy
    | Histogram
    | Summary
    | Correlation
    | KaplanMeier
    | DistinctPersons
)


def query_from_json(obj: object) -> Analysis:
    """Decode an analysis from a JSON string or already-parsed JSON data.

    Raises ``QueryValidationError`` naming every problem with its JSON path.
    """
    if isinstance(obj, str | bytes):
        try:
            obj = json.loads(obj, parse_constant=_reject_constant)
        except ValueError as error:
            raise QueryValidationError([f"query: not valid JSON: {error}"]) from None
        except RecursionError:
            raise QueryValidationError(
                [f"query: nested more than {MAX_DEPTH} levels deep"]
            ) from None
    problems: list[str] = []
    node = decode_node(obj, "", node_types("analysis"), problems, depth=0)
    if problems or node is None:
        raise QueryValidationError(problems)
    return cast(Analysis, node)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")

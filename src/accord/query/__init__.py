"""The query model and its compilers: one model, many engines.

A query is a tree of frozen, validated nodes (``model``); engines compile it to SQL with
SQLGlot (``compiler`` and ``engines``). ``builders`` reads well in Python; JSON is how a
query travels between hub and nodes.
"""

from accord.query.builders import (
    age_between,
    cohort,
    concepts,
    count_persons,
    has_condition,
    has_drug,
    has_measurement,
    sex_is,
)
from accord.query.engines import Dialect, compile_query
from accord.query.model import (
    AgeBetween,
    Analysis,
    Cohort,
    ConceptSet,
    CountPersons,
    Criterion,
    HasCondition,
    HasDrugExposure,
    HasMeasurement,
    Node,
    Not,
    QueryValidationError,
    SexIs,
    query_from_json,
)

__all__ = [
    "AgeBetween",
    "Analysis",
    "Cohort",
    "ConceptSet",
    "CountPersons",
    "Criterion",
    "Dialect",
    "HasCondition",
    "HasDrugExposure",
    "HasMeasurement",
    "Node",
    "Not",
    "QueryValidationError",
    "SexIs",
    "age_between",
    "cohort",
    "compile_query",
    "concepts",
    "count_persons",
    "has_condition",
    "has_drug",
    "has_measurement",
    "query_from_json",
    "sex_is",
]

"""The query model and its compilers: one model, many engines.

A query is a tree of frozen, validated nodes (``model``); engines compile it to SQL with
SQLGlot (``compiler`` and ``engines``). ``builders`` reads well in Python; JSON is how a
query travels between hub and nodes.
"""

from accord.query.builders import (
    age,
    age_between,
    cohort,
    concepts,
    count_persons,
    glm,
    has_condition,
    has_drug,
    has_measurement,
    indicator,
    sex_is,
)
from accord.query.engines import Dialect, compile_query
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
    Not,
    SexIs,
    Variable,
    query_from_json,
)
from accord.query.nodes import Node, QueryValidationError

__all__ = [
    "Age",
    "AgeBetween",
    "Analysis",
    "Cohort",
    "ConceptSet",
    "CountPersons",
    "Criterion",
    "Dialect",
    "GlmStep",
    "HasCondition",
    "HasDrugExposure",
    "HasMeasurement",
    "Indicator",
    "Node",
    "Not",
    "QueryValidationError",
    "SexIs",
    "Variable",
    "age",
    "age_between",
    "cohort",
    "compile_query",
    "concepts",
    "count_persons",
    "glm",
    "has_condition",
    "has_drug",
    "has_measurement",
    "indicator",
    "query_from_json",
    "sex_is",
]

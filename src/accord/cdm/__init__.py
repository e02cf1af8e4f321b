"""The OMOP Common Data Model v5.4: the specification as data, DDL and Arrow schemas.

>>> load_spec().table("drug_exposure").field("days_supply").datatype
'integer'
"""

from accord.cdm.arrow import arrow_field, arrow_schema
from accord.cdm.ddl import (
    Dialect,
    SkippedForeignKey,
    column_type,
    create_cdm,
    ddl_statements,
    skipped_foreign_keys,
)
from accord.cdm.spec import (
    CLINICAL_TABLES,
    HEALTH_ECONOMICS_TABLES,
    HEALTH_SYSTEM_TABLES,
    VOCABULARY_TABLES,
    CdmSpec,
    Field,
    ForeignKey,
    Table,
    UnknownFieldError,
    UnknownTableError,
    load_spec,
    validate_references,
)

__all__ = [
    "CLINICAL_TABLES",
    "HEALTH_ECONOMICS_TABLES",
    "HEALTH_SYSTEM_TABLES",
    "VOCABULARY_TABLES",
    "CdmSpec",
    "Dialect",
    "Field",
    "ForeignKey",
    "SkippedForeignKey",
    "Table",
    "UnknownFieldError",
    "UnknownTableError",
    "arrow_field",
    "arrow_schema",
    "column_type",
    "create_cdm",
    "ddl_statements",
    "load_spec",
    "skipped_foreign_keys",
    "validate_references",
]

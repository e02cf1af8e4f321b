"""The data quality gate: checks generated from the CDM spec, run as set-based SQL.

A member's CDM is checked before it joins analyses. Checks follow Kahn's framework
(conformance, completeness, plausibility); each has a severity and a threshold, and
:func:`summary` turns the results into a decision: ``quarantined`` when a fatal check
fails or cannot run, ``accepted_with_warnings`` when another check fails, else
``accepted``.

>>> import duckdb
>>> from accord.cdm import create_cdm
>>> connection = duckdb.connect()
>>> create_cdm(connection, "duckdb")
>>> summary(run_checks(connection, "duckdb")).decision  # an empty CDM is never a pass
'quarantined'
"""

from accord.quality.catalogue import (
    Check,
    Family,
    Kind,
    Severity,
    build_catalogue,
    default_catalogue,
)
from accord.quality.results import STATUSES, CheckResult, Decision, Status, Summary, summary
from accord.quality.run import batch_sql, run_checks

__all__ = [
    "STATUSES",
    "Check",
    "CheckResult",
    "Decision",
    "Family",
    "Kind",
    "Severity",
    "Status",
    "Summary",
    "batch_sql",
    "build_catalogue",
    "default_catalogue",
    "run_checks",
    "summary",
]

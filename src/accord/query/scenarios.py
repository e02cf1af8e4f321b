"""The consortium's seed scenarios as queries, shared by the demo, the CLI and the tests."""

from __future__ import annotations

from datetime import date

from accord.query.builders import age_between, cohort, count_persons, has_condition, has_drug
from accord.query.model import CountPersons
from accord.vocab.concepts import BETA_BLOCKERS, HYPERTENSION


def trial_recruitment(as_of: date) -> CountPersons:
    """Scenario 1: persons aged 45–75 at ``as_of`` with hypertension, never on a beta blocker.

    Hypertension is the SNOMED concept with its descendants, which is where the CDM puts
    ICD-10 I10 and its ICD-9 equivalents; beta blockers are ATC C07 with every drug under it.
    """
    return count_persons(
        cohort(
            age_between(45, 75),
            has_condition(HYPERTENSION),
            ~has_drug(BETA_BLOCKERS),
            as_of=as_of,
        )
    )

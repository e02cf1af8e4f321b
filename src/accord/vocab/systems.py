"""FHIR code systems and the OMOP vocabularies that hold their codes.

A FHIR ``Coding`` names its code system by URI; OMOP names it by ``vocabulary_id``. The
table is data, one entry per system, so adding a system is one line.

>>> vocabulary_for_system("http://snomed.info/sct")
'SNOMED'
>>> system_for_vocabulary("ICD10CM")
'http://hl7.org/fhir/sid/icd-10-cm'
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

FHIR_SYSTEM_VOCABULARIES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "http://snomed.info/sct": "SNOMED",
        "http://loinc.org": "LOINC",
        "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
        "http://hl7.org/fhir/sid/icd-10-cm": "ICD10CM",
        "http://hl7.org/fhir/sid/icd-10": "ICD10",
        "http://hl7.org/fhir/sid/icd-9-cm": "ICD9CM",
        "http://www.ama-assn.org/go/cpt": "CPT4",
        "http://hl7.org/fhir/sid/cvx": "CVX",
        "http://unitsofmeasure.org": "UCUM",
        "http://www.whocc.no/atc": "ATC",
        "http://hl7.org/fhir/administrative-gender": "Gender",
    }
)
"""FHIR code system URI to OMOP ``vocabulary_id``."""

FHIR_GENDER_CODES: Final[Mapping[str, str]] = MappingProxyType({"male": "M", "female": "F"})
"""FHIR administrative-gender codes to OMOP Gender ``concept_code``s.

The two systems spell the codes differently, so gender codes are translated before they
are mapped. FHIR's ``other`` and ``unknown`` have no standard Gender concept in OMOP and
are meant to map to concept 0.
"""

_VOCABULARY_SYSTEMS: Final[Mapping[str, str]] = MappingProxyType(
    {vocabulary: system for system, vocabulary in FHIR_SYSTEM_VOCABULARIES.items()}
)


LOCAL_SYSTEM_PREFIX = "urn:accord:vocabulary:"
"""Code systems without a public URI (a consortium's local concepts, ids from 2,000,000,000)
travel as ``urn:accord:vocabulary:<vocabulary_id>``."""


def vocabulary_for_system(uri: str) -> str | None:
    """The OMOP ``vocabulary_id`` for a FHIR code system URI, or ``None`` if unknown.

    A trailing slash is ignored, since senders differ on it.

    >>> vocabulary_for_system("urn:accord:vocabulary:Accord")
    'Accord'
    """
    uri = uri.strip().rstrip("/")
    if uri.startswith(LOCAL_SYSTEM_PREFIX) and len(uri) > len(LOCAL_SYSTEM_PREFIX):
        return uri[len(LOCAL_SYSTEM_PREFIX) :]
    return FHIR_SYSTEM_VOCABULARIES.get(uri)


def system_for_vocabulary(vocabulary_id: str) -> str | None:
    """The FHIR code system URI for an OMOP ``vocabulary_id``, or ``None`` if unknown."""
    return _VOCABULARY_SYSTEMS.get(vocabulary_id)

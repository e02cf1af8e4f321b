"""Synthetic consortia: realistic, reproducible OMOP CDM databases for demos and tests.

``generate_consortium`` writes one DuckDB CDM per member (hospital, clinic, insurer,
trial site, public-health agency) and a ``manifest.json`` whose figures are counted
exactly from the generated data, so analyses can be checked against them.
``plant_defects`` (or ``generate_consortium(defects=...)``) plants data quality defects
of every kind at a known rate, so the quality gate can be checked against exact counts.
"""

from accord.synth.defects import DEFECTS, Defect, plant_defects
from accord.synth.generate import generate_consortium
from accord.synth.manifest import ConditionCount, ConsortiumManifest, MemberManifest
from accord.synth.profiles import MemberKind

__all__ = [
    "DEFECTS",
    "ConditionCount",
    "ConsortiumManifest",
    "Defect",
    "MemberKind",
    "MemberManifest",
    "generate_consortium",
    "plant_defects",
]

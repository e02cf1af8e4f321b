"""Synthetic consortia: realistic, reproducible OMOP CDM databases for demos and tests.

``generate_consortium`` writes one DuckDB CDM per member (hospital, clinic, insurer,
trial site, public-health agency) and a ``manifest.json`` whose figures are counted
exactly from the generated data, so analyses can be checked against them.
"""

from accord.synth.generate import generate_consortium
from accord.synth.manifest import ConditionCount, ConsortiumManifest, MemberManifest
from accord.synth.profiles import MemberKind

__all__ = [
    "ConditionCount",
    "ConsortiumManifest",
    "MemberKind",
    "MemberManifest",
    "generate_consortium",
]

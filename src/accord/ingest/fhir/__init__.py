"""FHIR R4 into the OMOP CDM: Bulk Data ndjson exports and Bundles.

>>> from accord.ingest import CdmTarget, LoadReport
>>> from accord.ingest.fhir import ingest_fhir
>>> # ingest_fhir(Path("export/"), CdmTarget.open("member.duckdb"), LoadReport(...))

The rooms: :mod:`.files` finds and streams files, :mod:`.entities` and :mod:`.encounters`
handle the resources others refer to, :mod:`.events` turns clinical resources into
events, :mod:`.routing` maps their codes and routes rows by domain, :mod:`.writer`
appends with ids and provenance, :mod:`.synthetic` writes test exports.
"""

from accord.ingest.fhir.ingest import MAPPING_VERSION, ingest_fhir

__all__ = ["MAPPING_VERSION", "ingest_fhir"]

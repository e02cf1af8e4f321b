"""Ingestion: loading a member's data into its OMOP CDM, with provenance and a report.

Every path shares one framework: :class:`CdmTarget` (a DuckDB file or a PostgreSQL
schema), :meth:`CdmTarget.load` (one transaction per load) and :class:`LoadReport` (rows,
rejects, unmapped codes, time). The paths themselves:

* :func:`ingest_omop_csv` – a folder of CDM v5.4 CSV files written by OHDSI tools;
* :func:`attach_postgres` – a PostgreSQL schema that already holds a CDM (nothing copied);
* ``accord.ingest.fhir`` – FHIR R4 resources.
"""

from accord.ingest.omop import AttachedCdm, attach_postgres, ingest_omop_csv
from accord.ingest.report import LoadReport, Reject
from accord.ingest.target import CdmTarget, Load

__all__ = [
    "AttachedCdm",
    "CdmTarget",
    "Load",
    "LoadReport",
    "Reject",
    "attach_postgres",
    "ingest_omop_csv",
]

"""A member's own CSV files, loaded through a YAML mapping file into its CDM.

>>> from accord.ingest.csv import ingest_csv, read_mapping
>>> # ingest_csv(Path("extract/mapping.yaml"), CdmTarget.open("member.duckdb"), report)

The rooms: :mod:`.mapping` reads and checks the mapping file (its format, with a full
example, is described there) with :mod:`.rules` for its field rules and :mod:`.nodes`
for YAML line numbers, :mod:`.reading` reads CSV files as text, :mod:`.values` turns
text into CDM values, :mod:`.codes` maps codes (through the GEMs for ICD-9-CM)
and routes rows by domain, :mod:`.ingest` runs the load.
"""

from accord.ingest.csv.ingest import ingest_csv
from accord.ingest.csv.mapping import MappingFile, read_mapping

__all__ = ["MappingFile", "ingest_csv", "read_mapping"]

"""Loading a FHIR R4 export into a member's OMOP CDM: :func:`ingest_fhir`.

Two passes over the export. The first gathers the resources others refer to (Location,
Organization, Practitioner, Patient, Encounter) and Claims from every file and writes
them in dependency order, so a reference resolves whichever file it sits in. The second streams
the clinical resources in batches: extract events, resolve references and dates, map
codes per vocabulary, route rows by their concept's domain and append each CDM table in
bulk. Files named for one resource type (``Patient.000.ndjson``) are read in their pass
only; Bundles and other files are read in both, each pass taking its own types.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from accord.ingest.fhir import claims, encounters, entities
from accord.ingest.fhir.codes import CodingChooser
from accord.ingest.fhir.contracts import Mapper, Progress, Report
from accord.ingest.fhir.elements import Rejected, resource_key
from accord.ingest.fhir.events import EXTRACTORS
from accord.ingest.fhir.files import (
    BATCH_SIZE,
    RawResource,
    SourceFile,
    discover,
    read_batches,
)
from accord.ingest.fhir.pending import Pending
from accord.ingest.fhir.references import ReferenceIndex
from accord.ingest.fhir.resource_types import FHIR_R4_RESOURCE_TYPES, REFERENCED_TYPES
from accord.ingest.fhir.routing import EventBatch, EventContext, load_events
from accord.ingest.fhir.writer import CdmWriter, provenance_ids
from accord.ingest.periods import derive_observation_periods
from accord.ingest.report import LoadReport
from accord.ingest.target import CdmTarget
from accord.vocab.mapping import ConceptMapper
from accord.vocab.systems import vocabulary_for_system

MAPPING_VERSION: Final = "accord-fhir-r4/1"
"""Names the rules in this package; bump it when a change would map a resource differently."""

_REFERENCED: Final = frozenset(REFERENCED_TYPES)
_NOT_YET_MAPPED: Final = {
    "ExplanationOfBenefit": "ExplanationOfBenefit is not mapped to the CDM yet "
    "(cost from claims is planned)",
}


def ingest_fhir(
    path: Path,
    target: CdmTarget,
    report: LoadReport,
    *,
    progress: Progress | None = None,
    national_id_system: str | None = None,
) -> None:
    """Load the FHIR R4 resources at ``path`` into ``target`` as one load.

    ``path`` is a Bulk Data export directory of ndjson files (``.ndjson`` or
    ``.ndjson.gz``), a Bundle file, or a directory of Bundles. Resources that cannot be
    loaded are rejected into ``report`` and the load goes on; a file that cannot be read
    raises :class:`~accord.errors.DataError` and nothing of the load is kept. A resource
    loaded before (same type and id) is not loaded again. ``national_id_system`` is the
    identifier system whose value becomes ``person_source_value``; without it, or for a
    Patient without such an identifier, the Patient's id does.

    ``progress`` is called with the file being read, bytes read and bytes to read.
    """
    sources = discover(path)
    with _collector_paused(), target.load(report) as load:
        report.vocabulary_version = report.vocabulary_version or target.vocabulary_version()
        report.mapping_version = report.mapping_version or MAPPING_VERSION
        vocabulary = report.vocabulary_version or "none loaded"
        writer = CdmWriter(
            load,
            report,
            mapping_version=f"{MAPPING_VERSION} (vocabulary {vocabulary})",
            existing_ids=provenance_ids(load),
        )
        mapper = ConceptMapper.from_connection(target.connection, schema=target.schema)
        run = _Run(report, writer, mapper, national_id_system, _Progress(sources, progress))
        # Bundles in a directory are often one per patient: tens of thousands of small
        # files. Their rows are appended together under the directory's name, each
        # locator naming its file, rather than in one small append per file.
        run.bundle_group = path.name if path.is_dir() else None
        run.gather_referenced(sources)
        run.write_referenced()
        run.load_clinical(sources)
        derive_observation_periods(target, load)


@contextmanager
def _collector_paused() -> Iterator[None]:
    # Parsed JSON is millions of small dicts and lists that never form cycles; left on,
    # the cyclic collector rescans the growing heap again and again and triples the time.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class _Progress:
    """Bytes read across both passes, told to the caller's callback."""

    sources: list[SourceFile]
    callback: Progress | None
    done: int = 0

    def __post_init__(self) -> None:
        self.total = sum(s.size * len(_passes(s)) for s in self.sources)

    def reader(self, source: SourceFile) -> Callable[[int], None] | None:
        callback = self.callback
        if callback is None:
            return None
        start = self.done

        def tell(position: int) -> None:
            self.done = start + position
            callback(source.label, self.done, self.total)

        return tell


def _passes(source: SourceFile) -> tuple[int, ...]:
    if source.kind == "ndjson" and source.resource_type is not None:
        return (1,) if source.resource_type in _REFERENCED else (2,)
    return (1, 2)


class _Run:
    def __init__(
        self,
        report: Report,
        writer: CdmWriter,
        mapper: Mapper,
        national_id_system: str | None,
        progress: _Progress,
    ) -> None:
        self.report = report
        self.writer = writer
        self.chooser = CodingChooser(vocabulary_for_system)
        self.index = ReferenceIndex(writer.existing_ids)
        self.context = EventContext(self.index, mapper, report, writer)
        self.national_id_system = national_id_system
        self.progress = progress
        self.pending = {kind: Pending() for kind in REFERENCED_TYPES}
        self.bundle_group: str | None = None

    def _placement(self, source: SourceFile, raw: RawResource) -> tuple[str, str]:
        """The file name and locator a row's provenance records."""
        if source.kind == "bundle" and self.bundle_group is not None:
            return self.bundle_group, f"{source.label} {raw.locator}"
        return source.label, raw.locator

    def _reject(self, file: str, locator: str, reason: str, value: str | None = None) -> None:
        self.report.reject(file, locator, reason, value=value)

    def _batches(self, source: SourceFile, first_read: bool) -> Iterator[list[RawResource]]:
        def reject(locator: str, reason: str, value: str | None) -> None:
            self._reject(source.label, locator, reason, value)

        # A file read in both passes reports its malformed lines once, in the first.
        yield from read_batches(
            source, reject if first_read else None, position=self.progress.reader(source)
        )

    def gather_referenced(self, sources: list[SourceFile]) -> None:
        for source in sources:
            passes = _passes(source)
            if 1 not in passes:
                continue
            only_here = passes == (1,)
            for batch in self._batches(source, first_read=True):
                for raw in batch:
                    kind = raw.resource["resourceType"]
                    if kind in _REFERENCED:
                        self._gather(source, kind, raw)
                    elif only_here:
                        self._reject(
                            source.label,
                            raw.locator,
                            "resource in a file named for another type is not read "
                            "(Bulk Data files hold one type each)",
                            kind,
                        )

    def _gather(self, source: SourceFile, kind: str, raw: RawResource) -> None:
        resource = raw.resource
        try:
            key = resource_key(resource, raw.full_url)
            if kind == "Patient":
                row = entities.patient(resource, self.national_id_system)
            elif kind == "Encounter":
                row = encounters.encounter(resource)
            elif kind == "Claim":
                row = claims.claim(resource, self.chooser)
            else:
                row = _GATHER[kind](resource)
        except Rejected as rejected:
            self._reject(source.label, raw.locator, rejected.reason, rejected.value)
            return
        self.pending[kind].add(*self._placement(source, raw), key, raw.full_url, row)

    def write_referenced(self) -> None:
        entities.write_locations(self.pending["Location"], self.writer, self.index)
        entities.write_organizations(self.pending["Organization"], self.writer, self.index)
        entities.write_practitioners(self.pending["Practitioner"], self.writer, self.index)
        entities.write_patients(self.pending["Patient"], self.writer, self.index, self._reject)
        encounters.write_encounters(
            self.pending["Encounter"], self.writer, self.index, self._reject
        )
        claims.write_claims(self.pending["Claim"], self.context, self._reject)
        self.pending.clear()

    def load_clinical(self, sources: list[SourceFile]) -> None:
        grouped: EventBatch | None = None
        for source in sources:
            passes = _passes(source)
            if 2 not in passes:
                continue
            only_here = passes == (2,)
            for raws in self._batches(source, first_read=only_here):
                file, _ = self._placement(source, raws[0]) if raws else (source.label, "")
                if grouped is not None and grouped.source_file != file:
                    load_events(grouped, self.context)
                    grouped = None
                batch = grouped if grouped is not None else EventBatch(file)
                for raw in raws:
                    self._extract(batch, source, raw, only_here)
                if file == source.label or len(batch.keys) >= BATCH_SIZE:
                    load_events(batch, self.context)
                    grouped = None
                else:
                    grouped = batch
        if grouped is not None:
            load_events(grouped, self.context)

    def _extract(
        self, batch: EventBatch, source: SourceFile, raw: RawResource, only_here: bool
    ) -> None:
        resource = raw.resource
        kind = resource["resourceType"]
        extractor = EXTRACTORS.get(kind)
        if extractor is None:
            if kind in _REFERENCED:
                if only_here:
                    self._reject(
                        source.label,
                        raw.locator,
                        "resource in a file named for another type is not read "
                        "(Bulk Data files hold one type each)",
                        kind,
                    )
                return
            self._reject(source.label, raw.locator, *_unmapped_reason(kind))
            return
        try:
            key = resource_key(resource, raw.full_url)
            events = extractor(resource, len(batch.keys), self.chooser)
        except Rejected as rejected:
            self._reject(source.label, raw.locator, rejected.reason, rejected.value)
            return
        batch.keys.append("fhir:" + key)
        batch.locators.append(self._placement(source, raw)[1])
        batch.events.extend(events)


def _unmapped_reason(kind: str) -> tuple[str, str | None]:
    if kind in _NOT_YET_MAPPED:
        return _NOT_YET_MAPPED[kind], None
    if kind in FHIR_R4_RESOURCE_TYPES:
        return f"{kind} is not mapped to the CDM yet", None
    return "unknown resourceType: not a FHIR R4 resource type", kind


_GATHER: Final[dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]]] = {
    "Location": entities.location,
    "Organization": entities.organization,
    "Practitioner": entities.practitioner,
}

"""Finding and streaming the files of a FHIR export: Bulk Data ndjson and Bundles.

A Bulk Data export is a directory of newline-delimited JSON files, one or more per
resource type (``Patient.ndjson``, ``Patient.000.ndjson``, ``Observation.1.ndjson.gz``).
Bundles are JSON documents whose entries hold resources. Both are read as a stream of
:class:`RawResource` batches, so an export larger than memory still loads.

A bad line or entry is the caller's to reject and the load goes on; a file that cannot
be read at all (missing, not UTF-8, a broken gzip stream, a Bundle that is not JSON)
raises :class:`~accord.errors.DataError` naming it, and the caller's transaction rolls
back.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal, NamedTuple

import orjson

from accord.errors import DataError
from accord.ingest.fhir.resource_types import FHIR_R4_RESOURCE_TYPES

NDJSON_SUFFIXES: Final = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
BUNDLE_SUFFIXES: Final = (".json", ".json.gz")
BATCH_SIZE: Final = 20_000

_UTF8_BOM: Final = b"\xef\xbb\xbf"
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
_NAME_PARTS: Final = re.compile(r"[._-]")


@dataclass(frozen=True)
class SourceFile:
    """One file of an export.

    ``label`` names it in reports and provenance: its path relative to the export
    directory, so provenance does not depend on where the export was unpacked.
    ``resource_type`` is the type its name announces (``Patient.000.ndjson``), if any.
    """

    path: Path
    label: str
    kind: Literal["ndjson", "bundle"]
    resource_type: str | None
    size: int


class RawResource(NamedTuple):
    """A parsed resource and where it came from (``line 17`` or ``entry[3]``)."""

    locator: str
    resource: dict[str, Any]
    full_url: str | None


Reject = Callable[[str, str, str | None], None]
"""Called with a locator, a reason and the offending detail for a non-resource."""


def discover(path: Path) -> list[SourceFile]:
    """The ndjson and Bundle files at ``path``: a file, or a directory searched recursively.

    Raises :class:`DataError` when ``path`` does not exist or holds no FHIR files.
    """
    if path.is_file():
        files = [_source_file(path, path.parent)]
        if files[0].kind == "bundle" or _is_ndjson(path):
            return files
        raise DataError(
            f"{path} is neither an ndjson file nor a JSON Bundle",
            hint=f"give a file ending in {', '.join(NDJSON_SUFFIXES + BUNDLE_SUFFIXES)}",
        )
    if not path.is_dir():
        raise DataError(f"FHIR export {path} does not exist")
    found = [
        _source_file(candidate, path)
        for candidate in sorted(path.rglob("*"))
        if candidate.is_file()
        and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
        and (_is_ndjson(candidate) or _is_bundle(candidate))
    ]
    if not found:
        raise DataError(
            f"{path} holds no FHIR files",
            hint=f"expected files ending in {', '.join(NDJSON_SUFFIXES + BUNDLE_SUFFIXES)}",
        )
    return found


def _is_ndjson(path: Path) -> bool:
    return path.name.lower().endswith(NDJSON_SUFFIXES)


def _is_bundle(path: Path) -> bool:
    return path.name.lower().endswith(BUNDLE_SUFFIXES)


def _source_file(path: Path, root: Path) -> SourceFile:
    kind: Literal["ndjson", "bundle"] = "ndjson" if _is_ndjson(path) else "bundle"
    announced = None
    if kind == "ndjson":
        announced = next(
            (part for part in _NAME_PARTS.split(path.name) if part in FHIR_R4_RESOURCE_TYPES),
            None,
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read FHIR file {path}: {exc.strerror}") from exc
    return SourceFile(path, path.relative_to(root).as_posix(), kind, announced, size)


def read_batches(
    source: SourceFile,
    reject: Reject | None,
    *,
    batch_size: int = BATCH_SIZE,
    position: Callable[[int], None] | None = None,
) -> Iterator[list[RawResource]]:
    """Stream ``source`` as batches of resources.

    Lines or entries that are not resources go to ``reject`` (``None`` ignores them, for
    a second pass over the same file). ``position`` is told how many bytes of the file
    have been read after each batch.
    """
    if source.kind == "ndjson":
        yield from _ndjson_batches(source, reject, batch_size, position)
    else:
        resources = _bundle_resources(source, reject)
        for start in range(0, len(resources), batch_size):
            yield resources[start : start + batch_size]
        if position is not None:
            position(source.size)


def _unreadable(source: SourceFile, exc: BaseException) -> DataError:
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return DataError(
        f"cannot read FHIR file {source.label}: {detail}",
        hint="check the file is complete and, if it ends in .gz, a gzip stream",
    )


def _not_utf8(source: SourceFile, where: str) -> DataError:
    return DataError(
        f"FHIR file {source.label} is not UTF-8 ({where})",
        hint="FHIR JSON is always UTF-8; convert the file, e.g. with iconv -t UTF-8",
    )


def _open(source: SourceFile) -> tuple[IO[bytes], IO[bytes]]:
    """The file to read and the raw file underneath, whose position counts progress."""
    raw: IO[bytes] = source.path.open("rb")
    if source.path.name.lower().endswith(".gz"):
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        return stream, raw
    return raw, raw


def _ndjson_batches(
    source: SourceFile,
    reject: Reject | None,
    batch_size: int,
    position: Callable[[int], None] | None,
) -> Iterator[list[RawResource]]:
    try:
        stream, raw = _open(source)
    except OSError as exc:
        raise _unreadable(source, exc) from exc
    batch: list[RawResource] = []
    loads = orjson.loads
    try:
        with raw, stream:
            for number, line in enumerate(stream, start=1):
                if number == 1:
                    if line.startswith(_UTF16_BOMS):
                        raise _not_utf8(source, "it starts with a UTF-16 byte order mark")
                    line = line.removeprefix(_UTF8_BOM)
                if not line.strip():
                    continue
                try:
                    parsed = loads(line)
                except orjson.JSONDecodeError as exc:
                    _check_utf8(source, line, f"line {number}")
                    if reject is not None:
                        reject(f"line {number}", "malformed JSON", str(exc))
                    continue
                if not isinstance(parsed, dict) or not isinstance(parsed.get("resourceType"), str):
                    if reject is not None:
                        reject(f"line {number}", "not a FHIR resource: no resourceType", None)
                    continue
                batch.append(RawResource(f"line {number}", parsed, None))
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
                    if position is not None:
                        position(raw.tell())
    except (OSError, EOFError, zlib.error) as exc:
        raise _unreadable(source, exc) from exc
    if batch:
        yield batch
    if position is not None:
        position(source.size)


def _check_utf8(source: SourceFile, data: bytes, where: str) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_utf8(source, where) from None


def _bundle_resources(source: SourceFile, reject: Reject | None) -> list[RawResource]:
    try:
        stream, raw = _open(source)
        with raw, stream:
            data = stream.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise _unreadable(source, exc) from exc
    if data.startswith(_UTF16_BOMS):
        raise _not_utf8(source, "it starts with a UTF-16 byte order mark")
    try:
        document = orjson.loads(data.removeprefix(_UTF8_BOM))
    except orjson.JSONDecodeError as exc:
        _check_utf8(source, data, "the document")
        raise DataError(
            f"FHIR file {source.label} is not valid JSON: {exc}",
            hint="a .json file must hold one Bundle or resource; use .ndjson for one per line",
        ) from exc
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        if reject is not None:
            reject("file", "not a FHIR resource or Bundle: no resourceType", None)
        return []
    if document["resourceType"] != "Bundle":
        return [RawResource("file", document, None)]
    return _bundle_entries(document, reject)


def _bundle_entries(bundle: dict[str, Any], reject: Reject | None) -> list[RawResource]:
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        if reject is not None:
            reject("file", "Bundle.entry is not a list", None)
        return []
    found: list[RawResource] = []
    for index, entry in enumerate(entries):
        locator = f"entry[{index}]"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            method = _request_method(entry)
            if reject is not None:
                reason = (
                    f"a {method} entry carries no resource to load"
                    if method
                    else "entry has no resource with a resourceType"
                )
                reject(locator, reason, None)
            continue
        full_url = entry.get("fullUrl")
        alias = full_url if isinstance(full_url, str) else None
        found.append(RawResource(locator, resource, alias))
    return found


def _request_method(entry: object) -> str | None:
    if not isinstance(entry, dict):
        return None
    request = entry.get("request")
    method = request.get("method") if isinstance(request, dict) else None
    return method if isinstance(method, str) else None

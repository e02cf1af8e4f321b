"""Reading one described CSV file: its header, then its records in batches, as text.

Only the columns the mapping names are read, every one as text, so that dates and
numbers are parsed (and refused) by :mod:`accord.ingest.csv.values` with line numbers.
Legacy extracts do not put line breaks inside values, so one record is one line and
a record's number is the line a person sees in an editor.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from numpy.typing import NDArray

from accord.errors import DataError
from accord.ingest.csv.mapping import FileMapping

_BLOCK_BYTES: Final = 8 << 20


@dataclass
class Malformed:
    """Records the reader skipped: (line, fields found, text)."""

    rows: list[tuple[int, int, str]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)

    def on_invalid(self, row: Any) -> str:
        self.skipped.append(row.number or 0)
        # An empty line is not a record; anything else is reported.
        if row.text.strip():
            self.rows.append((row.number or 0, row.actual_columns, row.text))
        return "skip"


def read_header(path: Path, described: FileMapping) -> list[str] | None:
    """The column names on the first line, or None for an empty file."""
    utf8 = codecs.lookup(described.encoding).name == "utf-8"
    encoding = "utf-8-sig" if utf8 else described.encoding
    try:
        with path.open("r", encoding=encoding, newline="") as handle:
            first = handle.readline()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        # The reader decodes several kilobytes at once: the bad byte may be lines further on.
        raise _not_text(path, described.encoding, error.reason) from error
    if not first.strip():
        return None
    return [name.strip() for name in next(csv.reader([first], delimiter=described.delimiter))]


def header_problem(header: list[str], described: FileMapping) -> str | None:
    """Why the header cannot be read with the mapping; the file is then not loaded."""
    repeated = sorted({name for name in header if header.count(name) > 1})
    missing = [name for name in described.source_columns if name not in header]
    if missing:
        return f"header lacks columns {', '.join(missing)} that the mapping reads; file not loaded"
    wanted = [name for name in repeated if name in described.source_columns]
    if wanted:
        return f"header repeats columns {', '.join(wanted)}; file not loaded"
    return None


def read_batches(
    path: Path, described: FileMapping, header: list[str], malformed: Malformed
) -> Iterator[tuple[pa.RecordBatch, NDArray[np.int64], int]]:
    """Each batch of records with the line of each record and the bytes read so far."""
    next_line = 2
    try:
        with pa.OSFile(str(path), "r") as source:
            reader = pacsv.open_csv(
                source,
                read_options=pacsv.ReadOptions(
                    use_threads=False,
                    block_size=_BLOCK_BYTES,
                    encoding=described.encoding,
                    column_names=header,
                    skip_rows=1,
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=described.delimiter,
                    newlines_in_values=False,
                    ignore_empty_lines=False,
                    invalid_row_handler=malformed.on_invalid,
                ),
                convert_options=pacsv.ConvertOptions(
                    include_columns=list(described.source_columns),
                    column_types=dict.fromkeys(described.source_columns, pa.string()),
                    null_values=[""],
                    strings_can_be_null=True,
                ),
            )
            for batch in reader:
                lines, next_line = _lines(batch.num_rows, next_line, malformed)
                yield batch, lines, source.tell()
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as error:
        if isinstance(error, UnicodeDecodeError) or "invalid UTF8" in str(error):
            raise _not_text(path, described.encoding, _first_line(error)) from error
        raise DataError(
            f"cannot read {path}: {_first_line(error)}",
            hint=f"the mapping says it is {described.encoding} text; nothing was kept",
        ) from error


def _lines(n: int, start: int, malformed: Malformed) -> tuple[NDArray[np.int64], int]:
    """Lines of the next ``n`` records from line ``start``, past the lines skipped."""
    skipped = np.array([line for line in malformed.skipped if line >= start], np.int64)
    pool = np.arange(start, start + n + len(skipped), dtype=np.int64)
    lines = pool[~np.isin(pool, skipped)][:n]
    return lines, int(lines[-1]) + 1 if n else start


def _not_text(path: Path, encoding: str, reason: str) -> DataError:
    """The error for a file that does not decode, naming the line a person would open."""
    line, why = _undecodable_line(path, encoding)
    where = f"line {line}" if line is not None else "it"
    return DataError(
        f"cannot read {path}: {where} is not {encoding} text ({why or reason})",
        hint=f"the mapping says it is {encoding} text; set the file's encoding in the "
        "mapping file; nothing was kept",
    )


def _undecodable_line(path: Path, encoding: str) -> tuple[int | None, str | None]:
    """The first line of ``path`` that does not decode, read one line at a time."""
    utf8 = codecs.lookup(encoding).name == "utf-8"
    decoder = codecs.getincrementaldecoder("utf-8-sig" if utf8 else encoding)()
    number = 0
    try:
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    decoder.decode(line)
                except UnicodeDecodeError as error:
                    return number, error.reason
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        return max(number, 1), error.reason
    except OSError:
        return None, None
    return None, None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]

"""CSV text to CDM values, a whole column at a time: dates, numbers, value maps, parts.

Every column arrives as text. A value that cannot be read marks its row bad with a
reason naming the column and what was expected; the row is rejected and the load goes
on. Nothing here loops over rows in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from accord.cdm.spec import BaseType
from accord.ingest.csv.rules import ColumnRule

ARROW_TYPES: Final[dict[BaseType, pa.DataType]] = {
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "float": pa.float64(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),
    "varchar": pa.string(),
}
_INTEGER: Final = r"^[+-]?\d{1,18}$"
_NUMBER: Final = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_INT32: Final = (-(2**31), 2**31 - 1)


@dataclass
class Verdicts:
    """Which rows of a batch are still loadable, and why the others are not.

    A row keeps the first reason found for it, so each reject names one problem.
    """

    n: int
    ok: NDArray[np.bool_] = field(init=False)
    reasons: NDArray[np.object_] = field(init=False)
    values: NDArray[np.object_] = field(init=False)

    def __post_init__(self) -> None:
        self.ok = np.ones(self.n, dtype=np.bool_)
        self.reasons = np.full(self.n, "", dtype=object)
        self.values = np.full(self.n, None, dtype=object)

    def flag(self, mask: NDArray[np.bool_], reason: str, raw: pa.Array | None = None) -> None:
        new = mask & self.ok
        self.ok[new] = False
        self.reasons[new] = reason
        if raw is not None:
            self.values[new] = raw.to_numpy(zero_copy_only=False)[new]


def mask(values: pa.Array | pa.ChunkedArray) -> NDArray[np.bool_]:
    """A boolean Arrow array as numpy, nulls false."""
    filled = pc.fill_null(values, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.bool_)


def cleaned(raw: pa.Array) -> pa.Array:
    """Text with surrounding spaces removed; empty text is null."""
    text = pc.utf8_trim_whitespace(raw)
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def apply_rule(
    rule: ColumnRule,
    columns: dict[str, pa.Array],
    n: int,
    formats: tuple[str, ...],
    verdicts: Verdicts,
) -> pa.Array:
    """The values ``rule`` gives for one batch; unreadable values mark their rows bad."""
    arrow_type = ARROW_TYPES[rule.base_type]
    if rule.column is None:
        return pa.repeat(pa.scalar(rule.constant, arrow_type), n).cast(arrow_type)
    raw = columns[rule.column]
    text = cleaned(raw)
    if rule.values is not None:
        return _mapped(rule, text, verdicts, raw)
    if rule.part is not None:
        dates = parse_dates(text, formats, verdicts, rule.column, raw)
        part = {"year": pc.year, "month": pc.month, "day": pc.day}[rule.part](dates)
        return part.cast(arrow_type)
    if rule.base_type in ("date", "datetime"):
        return parse_dates(text, formats, verdicts, rule.column, raw).cast(arrow_type)
    if rule.base_type in ("integer", "bigint"):
        return _integers(rule, text, verdicts, raw)
    if rule.base_type == "float":
        shaped = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
        verdicts.flag(mask(text.is_valid()) & ~mask(shaped), f"{rule.column} is not a number", raw)
        return pc.if_else(shaped, text, pa.scalar(None, pa.string())).cast(pa.float64())
    return text


def parse_dates(
    text: pa.Array, formats: tuple[str, ...], verdicts: Verdicts, column: str, raw: pa.Array
) -> pa.Array:
    """Dates read with the first of ``formats`` that fits, as timestamps."""
    parsed = pa.nulls(len(text), pa.timestamp("s"))
    for fmt in formats:
        attempt = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
        # Arrow rolls impossible dates over (31/02 becomes 03/03); a value that does not
        # print back as it was read is checked again by Python, which refuses those.
        doubtful = mask(pc.not_equal(pc.strftime(attempt, format=fmt), text))
        if doubtful.any():
            attempt = _recheck(text, attempt, doubtful, fmt)
        parsed = pc.coalesce(parsed, attempt)
    bad = mask(text.is_valid()) & ~mask(parsed.is_valid())
    verdicts.flag(bad, f"{column} is not a date in the form {' or '.join(formats)}", raw)
    return parsed


def _recheck(text: pa.Array, attempt: pa.Array, doubtful: NDArray[np.bool_], fmt: str) -> pa.Array:
    values = attempt.to_pylist()
    for index in np.flatnonzero(doubtful):
        try:
            values[index] = datetime.strptime(str(text[index].as_py()), fmt)
        except ValueError:
            values[index] = None
    return pa.array(values, pa.timestamp("s"))


def _integers(rule: ColumnRule, text: pa.Array, verdicts: Verdicts, raw: pa.Array) -> pa.Array:
    shaped = pc.fill_null(pc.match_substring_regex(text, _INTEGER), False)
    parsed = pc.if_else(shaped, text, pa.scalar(None, pa.string())).cast(pa.int64())
    if rule.base_type == "integer":
        low, high = _INT32
        fits = pc.and_(pc.greater_equal(parsed, low), pc.less_equal(parsed, high))
        shaped = pc.and_(shaped, pc.fill_null(fits, False))
    verdicts.flag(mask(text.is_valid()) & ~mask(shaped), f"{rule.column} is not an integer", raw)
    return pc.if_else(shaped, parsed, None).cast(ARROW_TYPES[rule.base_type])


def _mapped(rule: ColumnRule, text: pa.Array, verdicts: Verdicts, raw: pa.Array) -> pa.Array:
    assert rule.values is not None
    arrow_type = ARROW_TYPES[rule.base_type]
    sources = pa.array([source for source, _ in rule.values], pa.string())
    targets = pa.array([target for _, target in rule.values]).cast(arrow_type)
    position = pc.index_in(text, value_set=sources)
    result = targets.take(position)
    missing = mask(text.is_valid()) & ~mask(position.is_valid())
    if rule.default is not None:
        fallback = pa.scalar(rule.default).cast(arrow_type)
        result = pc.if_else(pa.array(missing), fallback, result)
    else:
        verdicts.flag(
            missing, f"{rule.column} has a value the value map for {rule.field} lacks", raw
        )
    return result

"""Validation helpers shared by :mod:`accord.analysis.moments`,
:mod:`accord.analysis.histograms` and :mod:`accord.analysis.cells`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from accord.errors import QueryError

# Categories and counts travel as JSON numbers; 64-bit integers are what every client reads.
_INT_LIMIT: Final = 2**63


def _is_finite_number(value: object) -> bool:
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _numbers(value: object, what: str) -> tuple[float, ...]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, tuple | list):
        raise QueryError(f"{what}: expected a list of numbers, got {type(value).__name__}")
    for i, v in enumerate(value):
        if not _is_finite_number(v):
            got = repr(v) if isinstance(v, float) else type(v).__name__
            raise QueryError(f"{what}[{i}]: expected a finite number, got {got}")
    return tuple(float(v) for v in value)


def _count(value: object, what: str) -> int:
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, int | np.integer)
        or not 0 <= value < _INT_LIMIT
    ):
        number = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
        got = value if number else type(value).__name__
        raise QueryError(f"{what}: expected a whole number >= 0, got {got}")
    return int(value)


def _fields(data: object, what: str, names: set[str]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise QueryError(f"{what}: expected an object, got {type(data).__name__}")
    if set(data) != names:
        missing = sorted(names - set(data))
        unknown = sorted(str(k) for k in set(data) - names)
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise QueryError(
            f"{what}: expected fields {', '.join(sorted(names))} ({'; '.join(problems)})"
        )
    return {name: data[name] for name in names}


def _first(parts: Sequence[Any], kind: type, what: str) -> Any:
    if not isinstance(parts, Sequence) or not parts:
        raise QueryError(f"no {what} parts to combine: no member answered")
    for i, part in enumerate(parts):
        if not isinstance(part, kind):
            raise QueryError(f"{what} part {i} is a {type(part).__name__}, not a {kind.__name__}")
    return parts[0]

"""Descriptive statistics across members: counts by category.

Each statistic is split like the models are. A member computes a small part from its own
rows; the part goes through the member's disclosure step (:mod:`accord.privacy.tables`);
the hub adds the parts and derives the answer a pooled analysis would give. Moments are in
:mod:`accord.analysis.moments`, histograms in :mod:`accord.analysis.histograms`.

Cells. :func:`local_cells` counts the rows of each distinct combination of category
values (a crosstab, or stratified counts); :func:`combine_cells` adds members' counts key
by key. Categories are whole numbers (concept ids, bin indices), other finite numbers,
or None for "unknown" (NaN counts as None); a float with a whole value is the same
category as the integer (``8507.0`` is ``8507``). Keys sort by value with None last.

>>> combine_cells([local_cells([(1, None), (2, 0)], ["sex", "smoker"]),
...                local_cells([(1, None)], ["sex", "smoker"])]).cells
(((1, None), 2), ((2, 0), 1))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from accord.analysis._checks import _INT_LIMIT, _count, _fields, _first
from accord.errors import QueryError

Category = int | float | None
Key = tuple[Category, ...]

# Whole-valued floats below this are exactly integers, so 8507.0 becomes 8507.
_EXACT_FLOAT: Final = 2**53


@dataclass(frozen=True)
class CellCounts:
    """Rows counted by the values of ``variables``: ``(key, count)`` pairs, one per
    distinct key, sorted by key (None last). Keys that no row has are left out.
    """

    variables: tuple[str, ...]
    cells: tuple[tuple[Key, int], ...]

    def __post_init__(self) -> None:
        variables = check_variables(self.variables)
        if not isinstance(self.cells, tuple | list):
            raise QueryError("cells: expected a list of (key, count) pairs")
        cells = []
        for i, item in enumerate(self.cells):
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise QueryError(f"cells[{i}]: expected a (key, count) pair")
            key = as_key(item[0], len(variables), f"cells[{i}].key")
            cells.append((key, _count(item[1], f"cells[{i}].count")))
        object.__setattr__(self, "variables", variables)
        object.__setattr__(self, "cells", sort_cells(cells, "cells"))

    @property
    def total(self) -> int:
        """Rows counted."""
        return sum(count for _, count in self.cells)

    def as_dict(self) -> dict[Key, int]:
        """The counts by key."""
        return dict(self.cells)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"variables": [...], "cells": [{"key", "count"}, ...]}``."""
        return {
            "variables": list(self.variables),
            "cells": [{"key": list(key), "count": count} for key, count in self.cells],
        }

    @classmethod
    def from_json(cls, data: object) -> CellCounts:
        """Rebuild counts from :meth:`to_json` output, refusing anything malformed."""
        fields = _fields(data, "cell counts", {"variables", "cells"})
        if not isinstance(fields["variables"], list) or not isinstance(fields["cells"], list):
            raise QueryError("cell counts: variables and cells must be lists")
        pairs: list[Any] = []
        for i, cell in enumerate(fields["cells"]):
            item = _fields(cell, f"cell counts: cells[{i}]", {"key", "count"})
            if not isinstance(item["key"], list):
                raise QueryError(f"cells[{i}].key: expected a list of categories")
            pairs.append((item["key"], item["count"]))
        return cls(tuple(fields["variables"]), tuple(pairs))


def local_cells(keys: ArrayLike | Sequence[Any], variables: Sequence[str]) -> CellCounts:
    """A member's counts of each distinct row of ``keys``, an ``n x v`` table of
    categories with one column per variable (a flat list when there is one variable).

    Example:
        >>> local_cells([(8507, 1), (8532, None), (8507, 1)], ["gender", "smoker"]).cells
        (((8507, 1), 2), ((8532, None), 1))
    """
    names = check_variables(variables)
    width = len(names)
    try:
        table = np.asarray(keys)
    except ValueError as exc:
        raise QueryError(f"keys: expected rows of {width} categories each ({exc})") from exc
    if table.ndim == 1 and (width == 1 or table.size == 0):
        table = table.reshape(-1, width)
    if table.ndim != 2 or table.shape[1] != width:
        raise QueryError(
            f"keys: expected rows of {width} categories (one per variable), got shape {table.shape}"
        )
    if table.shape[0] == 0:
        return CellCounts(names, ())
    codes = []
    levels = []
    for j in range(width):
        column_codes, column_levels = _factorise(table[:, j], f"keys column {names[j]!r}")
        codes.append(column_codes)
        levels.append(column_levels)
    rows, counts = np.unique(np.column_stack(codes), axis=0, return_counts=True)
    cells = tuple(
        (tuple(levels[j][int(code)] for j, code in enumerate(row)), int(count))
        for row, count in zip(rows.tolist(), counts.tolist(), strict=True)
    )
    return CellCounts(names, cells)


def combine_cells(parts: Sequence[CellCounts]) -> CellCounts:
    """Add members' counts key by key; a key missing at a member counts 0 there."""
    first = _first(parts, CellCounts, "cell counts")
    for i, part in enumerate(parts):
        if part.variables != first.variables:
            raise QueryError(
                f"cell counts part {i} is by {', '.join(part.variables)}, not "
                f"{', '.join(first.variables)}"
            )
    totals: dict[Key, int] = {}
    for part in parts:
        for key, count in part.cells:
            totals[key] = totals.get(key, 0) + count
    return CellCounts(first.variables, tuple(totals.items()))


def check_variables(variables: object) -> tuple[str, ...]:
    """Variable names: at least one, each a non-empty string, all different."""
    if isinstance(variables, str) or not isinstance(variables, Sequence) or not variables:
        raise QueryError("variables: expected a list of at least one name")
    names = tuple(variables)
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise QueryError(f"variables[{i}]: expected a non-empty name")
    if len(set(names)) != len(names):
        raise QueryError("variables: each name may appear once")
    return names


def as_key(value: object, width: int, what: str) -> Key:
    """A key of ``width`` categories in normal form (see the module's notes), or a
    ``QueryError`` naming the problem without echoing a value."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, tuple | list) or len(value) != width:
        raise QueryError(f"{what}: expected {width} categor{'y' if width == 1 else 'ies'}")
    return tuple(_category(v, f"{what}[{j}]") for j, v in enumerate(value))


def key_order(key: Key) -> tuple[tuple[bool, float | int], ...]:
    """Sort order of keys: by value in each place, None after every number."""
    return tuple((v is None, 0 if v is None else v) for v in key)


def sort_cells(cells: Sequence[tuple[Key, Any]], what: str) -> tuple[tuple[Key, Any], ...]:
    """``(key, value)`` pairs sorted by key; a key given twice is an error."""
    ordered = sorted(cells, key=lambda cell: key_order(cell[0]))
    for i in range(1, len(ordered)):
        if ordered[i][0] == ordered[i - 1][0]:
            raise QueryError(f"{what}: a key appears twice")
    return tuple(ordered)


# --- internals ------------------------------------------------------------------------


def _category(value: object, what: str) -> Category:
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | np.integer):
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise QueryError(f"{what}: a whole-number category must fit in 64 bits")
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isinf(number):
            raise QueryError(f"{what}: a category must be finite")
        if number.is_integer() and abs(number) < _EXACT_FLOAT:
            return int(number)
        return number
    raise QueryError(
        f"{what}: a category must be a number or null, got {type(value).__name__}",
        hint="code text categories as numbers (e.g. concept ids) first",
    )


def _factorise(column: NDArray[Any], what: str) -> tuple[NDArray[np.intp], list[Category]]:
    """Codes ``0..L-1`` for each row and the ``L`` categories they stand for."""
    kind = column.dtype.kind
    if kind == "b":
        column = column.astype(np.int64)
        kind = "i"
    if kind in "iu":
        levels, codes = np.unique(column, return_inverse=True)
        return codes.reshape(-1), [_category(v, what) for v in levels.tolist()]
    if kind == "f":
        missing = np.isnan(column)
        if np.isinf(column).any():
            raise QueryError(f"{what}: a category must be finite")
        levels, inverse = np.unique(column[~missing], return_inverse=True)
        codes = np.full(column.shape[0], levels.shape[0], dtype=np.intp)
        codes[~missing] = inverse.reshape(-1)
        return codes, [_category(v, what) for v in levels.tolist()] + [None]
    if kind != "O":
        raise QueryError(
            f"{what}: categories must be numbers or null, got {column.dtype}",
            hint="code text categories as numbers (e.g. concept ids) first",
        )
    index: dict[Category, int] = {}
    codes = np.empty(column.shape[0], dtype=np.intp)
    for i, value in enumerate(column.tolist()):
        codes[i] = index.setdefault(_category(value, what), len(index))
    return codes, list(index)

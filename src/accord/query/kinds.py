"""Field kinds of the query model: how one field is checked, decoded and encoded.

Each kind checks a Python value (when a node is built in code) and decodes a JSON value
(when a node arrives over the wire), reporting problems as ``"<path>: <what is wrong>"``.
Python and JSON are checked separately because their types differ: a concept set is a
tuple in Python and a list in JSON, a date is a ``date`` in Python and a string in JSON.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from typing import Any, TypeGuard

# The CDM stores concept ids as 32-bit integers; anything larger cannot match a row.
MAX_CONCEPT_ID = 2**31 - 1
# Guards against documents built to exhaust a node rather than to ask a question.
MAX_CONCEPT_IDS = 5_000
MAX_CRITERIA = 100
MAX_DEPTH = 32
# Days before or after an index date: a hundred years either way.
MAX_DAYS = 36_500
# A model with more covariates than this is a data dump, not a question.
MAX_COVARIATES = 20
# A histogram or survival grid with more bins than this says more than it summarises.
MAX_BINS = 200
# Strata of a crosstab: three variables already make tables few readers can take in.
MAX_STRATA = 3


def at(path: str, name: str) -> str:
    """The path of field ``name`` inside the node at ``path``."""
    return f"{path}.{name}" if path else name


def where(path: str) -> str:
    """A path fit to start a message; the document itself is called "query"."""
    return path or "query"


def show(value: object, limit: int = 40) -> str:
    """A short JSON-like rendering of a bad value for an error message."""
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    except (ValueError, RecursionError):
        try:
            text = repr(value)
        except (ValueError, RecursionError):  # an int too long to print, say
            text = f"<a {type(value).__name__} too large to show>"
    # A lone surrogate cannot be encoded: a message must always be valid UTF-8.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass, but ``true`` is never a sensible count, age or id.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return _is_int(value) or isinstance(value, float)


class Kind:
    """How one field is validated and carried in JSON."""

    def check(self, value: object, path: str) -> list[str]:
        """Problems with a Python value for this field."""
        raise NotImplementedError

    def decode(self, raw: object, path: str, problems: list[str], depth: int) -> object:
        """The Python value for JSON ``raw``; appends problems when there are any."""
        raise NotImplementedError

    def encode(self, value: Any) -> Any:
        """The JSON form of a valid Python value."""
        return value


class ConceptIds(Kind):
    """A tuple of distinct OMOP concept ids (positive 32-bit integers)."""

    def __init__(self, *, required: bool, most: int) -> None:
        self.required = required
        self.most = most

    def check(self, value: object, path: str) -> list[str]:
        if not isinstance(value, tuple):
            return [f"{path}: expected a tuple of concept ids, got {type(value).__name__}"]
        return self._items(value, path)

    def decode(self, raw: object, path: str, problems: list[str], depth: int) -> object:
        if not isinstance(raw, list):
            problems.append(f"{path}: expected a list of concept ids, got {show(raw)}")
            return None
        problems += self._items(raw, path)
        return tuple(raw)

    def encode(self, value: Any) -> Any:
        return list(value)

    def _items(self, items: tuple[object, ...] | list[object], path: str) -> list[str]:
        if self.required and not items:
            return [f"{path}: expected at least one concept id, got none"]
        if len(items) > self.most:
            return [f"{path}: at most {self.most} concept ids allowed, got {len(items)}"]
        problems = []
        first_seen: dict[object, int] = {}
        for i, item in enumerate(items):
            if not _is_int(item) or not 0 < item <= MAX_CONCEPT_ID:
                problems.append(
                    f"{path}[{i}]: expected a positive integer concept id, got {show(item)}"
                )
            elif item in first_seen:
                problems.append(
                    f"{path}[{i}]: concept id {item} repeats {path}[{first_seen[item]}]"
                )
            else:
                first_seen[item] = i
        return problems


class Integer(Kind):
    """A whole number within inclusive bounds (or null, when ``optional``)."""

    def __init__(self, low: int, high: int, what: str, *, optional: bool = False) -> None:
        self.low = low
        self.high = high
        self.what = what
        self.optional = optional

    def check(self, value: object, path: str) -> list[str]:
        if _is_int(value) and self.low <= value <= self.high:
            return []
        if value is None and self.optional:
            return []
        return [f"{path}: expected {self.what}, got {show(value)}"]

    def decode(self, raw: object, path: str, problems: list[str], depth: int) -> object:
        problems += self.check(raw, path)
        return raw


class Number(Kind):
    """An optional finite number (a measurement bound)."""

    def check(self, value: object, path: str) -> list[str]:
        if value is None or (_is_number(value) and math.isfinite(value)):
            return []
        return [f"{path}: expected a finite number or null, got {show(value)}"]

    def decode(self, raw: object, path: str, problems: list[str], depth: int) -> object:
        problems += self.check(raw, path)
        return raw


class Boolean(Kind):
    def check(self, value: object, path: str) -> list[str]:
        if isinstance(value, bool):
            return []
        return [f"{path}: expected true or false, got {show(value)}"]

    def decode(self, raw: object, path: str, problems: list[str], depth: int) -> object:
        problems += self.check(raw, path)
        return raw


class Date(Kind):
    """A calendar date; ISO ``YYYY-MM-DD`` in JSON, nothing else, so round trips are exact."""

    def check(self, value: object, path: str) -> list[str]:
        # datetime is a date subclass; a time of day would be silently ignored.
        if isinstance(value, date) and not isinstance(value, datetime):
            return []
        return [f"{path}: expected a date, got {type(value).__name__}"]

    def decode(self, raw: object, path: str, problems: list[str], depth: int) -> object:
        problem = f"{path}: expected a date as YYYY-MM-DD, got {show(raw)}"
        if not isinstance(raw, str):
            problems.append(problem)
            return None
        try:
            parsed = date.fromisoformat(raw)
        except ValueError:
            problems.append(problem)
            return None
        if parsed.isoformat() != raw:
            problems.append(problem)
        return parsed

    def encode(self, value: Any) -> Any:
        return value.isoformat()


class Choice(Kind):
    """One string out of a fixed set (a model family, say)."""

    def __init__(self, options: tuple[str, ...]) -> None:
        self.options = options

    def check(self, value: object, path: str) -> list[str]:
        if isinstance(value, str) and value in self.options:
            return []
        return [f"{path}: expected one of {', '.join(self.options)}, got {show(value)}"]

    def decode(self, raw: object, path: str, problems: list[str], depth: int) -> object:
        problems += self.check(raw, path)
        return raw


class Numbers(Kind):
    """A tuple of finite numbers (model coefficients), at most ``most`` of them."""

    def __init__(self, *, most: int) -> None:
        self.most = most

    def check(self, value: object, path: str) -> list[str]:
        if not isinstance(value, tuple):
            return [f"{path}: expected a tuple of numbers, got {type(value).__name__}"]
        return self._items(value, path)

    def decode(self, raw: object, path: str, problems: list[str], depth: int) -> object:
        if not isinstance(raw, list):
            problems.append(f"{path}: expected a list of numbers, got {show(raw)}")
            return None
        problems += self._items(raw, path)
        return tuple(float(x) if _is_number(x) else x for x in raw)

    def encode(self, value: Any) -> Any:
        return list(value)

    def _items(self, items: tuple[object, ...] | list[object], path: str) -> list[str]:
        if len(items) > self.most:
            return [f"{path}: at most {self.most} numbers allowed, got {len(items)}"]
        return [
            f"{path}[{i}]: expected a finite number, got {show(item)}"
            for i, item in enumerate(items)
            if not (_is_number(item) and math.isfinite(item))
        ]

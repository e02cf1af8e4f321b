"""The machinery of query nodes: validation, JSON encoding and decoding.

A node is a frozen dataclass whose fields carry their ``Kind`` (``accord.query.kinds``) in
the field metadata. Building a node checks every field and the relations between them;
decoding JSON collects every problem in the document, each with its JSON path, so a
researcher fixes a query in one round trip. The nodes themselves are in
``accord.query.model``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields
from typing import Any, ClassVar, Self, cast

from accord.errors import QueryError
from accord.query.kinds import MAX_DEPTH, ConceptIds, Kind, at, show, where


class QueryValidationError(QueryError):
    """A query failed validation; ``problems`` lists each one with its JSON path."""

    # A document built to fail everywhere should not make a megabyte-long message.
    SHOWN: ClassVar[int] = 50

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        shown = list(self.problems[: self.SHOWN])
        if count > self.SHOWN:
            shown.append(f"and {count - self.SHOWN} more")
        super().__init__(f"invalid query ({count} {noun}): " + "; ".join(shown))


class Node:
    """Base of every query node: validation, JSON encoding and decoding.

    A subclass is a frozen dataclass whose fields carry their ``Kind`` in the field
    metadata; ``TYPE`` is the JSON discriminator and ``CATEGORY`` says where in a tree
    the node may stand.
    """

    TYPE: ClassVar[str]
    CATEGORY: ClassVar[str]
    _registry: ClassVar[dict[str, type[Node]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "TYPE" in cls.__dict__:
            Node._registry[cls.TYPE] = cls

    def __post_init__(self) -> None:
        problems: list[str] = []
        good: dict[str, Any] = {}
        for f in fields(cast(Any, self)):
            value = getattr(self, f.name)
            found = kind_of(f.metadata).check(value, f.name)
            problems += found
            if not found:
                good[f.name] = value
        problems += self.relations(good, "")
        if problems:
            raise QueryValidationError(problems)

    @classmethod
    def relations(cls, values: Mapping[str, Any], path: str) -> list[str]:
        """Checks across fields; ``values`` holds only the fields that are valid alone."""
        return []

    def concept_paths(self, path: str = "") -> list[tuple[str, int]]:
        """Every concept id in this tree with its JSON path, so a member can name each
        one its vocabulary lacks: ``("cohort.criteria[0].concepts.ids[1]", 201826)``."""
        found: list[tuple[str, int]] = []
        for f in fields(cast(Any, self)):
            value, here = getattr(self, f.name), at(path, f.name)
            kind = kind_of(f.metadata)
            if isinstance(kind, ConceptIds):
                found += [(f"{here}[{i}]", c) for i, c in enumerate(value)]
            elif isinstance(value, Node):
                found += value.concept_paths(here)
            elif isinstance(value, tuple):
                for i, item in enumerate(value):
                    if isinstance(item, Node):
                        found += item.concept_paths(f"{here}[{i}]")
        return found

    def to_json(self) -> dict[str, Any]:
        """This node as JSON-ready data, every field spelled out (defaults included)."""
        encoded: dict[str, Any] = {"type": self.TYPE}
        for f in fields(cast(Any, self)):
            encoded[f.name] = kind_of(f.metadata).encode(getattr(self, f.name))
        return encoded

    @classmethod
    def from_json(cls, obj: object) -> Self:
        """Decode and validate ``obj``; raise ``QueryValidationError`` with every problem."""
        allowed = (cls,) if "TYPE" in cls.__dict__ else node_types(cls.CATEGORY)
        problems: list[str] = []
        node = decode_node(obj, "", allowed, problems, depth=0)
        if problems or node is None:
            raise QueryValidationError(problems)
        return cast(Self, node)


def node_types(category: str) -> tuple[type[Node], ...]:
    """Every registered node type of a category, in registration order."""
    return tuple(c for c in Node._registry.values() if category == c.CATEGORY)


def kind_of(metadata: Mapping[str, Any]) -> Kind:
    return cast(Kind, metadata["kind"])


def decode_node(
    raw: object,
    path: str,
    allowed: tuple[type[Node], ...],
    problems: list[str],
    *,
    depth: int,
) -> Node | None:
    """Decode one node of one of the ``allowed`` types, appending problems found."""
    names = ", ".join(repr(c.TYPE) for c in allowed)
    if depth > MAX_DEPTH:
        problems.append(f"{where(path)}: nested more than {MAX_DEPTH} levels deep")
        return None
    if not isinstance(raw, Mapping):
        kind = "of type" if len(allowed) == 1 else "of one of the types"
        problems.append(f"{where(path)}: expected an object {kind} {names}, got {show(raw)}")
        return None
    cls = next((c for c in allowed if raw.get("type") == c.TYPE), None)
    if cls is None:
        got = f"got {show(raw['type'])}" if "type" in raw else "field missing"
        problems.append(f"{at(path, 'type')}: expected one of {names}, {got}")
        return None
    before = len(problems)
    values: dict[str, Any] = {}
    known = {"type"}
    for f in fields(cast(Any, cls)):
        known.add(f.name)
        field_path = at(path, f.name)
        if f.name not in raw:
            if f.default is MISSING:
                problems.append(f"{field_path}: required field missing")
            else:
                values[f.name] = f.default
            continue
        found: list[str] = []
        value = kind_of(f.metadata).decode(raw[f.name], field_path, found, depth + 1)
        problems += found
        if not found:
            values[f.name] = value
    problems += [f"{at(path, str(k))}: unknown field" for k in raw if k not in known]
    problems += cls.relations(values, path)
    if len(problems) > before:
        return None
    return cls(**values)


class Child(Kind):
    """A field holding one node of a category."""

    def __init__(self, category: str, what: str, *, optional: bool = False) -> None:
        self.category = category
        self.what = what
        self.optional = optional

    def check(self, value: object, path: str) -> list[str]:
        if isinstance(value, node_types(self.category)) or (value is None and self.optional):
            return []
        return [f"{path}: expected {self.what}, got {type(value).__name__}"]

    def decode(self, raw: object, path: str, problems: list[str], depth: int) -> object:
        if raw is None and self.optional:
            return None
        return decode_node(raw, path, node_types(self.category), problems, depth=depth)

    def encode(self, value: Any) -> Any:
        return None if value is None else cast(Node, value).to_json()


class Children(Kind):
    """A field holding a tuple of nodes of a category."""

    def __init__(self, category: str, item: str, items: str, *, most: int) -> None:
        self.category = category
        self.item = item
        self.items = items
        self.most = most

    def check(self, value: object, path: str) -> list[str]:
        if not isinstance(value, tuple):
            return [f"{path}: expected a tuple of {self.items}, got {type(value).__name__}"]
        allowed = node_types(self.category)
        problems = [
            f"{path}[{i}]: expected {self.item}, got {type(item).__name__}"
            for i, item in enumerate(value)
            if not isinstance(item, allowed)
        ]
        if len(value) > self.most:
            problems.append(f"{path}: at most {self.most} allowed, got {len(value)}")
        return problems

    def decode(self, raw: object, path: str, problems: list[str], depth: int) -> object:
        if not isinstance(raw, list):
            problems.append(f"{path}: expected a list of {self.items}, got {show(raw)}")
            return None
        if len(raw) > self.most:
            problems.append(f"{path}: at most {self.most} allowed, got {len(raw)}")
            return None
        allowed = node_types(self.category)
        return tuple(
            decode_node(item, f"{path}[{i}]", allowed, problems, depth=depth)
            for i, item in enumerate(raw)
        )

    def encode(self, value: Any) -> Any:
        return [cast(Node, item).to_json() for item in value]


def meta(kind: Kind) -> dict[str, Kind]:
    return {"kind": kind}

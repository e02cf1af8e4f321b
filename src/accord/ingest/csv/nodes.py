"""Reading a composed YAML document node by node, so every problem names its line.

PyYAML's ``compose`` keeps each node's position (its ``start_mark``); the mapping file
is checked on these nodes rather than on the plain values ``safe_load`` would give.
"""

from __future__ import annotations

from datetime import datetime

import yaml

from accord.cdm.spec import BaseType

Scalar = int | float | str | None
Entries = dict[str, tuple[yaml.Node, yaml.Node]]
"""A mapping node's entries by key text: (key node, value node)."""


class Problems:
    """Problems found so far, each with its line in the YAML file."""

    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []

    def add(self, node: yaml.Node, message: str) -> None:
        self.found.append((node.start_mark.line + 1, message))


def typed_scalar(node: yaml.Node, base: BaseType, where: str, problems: Problems) -> Scalar:
    """A constant or value-map target, checked against the field's CDM type."""
    if not isinstance(node, yaml.ScalarNode):
        problems.add(node, f"{where}: expected a single value")
        return None
    if node.tag == "tag:yaml.org,2002:null":
        return None
    if base in ("integer", "bigint"):
        if node.tag != "tag:yaml.org,2002:int":
            problems.add(node, f"{where}: {node.value!r} is not an integer")
            return None
        return int(node.value)
    if base == "float":
        try:
            return float(node.value)
        except ValueError:
            problems.add(node, f"{where}: {node.value!r} is not a number")
            return None
    if base in ("date", "datetime"):
        try:
            datetime.fromisoformat(node.value)
        except ValueError:
            problems.add(node, f"{where}: {node.value!r} is not an ISO date (YYYY-MM-DD)")
            return None
    return str(node.value)


def mapping_entries(node: yaml.Node, where: str, problems: Problems) -> Entries | None:
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, f"{where}: expected a mapping of keys to values")
        return None
    found: Entries = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            problems.add(key, f"{where}: keys must be plain text")
        elif key.value in found:
            problems.add(key, f"{where}: {key.value!r} is given twice")
        else:
            found[key.value] = (key, value)
    return found


def check_keys(
    node: yaml.Node,
    entries: Entries,
    allowed: set[str],
    required: set[str],
    where: str,
    problems: Problems,
) -> None:
    for key, (key_node, _) in entries.items():
        if key not in allowed:
            problems.add(
                key_node, f"{where}: unknown key {key!r} (expected {', '.join(sorted(allowed))})"
            )
    for key in sorted(required - entries.keys()):
        problems.add(node, f"{where}: missing {key!r}")


def text_value(entries: Entries, key: str, problems: Problems) -> str | None:
    if key not in entries:
        return None
    node = entries[key][1]
    if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
        problems.add(node, f"{key}: expected a single value")
        return None
    return str(node.value)


def text_values(entries: Entries, key: str, problems: Problems) -> list[str] | None:
    """A list of text values; a single value is a list of one."""
    if key not in entries:
        return None
    node = entries[key][1]
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    texts = []
    for item in items:
        if not isinstance(item, yaml.ScalarNode) or item.tag == "tag:yaml.org,2002:null":
            problems.add(item, f"{key}: expected text values")
        else:
            texts.append(str(item.value))
    if not texts:
        problems.add(node, f"{key}: expected at least one value")
        return None
    return texts

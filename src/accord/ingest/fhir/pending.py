"""Rows of referenced resources held until every file has been read.

Patients, Encounters, Organizations, Practitioners and Locations refer to one another
across files in any order (an Encounter in one Bundle names an Organization in another),
so they are gathered first and written in dependency order once all are known.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass
class Pending:
    """Extracted rows of one resource type, with where each came from."""

    files: list[str] = field(default_factory=list)
    locators: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    aliases: list[str | None] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def add(
        self, file: str, locator: str, key: str, alias: str | None, row: tuple[Any, ...]
    ) -> None:
        self.files.append(file)
        self.locators.append(locator)
        self.keys.append(key)
        self.aliases.append(alias)
        self.rows.append(row)

    def __len__(self) -> int:
        return len(self.keys)

    def by_file(self) -> Iterator[tuple[str, Pending]]:
        """The rows of each source file in turn (provenance names one file per append)."""
        if len(set(self.files)) <= 1:
            if self.files:
                yield self.files[0], self
            return
        groups: dict[str, Pending] = {}
        for file, locator, key, alias, row in zip(
            self.files, self.locators, self.keys, self.aliases, self.rows, strict=True
        ):
            groups.setdefault(file, Pending()).add(file, locator, key, alias, row)
        yield from groups.items()

    def subset(self, positions: Iterable[int]) -> Pending:
        """The rows at ``positions``, in that order."""
        chosen = list(positions)
        return Pending(
            [self.files[i] for i in chosen],
            [self.locators[i] for i in chosen],
            [self.keys[i] for i in chosen],
            [self.aliases[i] for i in chosen],
            [self.rows[i] for i in chosen],
        )

    def column(self, position: int, type_: pa.DataType | None = None) -> pa.Array:
        """One field of every row as an Arrow array."""
        return pa.array([row[position] for row in self.rows], type_)

    def locator_array(self) -> pa.Array:
        return pa.array(self.locators, pa.string())

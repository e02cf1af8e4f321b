"""FHIR references to CDM ids: the people, visits and places loaded so far.

Resources point at each other across files (a Condition in ``Condition.ndjson`` names a
Patient in ``Patient.ndjson``), so the referenced resources are loaded first and their
ids kept here. A resource is found by ``Type/id`` and, inside Bundles, by the entry's
full URL (often a ``urn:uuid:``), which is how Bundles refer to their own entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
from numpy.typing import NDArray

NOT_FOUND: Final = -1

# The CDM table each referenced resource type becomes.
TABLE_OF_TYPE: Final = {
    "Patient": "person",
    "Encounter": "visit_occurrence",
    "Practitioner": "provider",
    "Organization": "care_site",
    "Location": "location",
}


EarlierIds = Callable[[str, list[str]], NDArray[np.int64]]
"""Ids an earlier load gave, by CDM table and source key (-1 where there is none)."""


class ReferenceIndex:
    """Ids of loaded resources, by resource type and by every name they go by.

    A reference this load has not seen is looked up among earlier loads' rows (through
    ``earlier``), since an incremental export holds new Conditions of old Patients.
    """

    def __init__(self, earlier: EarlierIds | None = None) -> None:
        self._ids: dict[str, dict[str, int]] = {kind: {} for kind in TABLE_OF_TYPE}
        self._earlier = earlier
        self._looked_up: set[str] = set()

    def add(
        self,
        resource_type: str,
        keys: Sequence[str],
        ids: NDArray[np.int64],
        aliases: Sequence[str | None] = (),
    ) -> None:
        """Register resources: ``keys`` are ``Type/id``; ``aliases`` their full URLs."""
        table = self._ids[resource_type]
        values = ids.tolist()
        table.update(zip(keys, values, strict=True))
        table.update((a, v) for a, v in zip(aliases, values, strict=False) if a is not None)

    def resolve(self, resource_type: str, refs: Sequence[str | None]) -> NDArray[np.int64]:
        """The id of each reference, :data:`NOT_FOUND` where absent or unknown."""
        table = self._ids[resource_type]
        get = table.get
        ids = np.fromiter(
            (get(ref, NOT_FOUND) if ref is not None else NOT_FOUND for ref in refs),
            dtype=np.int64,
            count=len(refs),
        )
        if self._earlier is None or not (ids == NOT_FOUND).any():
            return ids
        prefix = resource_type + "/"
        missing = sorted(
            {
                ref
                for ref, found in zip(refs, ids, strict=True)
                if found == NOT_FOUND
                and ref is not None
                and ref.startswith(prefix)
                and ref not in self._looked_up
            }
        )
        if not missing:
            return ids
        self._looked_up.update(missing)
        keys = [f"fhir:{ref}#0" for ref in missing]
        earlier = self._earlier(TABLE_OF_TYPE[resource_type], keys)
        table.update((ref, int(i)) for ref, i in zip(missing, earlier, strict=True) if i >= 0)
        return np.fromiter(
            (get(ref, NOT_FOUND) if ref is not None else NOT_FOUND for ref in refs),
            dtype=np.int64,
            count=len(refs),
        )

    def count(self, resource_type: str) -> int:
        """How many names of ``resource_type`` are known (aliases included)."""
        return len(self._ids[resource_type])

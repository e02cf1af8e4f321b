"""Reading FHIR elements that many resources share: references, periods, quantities.

Every helper takes whatever JSON gave (a resource may be malformed in any way) and
returns ``None`` rather than raising when the element is absent or of the wrong shape;
whether that absence rejects the resource is the caller's decision.
"""

from __future__ import annotations

from typing import Any


class Rejected(Exception):
    """A resource that cannot become a CDM row; ``reason`` names the element.

    ``value`` is the offending value, which the report keeps out of its summary.
    """

    def __init__(self, reason: str, value: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.value = value


def text(value: Any) -> str | None:
    """A FHIR string, or ``None``."""
    return value if isinstance(value, str) and value else None


def number(value: Any) -> float | None:
    """A FHIR decimal or integer, or ``None`` (a JSON true is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def reference(value: Any) -> str | None:
    """The target of a Reference, as ``Type/id`` or a ``urn:`` URL.

    Absolute URLs and version-specific references are cut down to ``Type/id`` so they
    match the resource however it was addressed.

    >>> reference({"reference": "https://fhir.example.org/r4/Patient/7/_history/2"})
    'Patient/7'
    """
    if not isinstance(value, dict):
        return None
    ref = value.get("reference")
    if not isinstance(ref, str) or not ref:
        return None
    if ref.count("/") == 1 or ref.startswith(("urn:", "#")):
        return ref
    ref = ref.split("/_history/", 1)[0]
    parts = ref.rsplit("/", 2)
    return f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 else ref


def first(value: Any) -> Any:
    """The first item of a FHIR list, or ``None``."""
    return value[0] if isinstance(value, list) and value else None


def period_start(value: Any) -> str | None:
    return text(value.get("start")) if isinstance(value, dict) else None


def period_end(value: Any) -> str | None:
    return text(value.get("end")) if isinstance(value, dict) else None


def quantity(value: Any) -> tuple[float | None, str | None]:
    """A Quantity's value and its unit: the UCUM code when given, else the unit text."""
    if not isinstance(value, dict):
        return None, None
    unit = text(value.get("code")) or text(value.get("unit"))
    return number(value.get("value")), unit


def coded(resource: dict[str, Any], name: str) -> str | None:
    """A code-typed element such as ``status``."""
    return text(resource.get(name))


def status_code(value: Any) -> str | None:
    """The first code of a CodeableConcept status such as ``verificationStatus``."""
    coding = first(value.get("coding")) if isinstance(value, dict) else None
    return text(coding.get("code")) if isinstance(coding, dict) else None


def resource_key(resource: dict[str, Any], full_url: str | None) -> str:
    """``Type/id``, the stable name of a resource across exports.

    A transaction Bundle may give a new resource only a ``urn:uuid`` full URL; that
    stands in for the id.
    """
    resource_id = text(resource.get("id"))
    if resource_id is None:
        if full_url is None:
            raise Rejected(f"{resource['resourceType']}.id is missing")
        resource_id = full_url.rsplit("/", 1)[-1].removeprefix("urn:uuid:")
    return f"{resource['resourceType']}/{resource_id}"

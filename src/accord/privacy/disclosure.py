"""Small-cell disclosure control for counts: pure functions, no I/O.

A member node applies its profile to every count before the count leaves the site:

- 0 is shown as 0 (an empty cohort identifies nobody);
- 1 to ``threshold - 1`` is suppressed and shown as ``<threshold``;
- anything else is rounded to the nearest multiple of ``rounding``, halves rounding up.

The hub only ever adds released figures (``combine_total``); it never sees a raw count.

Example:
    >>> profile = SmallCellProfile()
    >>> [apply_count(profile, n).display for n in (0, 3, 12, 13, 15)]
    ['0', '<10', '10', '15', '15']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SmallCellProfile:
    """A member's rule for releasing counts; versioned and stamped on every output."""

    name: str = "small-cell-10-round-5"
    threshold: int = 10
    rounding: int = 5
    version: int = 1

    def __post_init__(self) -> None:
        problems = [
            f"{name}: expected a whole number of at least 1, got {value!r}"
            for name, value in (
                ("threshold", self.threshold),
                ("rounding", self.rounding),
                ("version", self.version),
            )
            if not _is_int(value) or value < 1
        ]
        if not _is_text(self.name) or not self.name:
            problems.append(f"name: expected a non-empty string, got {self.name!r}")
        if problems:
            raise ValueError("invalid disclosure profile: " + "; ".join(problems))

    @property
    def rule(self) -> str:
        """The profile in one sentence, as shown beside each released figure."""
        rest = "shown exactly" if self.rounding == 1 else f"rounded to nearest {self.rounding}"
        if self.threshold == 1:
            return f"counts {rest}"
        small = "1" if self.threshold == 2 else f"1–{self.threshold - 1}"
        return f"{small} shown as <{self.threshold}; others {rest}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "threshold": self.threshold,
            "rounding": self.rounding,
            "version": self.version,
        }

    @classmethod
    def from_json(cls, obj: object) -> SmallCellProfile:
        data = _fields(obj, "disclosure profile", {"name", "threshold", "rounding", "version"})
        return cls(**data)


@dataclass(frozen=True)
class DisclosedCount:
    """A count fit to leave a site (or, from ``combine_total``, the consortium's total).

    ``value`` is what may be used in arithmetic: ``None`` when a member's count was
    suppressed. ``display`` is what a person is shown. For a total, ``suppressed`` means
    some member's count was left out, so ``value`` is a lower bound.
    """

    value: int | None
    display: str
    suppressed: bool
    rule: str

    def __post_init__(self) -> None:
        problems = []
        if self.value is not None and (not _is_int(self.value) or self.value < 0):
            problems.append(f"value: expected a count of 0 or more or null, got {self.value!r}")
        if self.value is None and not self.suppressed:
            problems.append("value: only a suppressed count may be null")
        if not _is_text(self.display) or not self.display:
            problems.append(f"display: expected a non-empty string, got {self.display!r}")
        if not _is_bool(self.suppressed):
            problems.append(f"suppressed: expected true or false, got {self.suppressed!r}")
        if not _is_text(self.rule):
            problems.append(f"rule: expected a string, got {self.rule!r}")
        if problems:
            raise ValueError("invalid disclosed count: " + "; ".join(problems))

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "display": self.display,
            "suppressed": self.suppressed,
            "rule": self.rule,
        }

    @classmethod
    def from_json(cls, obj: object) -> DisclosedCount:
        data = _fields(obj, "disclosed count", {"value", "display", "suppressed", "rule"})
        return cls(**data)


def apply_count(profile: SmallCellProfile, n: int) -> DisclosedCount:
    """Release the raw count ``n`` under ``profile``.

    Example:
        >>> released = apply_count(SmallCellProfile(), 7)
        >>> released.value, released.display, released.suppressed
        (None, '<10', True)
        >>> released.rule
        '1–9 shown as <10; others rounded to nearest 5'
    """
    if not _is_int(n):
        raise TypeError(f"a count must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"a count cannot be negative, got {n}")
    if n == 0:
        return DisclosedCount(0, "0", suppressed=False, rule=profile.rule)
    if n < profile.threshold:
        return DisclosedCount(None, f"<{profile.threshold}", suppressed=True, rule=profile.rule)
    # Nearest multiple with halves going up, in integers so no float ever rounds wrongly.
    step = profile.rounding
    rounded = (2 * n + step) // (2 * step) * step
    return DisclosedCount(rounded, str(rounded), suppressed=False, rule=profile.rule)


def combine_total(disclosed: Iterable[DisclosedCount]) -> DisclosedCount:
    """The consortium total: the sum of the members' released values.

    A suppressed member count is left out of the sum, since only "fewer than the
    threshold" is known of it. The total is then marked ``suppressed`` and displayed as
    a lower bound, ``≥125``: the true total is the released figures plus between 1 and
    threshold - 1 for each suppressed member (released figures are themselves rounded,
    so the bound is as good as they are).

    Example:
        >>> released = [DisclosedCount(120, "120", False, ""), DisclosedCount(5, "5", False, "")]
        >>> combine_total(released).display
        '125'
        >>> small = DisclosedCount(None, "<10", True, "")
        >>> combine_total([*released, small]).display
        '≥125'
    """
    cells = list(disclosed)
    total = sum(c.value for c in cells if c.value is not None)
    left_out = sum(1 for c in cells if c.suppressed)
    members = f"{len(cells)} member{'s' if len(cells) != 1 else ''}"
    if not left_out:
        return DisclosedCount(
            total, str(total), suppressed=False, rule=f"sum of the released counts of {members}"
        )
    return DisclosedCount(
        total,
        f"≥{total}",
        suppressed=True,
        rule=(
            f"sum of the released counts of {members}; {left_out} suppressed as small "
            "and left out, so the true total is higher"
        ),
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value: object) -> bool:
    return isinstance(value, str)


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _fields(obj: object, what: str, names: set[str]) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{what}: expected an object, got {type(obj).__name__}")
    missing = sorted(names - obj.keys())
    unknown = sorted(str(k) for k in obj.keys() - names)
    problems = [f"{name}: required field missing" for name in missing]
    problems += [f"{name}: unknown field" for name in unknown]
    if problems:
        raise ValueError(f"invalid {what}: " + "; ".join(problems))
    return {name: obj[name] for name in names}

"""The hub's side of a secure sum: what it tells a round's members, what it accepts from
them, and what the researcher sees.

A task disclosed as ``secure_sum`` runs in rounds (``accord.trust.secagg.Round``). Each
member of a round masks its raw sums with the round's pairwise masks and seals the masked
vector to the hub. The hub holds those vectors in memory only, never in its database or
audit log, and only until the round ends: summed and dropped when every member delivered,
dropped unsummed when the round is repeated without a member that did not. The task's
outcome is the total alone, released under the strictest member's profile
(``accord.hub.aggregation.secure_total``); a member's assignment records that it took
part, in which round and under which profile, never a figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from accord import protocol
from accord.hub.aggregation import secure_total
from accord.hub.store import REFUSED, RoundView, TaskView
from accord.privacy.disclosure import SmallCellProfile
from accord.trust import secagg

CONTRIBUTION_FIELDS = frozenset({"analysis", "round_id", "masked", "profile"})
RING_DIGITS = len(str(2**64 - 1))

# Why a member left a secure sum; the assignment's reason, shown to the researcher.
DROPPED = "dropped from the secure sum"
NOT_CONNECTED = f"{DROPPED}: its node was not connected when round {{seq}} started"
WENT_AWAY = f"{DROPPED}: its node could not be reached as round {{seq}} started"
DISCONNECTED = f"{DROPPED}: its node disconnected before delivering its part of round {{seq}}"


@dataclass(frozen=True)
class Contribution:
    """One member's masked vector for a round and the profile its rules release under."""

    masked: NDArray[np.uint64]
    profile: SmallCellProfile


def refused(reason: str) -> str:
    """The assignment's reason for a member that refused its part of a round."""
    return f"{DROPPED}: {reason}"


def round_message(round_: RoundView, keys: dict[str, str]) -> dict[str, Any]:
    """TASK_RUN's ``secure`` field: the round id and every member with its X25519 public
    key as registered at the hub (base64url, as ``accord.trust.keys`` writes it)."""
    return {
        "round_id": round_.round_id,
        "members": [{"member": m, "encryption_key": keys[m]} for m in round_.members],
    }


def accept_contribution(analysis: dict[str, Any], round_id: str, sealed: object) -> Contribution:
    """Check a decrypted contribution has exactly the expected fields, names the task's
    analysis and this round, and holds ring elements. Raises ValueError naming the flaw.

    Nothing about the values can be checked: masked, they look uniformly random.
    """
    if not isinstance(sealed, dict):
        raise ValueError("the contribution is not an object")
    if set(sealed) != CONTRIBUTION_FIELDS:
        raise ValueError(
            f"a contribution has exactly the fields {', '.join(sorted(CONTRIBUTION_FIELDS))}"
        )
    kind = analysis.get("type")
    if sealed["analysis"] != kind:
        raise ValueError(f"the contribution is not for a {kind} analysis")
    if sealed["round_id"] != round_id:
        raise ValueError("the contribution names another round")
    masked = sealed["masked"]
    if not isinstance(masked, list) or not 1 <= len(masked) <= protocol.MAX_SECURE_VALUES:
        raise ValueError(
            f"masked: expected a list of 1 to {protocol.MAX_SECURE_VALUES} ring elements"
        )
    values = []
    for element in masked:
        if (
            not isinstance(element, str)
            or not element.isascii()
            or not element.isdigit()
            or len(element) > RING_DIGITS
            or int(element) >= 2**64
        ):
            raise ValueError("masked: each element is a decimal integer from 0 to 2^64 - 1")
        values.append(int(element))
    profile = SmallCellProfile.from_json(sealed["profile"])
    return Contribution(masked=np.array(values, dtype=np.uint64), profile=profile)


def total_of(
    analysis: dict[str, Any], round_: RoundView, held: dict[str, Contribution]
) -> dict[str, Any]:
    """The released total of a complete round: the masks cancel in the sum, which is
    decoded and released under the strictest profile. Raises ValueError (or TrustError)
    if the round is incomplete or the total does not fit the analysis."""
    members = sorted(round_.members)
    secagg.Round(round_id=round_.round_id, members=frozenset(members)).require_complete(held)
    ring = secagg.unmask_sum([held[m].masked for m in members])
    total = secagg.decode(ring, protocol.SECURE_SCALE_BITS)
    return secure_total(analysis, total, [held[m].profile for m in members])


def member_result(
    analysis: dict[str, Any], round_id: str, profile: SmallCellProfile
) -> dict[str, Any]:
    """What a member's assignment says once its round completed: no figures."""
    return {
        "analysis": analysis.get("type"),
        "secure": True,
        "round": round_id,
        "profile": profile.to_json(),
    }


def display(analysis: dict[str, Any], released: dict[str, Any]) -> str:
    """What the audit log says a secure sum released: a count as shown, else its kind."""
    total = released.get("total")
    if isinstance(total, dict):
        return str(total.get("display"))
    if "withheld" in released:
        return "withheld"
    return f"{analysis.get('type')} total"


def summary(view: TaskView, rounds: Sequence[RoundView]) -> dict[str, Any]:
    """A secure sum's summary for the researcher: progress, the rounds run, the members
    dropped and why, and once it ended the released total (or why there is none)."""
    dropped = [
        {"member": a.member_id, "reason": a.reason} for a in view.assignments if a.status == REFUSED
    ]
    if view.combined is not None:
        secure: dict[str, Any] = dict(view.combined)
    else:
        current = rounds[-1] if rounds else None
        secure = {
            "status": "running",
            "round": current.round_id if current else None,
            "members": list(current.members) if current else [],
        }
    secure["rounds"] = len(rounds)
    secure["dropped"] = dropped
    found: dict[str, Any] = {
        "members": len(view.assignments),
        "answered": sum(1 for a in view.assignments if a.status != "pending"),
        "secure": secure,
    }
    if "total" in secure:
        found["total"] = secure["total"]
    return found

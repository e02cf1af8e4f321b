"""Secure aggregation by pairwise masks, so the hub learns only the members' total.

Protocol (Bonawitz et al. 2017, without its secret sharing for dropout recovery):

1. The hub fixes a :class:`Round`: a fresh ``round_id`` and the set of members taking part.
   Every member is told both, together with its peers' X25519 public keys.
2. Each member encodes its vector of numbers (counts, sums, score vectors, flattened
   information matrices) in the ring Z_{2^64} with :func:`encode`: fixed point with
   ``scale_bits`` fractional bits, negatives in two's complement.
3. Each pair of members {i, j} agrees on a 32-byte seed without talking to each other:
   X25519(i's private key, j's public key) equals X25519(j's private key, i's public key);
   HKDF-SHA256 turns it into a seed bound to the round and the pair (:func:`pairwise_seed`).
4. ChaCha20 expands the seed into a mask stream as long as the vector (:func:`mask_stream`).
   Member i adds the stream for every peer whose name sorts after its own and subtracts
   it for every peer whose name sorts before (:func:`mask`), all mod 2^64, and sends the
   masked vector to the hub.
5. The hub adds the masked vectors (:func:`unmask_sum`). Each pair's stream was added once
   and subtracted once, so the masks cancel and only the sum of the encoded vectors is
   left, which :func:`decode` turns back into numbers::

       ring = encode(counts, scale_bits=0, max_members=len(round_.members))
       masked = mask(me.name, me.encryption_key, peer_keys, round_.round_id, ring)
       # ... at the hub, once round_.require_complete(received) passes:
       total = decode(unmask_sum(list(received.values())), scale_bits=0)

Threat model. The hub is honest but curious: it follows the protocol but would like to
learn each member's values. Every masked vector the hub sees is the true vector plus a
sum of ChaCha20 streams whose seeds only the two members of each pair can compute, so to
the hub each one is indistinguishable from uniform random noise; only the total is
revealed. A hub that colludes with a set C of members learns what those members know:
their own values and the masks they share, hence the total of the honest members' values
(which the total reveals anyway) but no single honest member's value, unless only one
honest member is left, in which case the total itself gives it away. The same holds for
members colluding without the hub: they never see a masked vector.

Limits; what this does not protect against:

* Dropouts. If any member of a round does not deliver, the masks it shares with the others
  do not cancel and the sum is noise. There is no recovery (no secret-shared seeds): the
  hub checks completeness with :meth:`Round.require_complete` before summing and, if a
  member is missing, repeats the computation as a new round with the remaining members,
  ``round_.without(missing)``, which has a new ``round_id`` and so fresh masks. Members
  compute and mask their vectors again for the new round.
* A hub that lies. A hub that claims a member dropped although it received its masked
  vector, and then runs the round again without it, can subtract the two totals and
  learn that member's value. More generally, totals over two member sets reveal the total
  over their difference. The honest-but-curious hub does not do this; against an active
  hub, members need a rule such as refusing a repeat of a computation whose member set
  shrinks to fewer than a minimum, and the audit log records every round.
* Key substitution. A hub that hands out its own public keys in place of members' keys
  can compute the masks. Members must take peers' public keys from authenticated
  identities (signed registrations, fingerprints compared out of band), not trust the
  hub's directory blindly.
* Reused round ids. Two vectors masked in the same round by the same member carry the
  same masks, so their difference is visible. A ``round_id`` must never repeat (the
  hub's :meth:`Round.start` picks 128 random bits), and a member masks one vector per
  round: concatenate several statistics into one vector, or use one round per vector.
* Bad inputs. Masked vectors cannot be checked, so a member can add any value, including
  one that wraps the ring and ruins the total. :func:`encode` refuses values that could
  overflow, but only on an honest member's machine; the result's integrity rests on the
  members, and its disclosure on the usual disclosure control of the total.
* Small rounds. With two members each one learns the other's value from the total if the
  total is shared with members; masking protects against the hub, not against the total.

The masks are computationally, not information-theoretically, hiding: they are as strong
as X25519 and ChaCha20.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from numpy.typing import NDArray

from accord.errors import DataError, TrustError
from accord.trust.keys import NAME_RULE, is_valid_name

SCHEME: Final = b"accord/secagg/v1"
SEED_BYTES: Final = 32
RING_BITS: Final = 64
MAX_SCALE_BITS: Final = 62
MAX_MEMBERS: Final = 1024
"""Default for :func:`encode`'s ``max_members``: the largest round it must survive."""

ROUND_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
ROUND_ID_RULE: Final = (
    "1-128 letters, digits or '.', '_', ':', '/', '-', starting with a letter or digit"
)

# ChaCha20 in `cryptography` takes a 16-byte nonce: a 4-byte block counter followed by a
# 12-byte nonce. Each seed is used for exactly one stream, so an all-zero nonce is safe.
_ZERO_NONCE: Final = bytes(16)
_TWO_TO_63: Final = 2.0**63


# -- fixed-point encoding ----------------------------------------------------------------


def encode(
    values: Sequence[float] | NDArray[np.floating] | NDArray[np.integer],
    scale_bits: int,
    *,
    max_members: int = MAX_MEMBERS,
) -> NDArray[np.uint64]:
    """Encode ``values`` in Z_{2^64}: ``round(x * 2^scale_bits) mod 2^64``.

    Rounding is to the nearest integer (ties to even), so each value moves by at most
    ``2^-(scale_bits + 1)``. Negative values wrap to two's complement, so ``-1`` at scale
    0 encodes as ``2^64 - 1`` and the ring's sum decodes to the signed total.

    The sum of ``max_members`` vectors must stay inside the signed range, so every encoded
    integer ``k`` must satisfy ``|k| * max_members < 2^63``; in units, the total is then
    guaranteed ``|sum| < 2^(63 - scale_bits)``. Refuses (``DataError``) NaN, infinities and
    values outside that bound. Pass the round's member count (or the consortium size) as
    ``max_members``; a round with more members than that can overflow.
    """
    _check_scale_bits(scale_bits)
    if isinstance(max_members, bool) or not isinstance(max_members, int) or max_members < 1:
        raise ValueError(f"max_members: expected an integer >= 1, got {max_members!r}")
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise DataError(
            f"secure aggregation: expected a flat vector of numbers, got shape {array.shape}",
            hint="flatten matrices before encoding, e.g. with .ravel()",
        )
    finite = np.isfinite(array)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise DataError(
            f"secure aggregation: value {index} is {array[index]!r}; only finite numbers "
            "can be aggregated",
            hint="check the computation that produced it for a division by zero or overflow",
        )
    scaled = np.rint(np.ldexp(array, scale_bits))
    # Exact: both sides are floats and 2^63 is representable, so rounding cannot let a
    # product at or above 2^63 slip below it.
    too_big = np.abs(scaled) * max_members >= _TWO_TO_63
    if too_big.any():
        index = int(np.flatnonzero(too_big)[0])
        limit = math.ldexp(1.0, RING_BITS - 1 - scale_bits) / max_members
        raise DataError(
            f"secure aggregation: value {index} ({array[index]:.6g}) is too large to sum "
            f"over {max_members} members at {scale_bits} fractional bits: each value must "
            f"stay below {limit:.6g} in magnitude (|sum| < 2^{RING_BITS - 1 - scale_bits})",
            hint="use fewer scale_bits, rescale the values, or a smaller max_members",
        )
    return scaled.astype(np.int64).view(np.uint64)


def decode(ring: NDArray[np.uint64], scale_bits: int) -> NDArray[np.float64]:
    """Turn a ring vector (typically :func:`unmask_sum`'s total) back into numbers.

    Reads each element as a signed 64-bit integer and divides by ``2^scale_bits``. Exact
    while the integer fits in 53 bits; beyond that, the nearest float.
    """
    _check_scale_bits(scale_bits)
    vector = _require_ring_vector(ring, what="ring vector")
    return np.ldexp(vector.view(np.int64).astype(np.float64), -scale_bits)


def _check_scale_bits(scale_bits: int) -> None:
    if (
        isinstance(scale_bits, bool)
        or not isinstance(scale_bits, int)
        or not 0 <= scale_bits <= MAX_SCALE_BITS
    ):
        raise ValueError(
            f"scale_bits: expected an integer from 0 to {MAX_SCALE_BITS}, got {scale_bits!r}"
        )


# -- pairwise seeds and mask streams -----------------------------------------------------


def seed_info(round_id: str, name_a: str, name_b: str) -> bytes:
    """HKDF ``info`` for a pair's seed: the scheme, the round and both names in order.

    Names cannot contain ``|``, so reading from the right splits it unambiguously.
    """
    low, high = sorted((name_a, name_b))
    return b"|".join(
        (
            SCHEME,
            b"round=" + _check_round_id(round_id).encode("ascii"),
            low.encode("ascii"),
            high.encode("ascii"),
        )
    )


def pairwise_seed(
    own_name: str,
    own_private_key: X25519PrivateKey,
    peer_name: str,
    peer_public_key: X25519PublicKey,
    round_id: str,
) -> bytes:
    """The 32-byte seed that ``own_name`` and ``peer_name`` share for ``round_id``.

    HKDF-SHA256 (no salt) over the X25519 shared secret, with :func:`seed_info` as
    ``info``; both members of the pair get the same seed, and it differs per round and
    per pair. Refuses (``TrustError``) a peer key that yields no shared secret (a
    low-order point), since its seed would be known to anyone.
    """
    _check_member_name(own_name, what="own name")
    _check_member_name(peer_name, what="peer name")
    if own_name == peer_name:
        raise TrustError(f"secure aggregation: member {own_name!r} cannot pair with itself")
    info = seed_info(round_id, own_name, peer_name)
    try:
        shared = own_private_key.exchange(peer_public_key)
    except ValueError:
        raise TrustError(
            f"secure aggregation: the public key given for {peer_name!r} is not usable "
            "(it yields no shared secret)",
            hint="take peers' keys from their verified identities",
        ) from None
    return HKDF(algorithm=hashes.SHA256(), length=SEED_BYTES, salt=None, info=info).derive(shared)


def mask_stream(seed: bytes, length: int) -> NDArray[np.uint64]:
    """``length`` pseudo-random uint64 values from ``seed``: the ChaCha20 keystream.

    ChaCha20 is a stream cipher, so its keystream is by design a PRG keyed by a 256-bit
    seed: indistinguishable from random without the seed, any length in one call (up to
    256 GiB per seed), fast and constant-time in software. HKDF-Expand would also work
    but stops at 255 hash blocks (8,160 bytes, 1,020 values) per call, so long vectors
    would need a home-made block construction, and it costs an HMAC per 32 bytes. The
    seed is used for one stream only, so the all-zero nonce is safe. Bytes are read as
    little-endian words, so every platform gets the same stream.
    """
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        raise ValueError(f"seed: expected {SEED_BYTES} bytes")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length: expected an integer >= 0, got {length!r}")
    encryptor = Cipher(algorithms.ChaCha20(seed, _ZERO_NONCE), mode=None).encryptor()
    keystream = encryptor.update(bytes(8 * length)) + encryptor.finalize()
    return np.frombuffer(keystream, dtype="<u8").astype(np.uint64)


# -- masking and summing -----------------------------------------------------------------


def mask(
    own_name: str,
    own_private_key: X25519PrivateKey,
    peers: Mapping[str, X25519PublicKey],
    round_id: str,
    vector: NDArray[np.uint64],
) -> NDArray[np.uint64]:
    """Mask an encoded ``vector`` for the hub: what a member sends instead of its values.

    Adds the pair's :func:`mask_stream` for every peer whose name sorts after
    ``own_name`` and subtracts it for every peer whose name sorts before, mod 2^64.
    ``peers`` are all the other members of the round, as fixed by the hub, with their
    X25519 public keys; it must be exactly the round's members minus this one
    (:meth:`Round.peers_of`), or the masks will not cancel. Refuses (``TrustError``) no
    peers, since a mask with nothing to cancel against hides nothing, and a ``peers``
    that names this member. Returns a new array; ``vector`` is left as it was.
    """
    _check_member_name(own_name, what="own name")
    _check_round_id(round_id)
    if not peers:
        raise TrustError(
            "secure aggregation: no peers to mask with; a lone member's masked value "
            "would reveal its value",
            hint="a round needs at least two members",
        )
    if own_name in peers:
        raise TrustError(
            f"secure aggregation: peers include the member itself ({own_name!r})",
            hint="pass the round's members other than this one, e.g. Round.peers_of(name)",
        )
    masked = _require_ring_vector(vector, what="vector").copy()
    for peer_name in sorted(peers):
        seed = pairwise_seed(own_name, own_private_key, peer_name, peers[peer_name], round_id)
        stream = mask_stream(seed, masked.size)
        if peer_name > own_name:
            masked += stream
        else:
            masked -= stream
    return masked


def unmask_sum(masked_vectors: Sequence[NDArray[np.uint64]]) -> NDArray[np.uint64]:
    """The hub's total: the masked vectors added mod 2^64, where the masks cancel.

    The masks cancel only if ``masked_vectors`` holds exactly one vector from every member
    of the round. If anyone dropped out, the result is noise, and nothing here can tell:
    call :meth:`Round.require_complete` first and, if it refuses, run the computation
    again as ``round_.without(missing)`` (new ``round_id``, fresh masks) with the
    remaining members masking anew. Never sum vectors from different rounds.
    """
    if not masked_vectors:
        raise TrustError("secure aggregation: no masked vectors to sum")
    vectors = [
        _require_ring_vector(v, what=f"masked vector {i}") for i, v in enumerate(masked_vectors)
    ]
    lengths = {v.size for v in vectors}
    if len(lengths) > 1:
        raise TrustError(
            f"secure aggregation: masked vectors differ in length ({sorted(lengths)})",
            hint="every member of a round must encode the same statistics in the same order",
        )
    # uint64 arithmetic on arrays wraps, which is exactly addition mod 2^64.
    total: NDArray[np.uint64] = np.sum(np.stack(vectors), axis=0, dtype=np.uint64)
    return total


def _require_ring_vector(vector: object, *, what: str) -> NDArray[np.uint64]:
    if not isinstance(vector, np.ndarray) or vector.dtype != np.uint64 or vector.ndim != 1:
        shape = getattr(vector, "shape", None)
        dtype = getattr(vector, "dtype", type(vector).__name__)
        raise ValueError(
            f"{what}: expected a 1-D numpy uint64 array (from encode), got {dtype} {shape}"
        )
    return vector


# -- rounds ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    """One aggregation: a never-reused ``round_id`` and the members whose vectors it sums.

    The hub creates it (:meth:`start`), tells each member the id and its peers
    (:meth:`peers_of`), checks that everyone delivered (:meth:`require_complete`) and, if
    someone did not, repeats the computation as :meth:`without` the missing members.
    Bind the id to the task, e.g. ``f"{task_id}/{secrets.token_hex(16)}"``, so members can
    tell which computation a round belongs to.
    """

    round_id: str
    members: frozenset[str]

    def __post_init__(self) -> None:
        _check_round_id(self.round_id)
        if not isinstance(self.members, frozenset):
            raise TypeError("members: expected a frozenset of member names")
        for name in sorted(self.members):
            _check_member_name(name, what="member name")
        if len(self.members) < 2:
            raise TrustError(
                f"secure aggregation: round {self.round_id!r} has {len(self.members)} "
                "member(s); at least two are needed for masks to hide anything"
            )

    @classmethod
    def start(cls, members: Iterable[str], *, task: str | None = None) -> Round:
        """A round with a fresh random id (prefixed by ``task`` if given)."""
        suffix = secrets.token_hex(16)
        round_id = f"{task}/{suffix}" if task is not None else suffix
        return cls(round_id=round_id, members=frozenset(members))

    def peers_of(self, name: str) -> frozenset[str]:
        """The members ``name`` masks against: everyone in the round but itself."""
        if name not in self.members:
            raise TrustError(
                f"secure aggregation: {name!r} is not a member of round {self.round_id!r}"
            )
        return self.members - {name}

    def require_complete(self, contributors: Iterable[str]) -> None:
        """Refuse (``TrustError``) unless exactly the round's members contributed.

        Missing members mean the masks cannot cancel; the message names them and says to
        repeat the round without them. Unknown contributors are refused too.
        """
        given = list(contributors)
        seen = frozenset(given)
        if len(seen) != len(given):
            raise TrustError(
                f"secure aggregation: round {self.round_id!r} has duplicate contributions"
            )
        unknown = sorted(seen - self.members)
        if unknown:
            raise TrustError(
                f"secure aggregation: round {self.round_id!r} got contributions from "
                f"non-members: {', '.join(unknown)}"
            )
        missing = sorted(self.members - seen)
        if missing:
            raise TrustError(
                f"secure aggregation: round {self.round_id!r} is missing "
                f"{', '.join(missing)}; the masks do not cancel without them",
                hint="repeat the computation as round.without(missing) with a new round id",
            )

    def without(self, dropped: Iterable[str], *, round_id: str | None = None) -> Round:
        """The round to run when ``dropped`` did not deliver: the rest, with a new id.

        The new id gives every remaining pair fresh masks, so nothing seen in this round
        helps undo the next one. Refuses reusing this round's id.
        """
        gone = frozenset(dropped)
        unknown = sorted(gone - self.members)
        if unknown:
            raise TrustError(
                f"secure aggregation: cannot drop {', '.join(unknown)}: not members of "
                f"round {self.round_id!r}"
            )
        new_id = round_id if round_id is not None else _next_round_id(self.round_id)
        if new_id == self.round_id:
            raise TrustError(
                f"secure aggregation: a repeated round needs a new round id, not "
                f"{self.round_id!r}; reusing it would reuse the masks"
            )
        return Round(round_id=new_id, members=self.members - gone)


def _next_round_id(round_id: str) -> str:
    # Keep the task prefix (everything up to the last '/') so the new round still names it.
    prefix, slash, _ = round_id.rpartition("/")
    return f"{prefix}{slash}{secrets.token_hex(16)}"


def _check_round_id(round_id: object) -> str:
    if not isinstance(round_id, str) or ROUND_ID_PATTERN.fullmatch(round_id) is None:
        raise TrustError(
            f"secure aggregation: round id {round_id!r:.70} is not valid ({ROUND_ID_RULE})"
        )
    return round_id


def _check_member_name(name: object, *, what: str) -> str:
    if not is_valid_name(name):
        raise TrustError(f"secure aggregation: {what} {name!r:.70} is not valid ({NAME_RULE})")
    return name

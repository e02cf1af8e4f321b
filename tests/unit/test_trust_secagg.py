from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from accord.errors import DataError, TrustError
from accord.trust.keys import NAME_PATTERN
from accord.trust.secagg import (
    MAX_SCALE_BITS,
    Round,
    decode,
    encode,
    mask,
    mask_stream,
    pairwise_seed,
    seed_info,
    unmask_sum,
)

U64 = NDArray[np.uint64]
RING = 1 << 64

names = st.from_regex(NAME_PATTERN, fullmatch=True)
private_keys = st.binary(min_size=32, max_size=32).map(X25519PrivateKey.from_private_bytes)
round_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,40}", fullmatch=True)
scales = st.integers(0, 40)


def fixed_key(name: str) -> X25519PrivateKey:
    """A deterministic key, so the statistical tests cannot flake."""
    return X25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


def peers_for(
    name: str, keys: Mapping[str, X25519PrivateKey], members: frozenset[str] | None = None
) -> dict[str, X25519PublicKey]:
    chosen = members if members is not None else frozenset(keys)
    return {peer: keys[peer].public_key() for peer in chosen if peer != name}


def mask_all(
    keys: Mapping[str, X25519PrivateKey], round_: Round, vectors: Mapping[str, U64]
) -> dict[str, U64]:
    return {
        name: mask(
            name,
            keys[name],
            peers_for(name, keys, round_.members),
            round_.round_id,
            vectors[name],
        )
        for name in round_.members
    }


def as_ints(ring: U64) -> list[int]:
    return [int(v) for v in ring]


# -- masks cancel ------------------------------------------------------------------------


@st.composite
def consortia(draw: st.DrawFn) -> tuple[dict[str, X25519PrivateKey], int]:
    members = draw(st.lists(names, min_size=2, max_size=6, unique=True))
    keys = {name: draw(private_keys) for name in members}
    length = draw(st.integers(1, 16))
    return keys, length


@given(consortia(), scales, round_ids, st.data())
@settings(max_examples=40, deadline=None)
def test_masks_cancel_exactly_on_the_fixed_point_grid(
    consortium: tuple[dict[str, X25519PrivateKey], int],
    scale_bits: int,
    round_id: str,
    data: st.DataObject,
) -> None:
    keys, length = consortium
    # Integers k / 2^scale_bits: exact as floats, and the total stays below 2^53.
    grid = st.integers(-(2**49), 2**49)
    ints = {name: data.draw(st.lists(grid, min_size=length, max_size=length)) for name in keys}
    values = {name: [math.ldexp(k, -scale_bits) for k in ks] for name, ks in ints.items()}
    round_ = Round(round_id, frozenset(keys))
    encoded = {name: encode(v, scale_bits, max_members=len(keys)) for name, v in values.items()}

    masked = mask_all(keys, round_, encoded)
    total = unmask_sum(list(masked.values()))

    plain = [sum(column) for column in zip(*ints.values(), strict=True)]
    assert as_ints(total) == [k % RING for k in plain]
    assert decode(total, scale_bits).tolist() == [math.ldexp(k, -scale_bits) for k in plain]


@given(consortia(), st.integers(0, 32), round_ids, st.data())
@settings(max_examples=40, deadline=None)
def test_masks_cancel_for_any_fractions_within_rounding(
    consortium: tuple[dict[str, X25519PrivateKey], int],
    scale_bits: int,
    round_id: str,
    data: st.DataObject,
) -> None:
    keys, length = consortium
    floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    values = {name: data.draw(st.lists(floats, min_size=length, max_size=length)) for name in keys}
    round_ = Round(round_id, frozenset(keys))
    encoded = {name: encode(v, scale_bits, max_members=len(keys)) for name, v in values.items()}

    total = unmask_sum(list(mask_all(keys, round_, encoded).values()))

    # In the ring: exactly the sum of what each member encoded.
    encoded_sum = [
        sum(column) % RING for column in zip(*map(as_ints, encoded.values()), strict=True)
    ]
    assert as_ints(total) == encoded_sum
    # In numbers: each member's value moved by at most half a step when it was rounded.
    decoded = decode(total, scale_bits)
    for index, column in enumerate(zip(*values.values(), strict=True)):
        expected = math.fsum(column)
        tolerance = len(keys) * math.ldexp(1.0, -scale_bits - 1) + 4 * math.ulp(expected)
        assert abs(decoded[index] - expected) <= tolerance


# -- the hub's view of one member --------------------------------------------------------

TRIO = {name: fixed_key(name) for name in ("alder", "birch", "cedar")}
SAMPLE_ROUNDS = 400
WIDTH = 16  # 400 rounds x 16 elements = 6,400 samples of each 64-bit word
A = encode([0.0] * WIDTH, 0)
B = encode([(-1) ** i * 2.0**40 + i for i in range(WIDTH)], 0)


def birch_masked(true: U64, round_id: str) -> U64:
    # birch sorts between alder and cedar, so its mask has a subtracted and an added stream.
    return mask("birch", TRIO["birch"], peers_for("birch", TRIO), round_id, true)


def bit_counts(words: U64) -> NDArray[np.int64]:
    bits = (words[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    counts: NDArray[np.int64] = bits.sum(axis=0, dtype=np.int64)
    return counts


def assert_uniform_words(words: U64) -> None:
    """Each bit is 1 in about half the samples; each byte value about equally often."""
    n = words.size
    sigma = math.sqrt(n) / 2
    deviations = np.abs(bit_counts(words) - n / 2)
    assert deviations.max() < 5 * sigma, f"bit {int(deviations.argmax())} is biased"
    # Chi-square over the 256 byte values, 255 degrees of freedom: mean 255, sd ~22.6.
    byte_counts = np.bincount(words.view(np.uint8), minlength=256)
    expected = words.size * 8 / 256
    chi_square = float(((byte_counts - expected) ** 2 / expected).sum())
    assert chi_square < 255 + 5 * math.sqrt(2 * 255)


@pytest.fixture(scope="module")
def hub_view() -> tuple[U64, U64]:
    rounds = [f"task-1/{i:04d}" for i in range(SAMPLE_ROUNDS)]
    seen_a = np.concatenate([birch_masked(A, r) for r in rounds])
    seen_b = np.concatenate([birch_masked(B, r) for r in rounds])
    return seen_a, seen_b


def test_masked_contributions_look_uniform_whatever_the_true_value(
    hub_view: tuple[U64, U64],
) -> None:
    seen_a, seen_b = hub_view
    assert_uniform_words(seen_a)
    assert_uniform_words(seen_b)


def test_the_uniformity_check_catches_bias() -> None:
    # A negative control: the checks above would fail on unmasked or weakly masked values.
    with pytest.raises(AssertionError):
        assert_uniform_words(np.tile(B, SAMPLE_ROUNDS))
    weak = mask_stream(bytes(32), SAMPLE_ROUNDS * WIDTH) & np.uint64(~(1 << 17) % RING)
    with pytest.raises(AssertionError, match="bit 17"):
        assert_uniform_words(weak)


def test_masked_minus_true_value_is_itself_uniform(hub_view: tuple[U64, U64]) -> None:
    seen_a, seen_b = hub_view
    # Subtracting either candidate true value from what the hub sees leaves noise, so the
    # hub cannot test a guess: it would need the mask.
    for seen in (seen_a, seen_b):
        for guess in (A, B):
            assert_uniform_words(seen - np.tile(guess, SAMPLE_ROUNDS))


def test_same_round_differs_by_exactly_the_true_difference() -> None:
    # Same round, same mask: the difference of two masked vectors is the difference of the
    # true values. That is why a round id must never be reused.
    difference = birch_masked(A, "task-1/x") - birch_masked(B, "task-1/x")
    assert np.array_equal(difference, A - B)
    # Across rounds it is noise.
    other = birch_masked(A, "task-1/x") - birch_masked(B, "task-1/y")
    assert not np.array_equal(other, A - B)


def test_masking_leaves_the_input_untouched() -> None:
    vector = B.copy()
    birch_masked(vector, "task-1/x")
    assert np.array_equal(vector, B)


# -- seeds and streams -------------------------------------------------------------------


@given(
    private_keys,
    private_keys,
    private_keys,
    st.lists(names, min_size=3, max_size=3, unique=True),
    round_ids,
    round_ids,
)
@settings(max_examples=30, deadline=None)
def test_seeds_are_symmetric_and_differ_per_round_and_pair(
    key_a: X25519PrivateKey,
    key_b: X25519PrivateKey,
    key_c: X25519PrivateKey,
    trio: list[str],
    round_1: str,
    round_2: str,
) -> None:
    a, b, c = trio
    ab = pairwise_seed(a, key_a, b, key_b.public_key(), round_1)
    ba = pairwise_seed(b, key_b, a, key_a.public_key(), round_1)
    assert ab == ba
    assert len(ab) == 32
    ac = pairwise_seed(a, key_a, c, key_c.public_key(), round_1)
    assert ac != ab
    if round_2 != round_1:
        assert pairwise_seed(a, key_a, b, key_b.public_key(), round_2) != ab


def test_seed_follows_the_documented_derivation() -> None:
    # Pins the wire format: nodes of different versions must derive the same seeds.
    alder, cedar = TRIO["alder"], TRIO["cedar"]
    info = b"accord/secagg/v1|round=task-1/r7|alder|cedar"
    assert seed_info("task-1/r7", "cedar", "alder") == info
    shared = alder.exchange(cedar.public_key())
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)
    assert pairwise_seed("cedar", cedar, "alder", alder.public_key(), "task-1/r7") == expected


def test_mask_stream_is_the_chacha20_keystream() -> None:
    # RFC 8439, appendix A.1, test vector 1: all-zero key, nonce and counter.
    block = bytes.fromhex(
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    )
    stream = mask_stream(bytes(32), 8)
    assert stream.dtype == np.uint64
    assert stream.tobytes() == np.frombuffer(block, dtype="<u8").astype(np.uint64).tobytes()
    # A longer stream extends a shorter one.
    assert np.array_equal(mask_stream(bytes(32), 100)[:8], stream)
    assert mask_stream(bytes(32), 0).size == 0


def test_low_order_peer_key_is_refused() -> None:
    with pytest.raises(TrustError, match="not usable"):
        pairwise_seed(
            "alder", TRIO["alder"], "birch", X25519PublicKey.from_public_bytes(bytes(32)), "r1"
        )


# -- dropouts ----------------------------------------------------------------------------


def test_a_dropped_member_breaks_the_sum_and_a_new_round_without_it_works() -> None:
    keys = {name: fixed_key(name) for name in ("ash", "beech", "elm", "oak")}
    values = {"ash": [1, 2], "beech": [10, -20], "elm": [100, 200], "oak": [-1000, 2000]}
    encoded = {name: encode(v, 0) for name, v in values.items()}
    first = Round.start(keys, task="task-9")

    masked = mask_all(keys, first, encoded)
    del masked["oak"]  # oak's node went down before delivering
    without_oak = [111, 182]
    assert decode(unmask_sum(list(masked.values())), 0).tolist() != without_oak
    with pytest.raises(TrustError, match=r"missing oak; the masks do not cancel"):
        first.require_complete(masked)

    second = first.without(first.members - masked.keys())
    assert second.members == {"ash", "beech", "elm"}
    assert second.round_id != first.round_id
    assert second.round_id.startswith("task-9/")
    remasked = mask_all(keys, second, encoded)
    second.require_complete(remasked)
    assert decode(unmask_sum(list(remasked.values())), 0).tolist() == without_oak


def test_round_validation() -> None:
    round_ = Round("r1", frozenset({"ash", "elm"}))
    assert round_.peers_of("ash") == {"elm"}
    with pytest.raises(TrustError, match="at least two"):
        Round("r1", frozenset({"ash"}))
    with pytest.raises(TrustError, match="round id"):
        Round("bad id|x", frozenset({"ash", "elm"}))
    with pytest.raises(TrustError, match="member name"):
        Round("r1", frozenset({"ash", "Elm"}))
    with pytest.raises(TrustError, match="not a member"):
        round_.peers_of("oak")
    with pytest.raises(TrustError, match="non-members: oak"):
        round_.require_complete(["ash", "elm", "oak"])
    with pytest.raises(TrustError, match="duplicate"):
        round_.require_complete(["ash", "elm", "elm"])
    with pytest.raises(TrustError, match="new round id"):
        round_.without(["ash"], round_id="r1")
    with pytest.raises(TrustError, match="cannot drop oak"):
        round_.without(["oak"])
    with pytest.raises(TrustError, match="at least two"):
        round_.without(["ash"])


# -- encoding ----------------------------------------------------------------------------


@given(st.lists(st.integers(-(2**50), 2**50), max_size=20), st.integers(0, MAX_SCALE_BITS))
@settings(max_examples=100, deadline=None)
def test_encode_decode_round_trip_on_the_grid(ints: list[int], scale_bits: int) -> None:
    values = [math.ldexp(k, -scale_bits) for k in ints]
    ring = encode(values, scale_bits, max_members=1)
    assert as_ints(ring) == [k % RING for k in ints]
    assert decode(ring, scale_bits).tolist() == values


@given(st.lists(st.floats(-1e6, 1e6), max_size=20), st.integers(0, 40))
@settings(max_examples=100, deadline=None)
def test_encode_rounds_to_the_nearest_step(values: list[float], scale_bits: int) -> None:
    decoded = decode(encode(values, scale_bits, max_members=1), scale_bits)
    step = math.ldexp(1.0, -scale_bits)
    for original, back in zip(values, decoded.tolist(), strict=True):
        assert abs(original - back) <= step / 2


def test_negatives_are_twos_complement() -> None:
    assert as_ints(encode([-1.0, -0.5, 0.25], 2)) == [RING - 4, RING - 2, 1]
    assert decode(np.array([RING - 1], dtype=np.uint64), 0).tolist() == [-1.0]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused(bad: float) -> None:
    with pytest.raises(DataError, match=r"value 1 is .*only finite numbers"):
        encode([1.0, bad], 8)


def test_values_that_could_overflow_the_total_are_refused() -> None:
    # 2^(63 - 16) / 4 = 2^45 is the bound for four members at 16 fractional bits.
    encode([2.0**45 - 1], 16, max_members=4)
    with pytest.raises(DataError, match=r"value 0 .* too large to sum over 4 members") as error:
        encode([-(2.0**45)], 16, max_members=4)
    assert "|sum| < 2^47" in str(error.value)
    assert "fewer scale_bits" in str(error.value)


def test_encode_refuses_bad_shapes_and_parameters() -> None:
    with pytest.raises(DataError, match="flat vector"):
        encode(np.zeros((2, 2)), 0)
    with pytest.raises(ValueError, match="scale_bits"):
        encode([1.0], MAX_SCALE_BITS + 1)
    with pytest.raises(ValueError, match="scale_bits"):
        encode([1.0], True)
    with pytest.raises(ValueError, match="max_members"):
        encode([1.0], 0, max_members=0)
    with pytest.raises(ValueError, match="uint64"):
        decode(np.zeros(2, dtype=np.int64), 0)


# -- refusals when masking and summing ---------------------------------------------------


def test_mask_refuses_no_peers_and_self_in_peers() -> None:
    vector = encode([1.0], 0)
    with pytest.raises(TrustError, match="no peers to mask with"):
        mask("alder", TRIO["alder"], {}, "r1", vector)
    with pytest.raises(TrustError, match=r"peers include the member itself \('alder'\)"):
        mask(
            "alder",
            TRIO["alder"],
            peers_for("alder", TRIO) | {"alder": TRIO["alder"].public_key()},
            "r1",
            vector,
        )
    with pytest.raises(ValueError, match="uint64"):
        mask("alder", TRIO["alder"], peers_for("alder", TRIO), "r1", np.zeros(1))  # type: ignore[arg-type]


def test_unmask_sum_refuses_nothing_and_mismatched_lengths() -> None:
    with pytest.raises(TrustError, match="no masked vectors"):
        unmask_sum([])
    with pytest.raises(TrustError, match="differ in length"):
        unmask_sum([encode([1.0], 0), encode([1.0, 2.0], 0)])

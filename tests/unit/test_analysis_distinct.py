"""Distinct patients across members: keyed tokens, HyperLogLog sketches, exact merges."""

from __future__ import annotations

import base64
import doctest
import hashlib
import hmac
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import accord.analysis.distinct as distinct_module
from accord.analysis.distinct import (
    Sketch,
    estimate,
    merge,
    normalise_national_id,
    patient_tokens,
)
from accord.errors import DataError, QueryError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))


def national_ids(n: int, start: int = 0) -> list[str]:
    return [f"NHS-{i:09d}" for i in range(start, start + n)]


def test_docstring_examples() -> None:
    assert doctest.testmod(distinct_module).failed == 0


def test_normalisation_strips_uppercases_and_drops_spaces_and_hyphens() -> None:
    assert normalise_national_id("  ab-12 34\t") == "AB1234"
    same = patient_tokens([" ab-12 34 ", "AB1234", "a-b-1-2-3-4"], KEY)
    assert len(set(same.tolist())) == 1
    assert patient_tokens(["AB1234"], KEY)[0] != patient_tokens(["AB.1234"], KEY)[0]


def test_tokens_are_the_first_64_bits_of_the_hmac() -> None:
    tokens = patient_tokens(["ab 1"], KEY)
    assert tokens.dtype == np.uint64
    digest = hmac.digest(KEY, b"AB1", "sha256")
    assert int(tokens[0]) == int.from_bytes(digest[:8], "big")


def test_pyarrow_arrays_give_the_same_tokens_as_lists() -> None:
    ids = national_ids(50)
    expected = patient_tokens(ids, KEY)
    np.testing.assert_array_equal(patient_tokens(pa.array(ids), KEY), expected)
    np.testing.assert_array_equal(patient_tokens(pa.array(ids, pa.large_string()), KEY), expected)
    np.testing.assert_array_equal(
        patient_tokens(pa.chunked_array([ids[:20], ids[20:]]), KEY), expected
    )


def test_different_keys_give_unrelated_tokens() -> None:
    ids = national_ids(2000)
    a = patient_tokens(ids, KEY)
    b = patient_tokens(ids, OTHER_KEY)
    assert not set(a.tolist()) & set(b.tolist())
    # About half the bits agree, as for independent random numbers (sd of the mean ~0.0025).
    same_bits = np.unpackbits((~(a ^ b)).view(np.uint8)).mean()
    assert abs(same_bits - 0.5) < 0.02
    # The same patients sketched under two keys: similar counts, different registers.
    sa, sb = Sketch.of(a, 12), Sketch.of(b, 12)
    assert sa.registers != sb.registers
    assert abs(estimate(sa).value - estimate(sb).value) < 0.1 * len(ids)


def test_tokens_are_never_the_unkeyed_hash_of_the_id() -> None:
    ids = national_ids(2000)
    tokens = set(patient_tokens(ids, KEY).tolist())
    texts = [normalise_national_id(i).encode() for i in ids]
    sha256 = {int.from_bytes(hashlib.sha256(t).digest()[:8], "big") for t in texts}
    empty_key = {int.from_bytes(hmac.digest(b"", t, "sha256")[:8], "big") for t in texts}
    assert not tokens & sha256
    assert not tokens & empty_key


@pytest.mark.parametrize("key", [b"", b"short", bytes(31), "a" * 40])
def test_short_or_non_byte_keys_are_refused(key: bytes) -> None:
    with pytest.raises(DataError, match="key: expected at least 32"):
        patient_tokens(["A1"], key)


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        (["A1", None], r"national_ids\[1\]: expected a string, got null"),
        (["A1", 7], r"national_ids\[1\]: expected a string, got a int"),
        (["A1", " - "], r"national_ids\[1\]: expected an id"),
    ],
)
def test_bad_ids_are_refused(ids: list[object], match: str) -> None:
    with pytest.raises(DataError, match=match):
        patient_tokens(ids, KEY)
    if None in ids:
        with pytest.raises(DataError, match=match):
            patient_tokens(pa.array(ids), KEY)


def test_registers_follow_the_published_rank_rule() -> None:
    p = 4
    tokens = np.array(
        [
            (3 << 60) | (1 << 50),  # register 3: 60 - 51 + 1 = rank 10
            (3 << 60) | (1 << 59),  # register 3: rank 1, smaller, ignored
            5 << 60,  # register 5: all zero -> rank 61
            (15 << 60) | 1,  # register 15: rank 60
        ],
        dtype=np.uint64,
    )
    counts = Sketch.of(tokens, p).counts()
    assert counts[3] == 10
    assert counts[5] == 61
    assert counts[15] == 60
    assert np.count_nonzero(counts) == 3


def test_planted_overlap_across_members_is_counted_once() -> None:
    rng = np.random.default_rng(2024)
    truth = 20_000
    patients = national_ids(truth)
    members: list[list[str]] = [[] for _ in range(4)]
    home = rng.integers(0, 4, truth)
    shared = rng.random(truth) < 0.2  # 20% of patients also attend a second member
    second = (home + rng.integers(1, 4, truth)) % 4
    for i, pid in enumerate(patients):
        members[home[i]].append(pid)
        if shared[i]:
            # Each member writes ids its own way; normalisation makes them agree.
            members[second[i]].append(pid.lower().replace("-", " "))
    overlap = int(shared.sum())
    tokens = [patient_tokens(ids, KEY) for ids in members]
    naive = sum(len(set(t.tolist())) for t in tokens)
    assert naive - truth == overlap

    p = 14
    sketches = [Sketch.from_json(Sketch.of(t, p).to_json()) for t in tokens]
    result = estimate(merge(sketches))
    se = result.relative_standard_error * truth
    assert result.relative_standard_error == pytest.approx(1.04 / math.sqrt(2**p))
    assert abs(result.value - truth) < 3 * se
    assert result.low < truth < result.high
    naive_estimate = sum(estimate(s).value for s in sketches)
    assert naive_estimate - result.value == pytest.approx(overlap, rel=0.15)


@pytest.mark.parametrize("p", [4, 8, 12, 16])
@pytest.mark.parametrize("n", [1, 30, 1_000, 25_000, 300_000])
def test_estimates_are_within_a_few_standard_errors(p: int, n: int) -> None:
    rng = np.random.default_rng(p * 1_000_003 + n)
    tokens = rng.integers(0, 2**64, n, dtype=np.uint64)
    result = estimate(Sketch.of(tokens, p))
    assert abs(result.value - n) <= max(4 * result.relative_standard_error * n, 1.0)


def test_small_sets_are_counted_almost_exactly_by_linear_counting() -> None:
    result = estimate(Sketch.of(patient_tokens(national_ids(100), KEY), 14))
    assert abs(result.value - 100) < 1
    assert estimate(Sketch.empty(14)).value == 0.0


def sketches_at(p: int) -> st.SearchStrategy[Sketch]:
    return st.lists(st.integers(0, 2**64 - 1), max_size=60).map(
        lambda values: Sketch.of(np.array(values, dtype=np.uint64), p)
    )


@settings(max_examples=60, deadline=None)
@given(data=st.data(), p=st.integers(4, 7))
def test_merge_is_commutative_associative_and_idempotent(data: st.DataObject, p: int) -> None:
    a, b, c = (data.draw(sketches_at(p)) for _ in range(3))
    assert merge([a, b]) == merge([b, a])
    assert merge([merge([a, b]), c]) == merge([a, merge([b, c])]) == merge([a, b, c])
    assert merge([a, a]) == a
    assert merge([a]) == a
    assert merge([a, Sketch.empty(p)]) == a


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(st.lists(st.integers(0, 2**64 - 1), max_size=40), min_size=1, max_size=5),
    p=st.integers(4, 18),
)
def test_merging_members_sketches_is_the_sketch_of_their_union(
    parts: list[list[int]], p: int
) -> None:
    sketches = [Sketch.of(np.array(part, dtype=np.uint64), p) for part in parts]
    union = np.array([v for part in parts for v in part], dtype=np.uint64)
    assert merge(sketches) == Sketch.of(union, p)


def test_precision_mismatch_is_refused() -> None:
    with pytest.raises(DataError, match="expected one precision, got p=10, 12"):
        merge([Sketch.empty(12), Sketch.empty(10)])
    with pytest.raises(DataError, match="at least one"):
        merge([])


@pytest.mark.parametrize("p", [3, 19, 14.0, True, "14"])
def test_out_of_range_precision_is_refused(p: object) -> None:
    with pytest.raises(QueryError, match="p: expected an integer precision from 4 to 18"):
        Sketch.of(np.array([1], dtype=np.uint64), p)  # type: ignore[arg-type]


def test_json_round_trip() -> None:
    sketch = Sketch.of(patient_tokens(national_ids(500), KEY), 10)
    wire = sketch.to_json()
    assert wire["kind"] == "hyperloglog"
    assert wire["p"] == 10
    assert base64.b64decode(wire["registers"]) == sketch.registers
    assert Sketch.from_json(wire) == sketch


GOOD = Sketch.of(np.array([1, 2, 3], dtype=np.uint64), 4).to_json()


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        ([1, 2], "sketch: expected a JSON object"),
        ({k: v for k, v in GOOD.items() if k != "registers"}, "missing registers"),
        ({**GOOD, "ids": ["A1"]}, "unexpected ids"),
        ({**GOOD, "kind": "bloom"}, "kind: expected 'hyperloglog'"),
        ({**GOOD, "tokens": "sha1"}, "tokens: expected"),
        ({**GOOD, "p": 3}, "p: expected an integer precision"),
        ({**GOOD, "p": "4"}, "p: expected an integer precision"),
        ({**GOOD, "p": 5}, "registers: expected 32 bytes for p=5"),
        ({**GOOD, "registers": 7}, "registers: expected a base64 string"),
        ({**GOOD, "registers": "!!!!"}, "registers: expected standard base64"),
        ({**GOOD, "registers": "é"}, "registers: expected standard base64"),
        (
            {**GOOD, "registers": base64.b64encode(bytes([62] * 16)).decode()},
            "registers: expected values at most 61 for p=4, found 62",
        ),
    ],
)
def test_malformed_json_is_refused(wire: object, match: str) -> None:
    with pytest.raises(DataError, match=match):
        Sketch.from_json(wire)


def test_non_token_input_is_refused() -> None:
    with pytest.raises(DataError, match="tokens: expected a one-dimensional array"):
        Sketch.of(np.array([-1, 2]), 10)
    with pytest.raises(DataError, match="tokens"):
        Sketch.of(np.array([0.5]), 10)
    with pytest.raises(DataError, match="tokens: expected integers"):
        Sketch.of([1, -1], 10)


def test_python_ints_are_accepted_as_tokens() -> None:
    values = [1, 2**64 - 1, 2**63]
    assert Sketch.of(values, 6) == Sketch.of(np.array(values, dtype=np.uint64), 6)

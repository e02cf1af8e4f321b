from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import TrustError
from accord.trust.canonical import b64url_decode, b64url_encode
from accord.trust.hpke import open_json, open_sealed, seal_json, seal_to

HUB_KEY = X25519PrivateKey.generate()
HUB_PUBLIC = HUB_KEY.public_key()
INFO = b"accord/result/v1|task=t1|member=st-marys"

infos = st.binary(min_size=1, max_size=64)


@given(st.binary(max_size=2048), infos)
@settings(max_examples=50)
def test_round_trip_for_any_bytes(plaintext: bytes, info: bytes) -> None:
    assert open_sealed(HUB_KEY, seal_to(HUB_PUBLIC, plaintext, info=info), info=info) == plaintext


def test_each_seal_is_different() -> None:
    assert seal_to(HUB_PUBLIC, b"42", info=INFO) != seal_to(HUB_PUBLIC, b"42", info=INFO)


@given(st.binary(max_size=256), st.data())
@settings(max_examples=100)
def test_any_flipped_bit_is_refused(plaintext: bytes, data: st.DataObject) -> None:
    ciphertext = bytearray(seal_to(HUB_PUBLIC, plaintext, info=INFO))
    bit = data.draw(st.integers(0, len(ciphertext) * 8 - 1), label="bit")
    ciphertext[bit // 8] ^= 1 << (bit % 8)

    with pytest.raises(TrustError, match="result could not be decrypted"):
        open_sealed(HUB_KEY, bytes(ciphertext), info=INFO)


@given(st.binary(max_size=256), infos.filter(lambda info: info != INFO))
@settings(max_examples=50)
def test_wrong_info_is_refused(plaintext: bytes, info: bytes) -> None:
    ciphertext = seal_to(HUB_PUBLIC, plaintext, info=INFO)

    with pytest.raises(TrustError, match="result could not be decrypted"):
        open_sealed(HUB_KEY, ciphertext, info=info)


def test_result_for_one_member_cannot_pass_as_anothers() -> None:
    sealed = seal_json(HUB_PUBLIC, {"count": 42}, info=INFO)
    other = b"accord/result/v1|task=t1|member=st-johns"

    with pytest.raises(TrustError, match="result could not be decrypted"):
        open_json(HUB_KEY, sealed, info=other)


def test_wrong_private_key_is_refused() -> None:
    ciphertext = seal_to(HUB_PUBLIC, b"42", info=INFO)

    with pytest.raises(TrustError, match="result could not be decrypted"):
        open_sealed(X25519PrivateKey.generate(), ciphertext, info=INFO)


@pytest.mark.parametrize("length", [0, 1, 32, 47])
def test_truncated_ciphertext_is_refused(length: int) -> None:
    ciphertext = seal_to(HUB_PUBLIC, b"42", info=INFO)

    with pytest.raises(TrustError, match="result could not be decrypted"):
        open_sealed(HUB_KEY, ciphertext[:length], info=INFO)


@pytest.mark.parametrize("info", [b"", "text"])
def test_info_must_be_non_empty_bytes(info: object) -> None:
    with pytest.raises(ValueError, match="info"):
        seal_to(HUB_PUBLIC, b"42", info=info)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="info"):
        open_sealed(HUB_KEY, b"", info=info)  # type: ignore[arg-type]


json_objects = st.dictionaries(
    st.text(max_size=8),
    st.none() | st.booleans() | st.integers() | st.text() | st.lists(st.integers(), max_size=4),
    max_size=6,
)


@given(json_objects)
@settings(max_examples=50)
def test_json_round_trip_through_base64url_text(value: dict[str, object]) -> None:
    sealed = seal_json(HUB_PUBLIC, value, info=INFO)

    assert isinstance(sealed, str)
    assert b64url_decode(sealed)  # travels as plain base64url text inside an envelope
    assert open_json(HUB_KEY, sealed, info=INFO) == value


def test_open_json_refuses_text_that_is_not_base64url() -> None:
    with pytest.raises(TrustError, match="not base64url"):
        open_json(HUB_KEY, "not base64!", info=INFO)


@pytest.mark.parametrize(
    ("plaintext", "expected"), [(b"\xff", "not JSON"), (b"[1, 2]", "not a JSON object")]
)
def test_open_json_refuses_authentic_non_objects(plaintext: bytes, expected: str) -> None:
    sealed = b64url_encode(seal_to(HUB_PUBLIC, plaintext, info=INFO))

    with pytest.raises(TrustError, match=expected):
        open_json(HUB_KEY, sealed, info=INFO)

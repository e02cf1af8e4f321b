"""Encryption to a recipient's public key: HPKE (RFC 9180) base mode, single shot.

The suite is DHKEM(X25519, HKDF-SHA256) with HKDF-SHA256 and AES-256-GCM. ``info`` binds
the ciphertext to its context, so a result sealed for one task and member cannot be
presented as another's::

    info = b"accord/result/v1|task=t1|member=st-marys"
    sealed = seal_json(hub_public.encryption_key, {"count": 42}, info=info)
    assert open_json(hub.encryption_key, sealed, info=info) == {"count": 42}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from accord.errors import TrustError
from accord.trust.canonical import b64url_decode, b64url_encode, canonical_json

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)

_UNREADABLE = (
    "result could not be decrypted: wrong key, wrong context (task or member), "
    "or the ciphertext was changed"
)


def seal_to(recipient: X25519PublicKey, plaintext: bytes, *, info: bytes) -> bytes:
    """Encrypt ``plaintext`` so only the holder of ``recipient``'s private key can read it."""
    _require_info(info)
    return SUITE.encrypt(plaintext, recipient, info=info)


def open_sealed(private: X25519PrivateKey, ciphertext: bytes, *, info: bytes) -> bytes:
    """Decrypt what :func:`seal_to` produced; ``TrustError`` if anything does not match."""
    _require_info(info)
    try:
        return SUITE.decrypt(ciphertext, private, info=info)
    except (InvalidTag, ValueError):
        # One message for every cause: telling them apart would help an attacker probe.
        raise TrustError(_UNREADABLE) from None


def seal_json(recipient: X25519PublicKey, value: Mapping[str, Any], *, info: bytes) -> str:
    """Encrypt a JSON object to ``recipient``; base64url text to carry inside an envelope."""
    return b64url_encode(seal_to(recipient, canonical_json(dict(value)), info=info))


def open_json(private: X25519PrivateKey, sealed: str, *, info: bytes) -> dict[str, Any]:
    """Decrypt :func:`seal_json` output back to the JSON object."""
    try:
        ciphertext = b64url_decode(sealed)
    except ValueError:
        raise TrustError(f"{_UNREADABLE} (not base64url text)") from None
    plaintext = open_sealed(private, ciphertext, info=info)
    try:
        value = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        # Authentic but not JSON: the sender has a bug, so name it rather than the crypto.
        raise TrustError("decrypted result is not JSON") from None
    if not isinstance(value, dict):
        raise TrustError(f"decrypted result is not a JSON object (got {type(value).__name__})")
    return value


def _require_info(info: bytes) -> None:
    # An empty info binds nothing, which is exactly the mistake it exists to prevent.
    if not isinstance(info, bytes) or not info:
        raise ValueError("info: expected non-empty bytes naming what the ciphertext is for")

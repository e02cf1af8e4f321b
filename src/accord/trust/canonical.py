"""The byte encodings that signatures and hashes are computed over.

A signature is only checkable if signer and verifier hash the same bytes, so every signed
or hashed structure goes through :func:`canonical_json`, and every key, nonce and
signature travels as unpadded base64url text that has exactly one spelling.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` as canonical JSON: sorted keys, no spaces, UTF-8, no NaN/Infinity.

    >>> canonical_json({"b": 1, "a": "é"})
    b'{"a":"\\xc3\\xa9","b":1}'

    Raises ``ValueError`` for anything JSON cannot represent exactly.
    """
    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except (TypeError, ValueError) as error:
        # UnicodeEncodeError (a lone surrogate) is a ValueError too.
        raise ValueError(f"value has no canonical JSON form: {error}") from None
    except RecursionError:
        raise ValueError("value has no canonical JSON form: nested too deeply") from None


def b64url_encode(raw: bytes) -> str:
    """Unpadded base64url text for ``raw``."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Bytes from unpadded base64url text; ``ValueError`` unless ``text`` is the one spelling.

    The standard decoder skips stray characters and ignores the unused low bits of the last
    character, so several strings decode to the same bytes. Accepting only the canonical
    spelling means a changed character in a signature or nonce is always a changed value.
    """
    if not isinstance(text, str) or not _BASE64URL.fullmatch(text):
        raise ValueError("expected unpadded base64url text (A-Z a-z 0-9 - _)")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        raise ValueError("base64url text has an impossible length") from None
    if b64url_encode(raw) != text:
        raise ValueError("base64url text is not in canonical form")
    return raw

"""Identities: a name with an Ed25519 signing key and an X25519 encryption key.

Every principal (the hub, each member's node, each researcher) has one. The private half
lives in ``<name>.key``, readable by its owner only; the public half in ``<name>.pub``,
which is what gets handed to peers and registered at the hub::

    identity = generate_identity("st-marys")
    key_path, pub_path = write_identity(identity, Path("keys"))
    assert load_identity(key_path).public.fingerprint() == identity.public.fingerprint()

Both files are small JSON objects holding raw 32-byte keys as unpadded base64url text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from accord.errors import KeyFileError
from accord.trust.canonical import b64url_decode, b64url_encode

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
NAME_RULE = "1-63 lowercase letters, digits or hyphens, not starting with a hyphen"
KEY_BYTES = 32
PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"

PRIVATE_FIELDS = ("name", "signing_key", "encryption_key")
PUBLIC_FIELDS = ("name", "verify_key", "encryption_key")


def is_valid_name(name: object) -> TypeGuard[str]:
    """Whether ``name`` can name a principal (and so a key file)."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def check_name(name: object, *, source: str = "identity") -> str:
    """Return ``name`` if it can name a principal, else raise ``KeyFileError``."""
    if not is_valid_name(name):
        raise KeyFileError(
            f"{source}: field 'name': {name!r:.70} is not a valid name ({NAME_RULE})"
        )
    return name


@dataclass(frozen=True)
class PublicIdentity:
    """What a peer knows about a principal: its name and public keys."""

    name: str
    verify_key: Ed25519PublicKey
    encryption_key: X25519PublicKey

    def __post_init__(self) -> None:
        check_name(self.name, source="public identity")

    def to_json(self) -> dict[str, str]:
        """The ``.pub`` file's content: name and raw public keys as base64url."""
        return {
            "name": self.name,
            "verify_key": b64url_encode(self.verify_key.public_bytes_raw()),
            "encryption_key": b64url_encode(self.encryption_key.public_bytes_raw()),
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str = "public identity") -> PublicIdentity:
        """Parse :meth:`to_json` output; ``KeyFileError`` naming the bad field otherwise."""
        fields = _require_fields(data, PUBLIC_FIELDS, source=source)
        return cls(
            name=check_name(fields["name"], source=source),
            verify_key=Ed25519PublicKey.from_public_bytes(
                _key_bytes(fields, "verify_key", source=source)
            ),
            encryption_key=X25519PublicKey.from_public_bytes(
                _key_bytes(fields, "encryption_key", source=source)
            ),
        )

    def fingerprint(self) -> str:
        """A short, stable label for the verify key, for people to compare out of band.

        >>> generate_identity("hub").public.fingerprint()  # doctest: +SKIP
        'SHA256:3f2a9c0d41b7e8a5'
        """
        digest = hashlib.sha256(self.verify_key.public_bytes_raw()).hexdigest()
        return f"SHA256:{digest[:16]}"


@dataclass(frozen=True)
class Identity:
    """A principal's name with its private keys; never leaves its owner's machine."""

    name: str
    # Kept out of repr so a logged Identity cannot leak anything about the keys.
    signing_key: Ed25519PrivateKey = field(repr=False)
    encryption_key: X25519PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        check_name(self.name)

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity(
            name=self.name,
            verify_key=self.signing_key.public_key(),
            encryption_key=self.encryption_key.public_key(),
        )

    def _private_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "signing_key": b64url_encode(self.signing_key.private_bytes_raw()),
            "encryption_key": b64url_encode(self.encryption_key.private_bytes_raw()),
        }


def generate_identity(name: str) -> Identity:
    """A new identity with fresh random keys."""
    return Identity(
        name=check_name(name),
        signing_key=Ed25519PrivateKey.generate(),
        encryption_key=X25519PrivateKey.generate(),
    )


def write_identity(
    identity: Identity, directory: Path, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``<name>.key`` (mode 0600) and ``<name>.pub`` (mode 0644) into ``directory``.

    Each file is written to a temporary file beside it and renamed into place, so a crash
    leaves either the old file or the new one, never half a key. Existing files are kept
    unless ``overwrite`` is true. Returns ``(key_path, pub_path)``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / f"{identity.name}{PRIVATE_SUFFIX}"
    pub_path = directory / f"{identity.name}{PUBLIC_SUFFIX}"
    if not overwrite:
        for path in (key_path, pub_path):
            if path.exists():
                raise KeyFileError(
                    f"refusing to overwrite existing key file {path}",
                    hint="move it aside or choose another name; peers trust the old key",
                )
    # The private key first: a .pub without its .key is useless, the reverse is not.
    for path, content, mode in (
        (key_path, identity._private_json(), 0o600),
        (pub_path, identity.public.to_json(), 0o644),
    ):
        try:
            _write_atomically(path, _json_bytes(content), mode=mode)
        except OSError as error:
            raise KeyFileError(f"cannot write key file {path}: {error.strerror}") from None
    return key_path, pub_path


def load_identity(path: Path) -> Identity:
    """Read a private ``.key`` file written by :func:`write_identity`.

    Refuses (``KeyFileError``) a missing, unreadable or malformed file, a ``.pub`` file, and
    a key file that anyone but its owner can read.
    """
    source = f"key file {path}"
    data = _read_json(path, source=source)
    if isinstance(data, dict) and "verify_key" in data and "signing_key" not in data:
        raise KeyFileError(
            f"{path} is a public key file; a private key file (.key) is needed here",
            hint=f"use {path.with_suffix(PRIVATE_SUFFIX)} if that is the matching private key",
        )
    _refuse_shared_private_key(path)
    fields = _require_fields(data, PRIVATE_FIELDS, source=source)
    return Identity(
        name=check_name(fields["name"], source=source),
        signing_key=Ed25519PrivateKey.from_private_bytes(
            _key_bytes(fields, "signing_key", source=source)
        ),
        encryption_key=X25519PrivateKey.from_private_bytes(
            _key_bytes(fields, "encryption_key", source=source)
        ),
    )


def load_public(path: Path) -> PublicIdentity:
    """Read a public ``.pub`` file; refuses a private ``.key`` file so it is not passed on."""
    source = f"public key file {path}"
    data = _read_json(path, source=source)
    if isinstance(data, dict) and "signing_key" in data:
        raise KeyFileError(
            f"{path} holds a private key; a public key file (.pub) is needed here",
            hint="never hand a .key file to a peer; give them the .pub file beside it",
        )
    return PublicIdentity.from_json(data, source=source)


# -- file handling ---------------------------------------------------------------------


def _json_bytes(data: Mapping[str, str]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _write_atomically(path: Path, content: bytes, *, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # Created with its final mode, so a private key is never readable by others, not even
    # for the moment between writing and renaming.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed a 0644 .pub
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_json(path: Path, *, source: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(f"{source} does not exist", hint="check the path") from None
    except IsADirectoryError:
        raise KeyFileError(f"{source} is a directory, not a key file") from None
    except PermissionError:
        raise KeyFileError(
            f"{source} cannot be read: permission denied",
            hint="run as the user that owns the key",
        ) from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{source} is not a key file (not UTF-8 text)") from None
    except OSError as error:
        raise KeyFileError(f"{source} cannot be read: {error.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        # The message carries a position only, never the (secret) content.
        raise KeyFileError(
            f"{source} is not valid JSON (line {error.lineno}, column {error.colno})"
        ) from None


def _refuse_shared_private_key(path: Path) -> None:
    if os.name == "nt":  # POSIX mode bits say nothing about Windows ACLs
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"private key file {path} is accessible by group or others (mode {mode:04o})",
            hint=f"chmod 600 {path}",
        )


def _require_fields(data: Any, names: tuple[str, ...], *, source: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise KeyFileError(f"{source}: expected a JSON object, got {type(data).__name__}")
    for name in names:
        if name not in data:
            raise KeyFileError(f"{source}: missing field {name!r}")
    unknown = sorted(str(key) for key in data if key not in names)
    if unknown:
        raise KeyFileError(
            f"{source}: unexpected field {unknown[0]!r} (expected {', '.join(names)})"
        )
    return data


def _key_bytes(fields: Mapping[str, Any], name: str, *, source: str) -> bytes:
    # Never echo the value: for a private key file it is the secret itself.
    value = fields[name]
    if not isinstance(value, str):
        raise KeyFileError(
            f"{source}: field {name!r}: expected base64url text, got {type(value).__name__}"
        )
    try:
        raw = b64url_decode(value)
    except ValueError as error:
        raise KeyFileError(f"{source}: field {name!r}: {error}") from None
    if len(raw) != KEY_BYTES:
        raise KeyFileError(
            f"{source}: field {name!r}: expected a {KEY_BYTES}-byte key, got {len(raw)} bytes"
        )
    return raw

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.errors import KeyFileError
from accord.trust.canonical import b64url_decode, b64url_encode
from accord.trust.keys import (
    Identity,
    PublicIdentity,
    generate_identity,
    load_identity,
    load_public,
    write_identity,
)

posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_identity_loads_back_with_the_same_keys(tmp_path: Path) -> None:
    identity = generate_identity("st-marys")

    key_path, pub_path = write_identity(identity, tmp_path)
    loaded = load_identity(key_path)

    assert (key_path.name, pub_path.name) == ("st-marys.key", "st-marys.pub")
    assert loaded.name == "st-marys"
    assert loaded.public == identity.public
    assert load_public(pub_path) == identity.public
    message = b"same key"
    identity.public.verify_key.verify(loaded.signing_key.sign(message), message)


@posix_only
def test_private_key_file_is_0600_and_public_file_0644(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        key_path, pub_path = write_identity(generate_identity("hub"), tmp_path)
    finally:
        os.umask(old_umask)

    assert mode_of(key_path) == 0o600
    assert mode_of(pub_path) == 0o644


def test_writing_leaves_no_temporary_files(tmp_path: Path) -> None:
    write_identity(generate_identity("hub"), tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.key", "hub.pub"]


def test_refuses_to_overwrite_an_existing_key(tmp_path: Path) -> None:
    first = generate_identity("hub")
    key_path, _ = write_identity(first, tmp_path)

    with pytest.raises(KeyFileError, match="refusing to overwrite") as caught:
        write_identity(generate_identity("hub"), tmp_path)

    assert caught.value.hint is not None
    assert load_identity(key_path).public == first.public


def test_overwrite_replaces_both_files(tmp_path: Path) -> None:
    write_identity(generate_identity("hub"), tmp_path)
    second = generate_identity("hub")

    key_path, pub_path = write_identity(second, tmp_path, overwrite=True)

    assert load_identity(key_path).public == second.public
    assert load_public(pub_path) == second.public


@posix_only
def test_refuses_a_private_key_readable_by_others(tmp_path: Path) -> None:
    key_path, _ = write_identity(generate_identity("hub"), tmp_path)
    key_path.chmod(0o644)

    with pytest.raises(KeyFileError) as caught:
        load_identity(key_path)

    assert "group or others" in caught.value.message
    assert caught.value.hint == f"chmod 600 {key_path}"


@posix_only
def test_refuses_a_group_readable_private_key(tmp_path: Path) -> None:
    key_path, _ = write_identity(generate_identity("hub"), tmp_path)
    key_path.chmod(0o640)

    with pytest.raises(KeyFileError, match="chmod 600"):
        load_identity(key_path)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_identity(tmp_path / "nobody.key")
    with pytest.raises(KeyFileError, match="does not exist"):
        load_public(tmp_path / "nobody.pub")


def test_directory_instead_of_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="is a directory"):
        load_identity(tmp_path)


def write_private(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    return path


def test_malformed_json_names_the_position_not_the_content(tmp_path: Path) -> None:
    path = write_private(tmp_path / "hub.key", '{"signing_key": "c2VjcmV0"')

    with pytest.raises(KeyFileError, match=r"not valid JSON \(line 1") as caught:
        load_identity(path)

    assert "c2VjcmV0" not in str(caught.value)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "hub.key"
    path.write_bytes(b"\xff\xfe\x00")
    path.chmod(0o600)

    with pytest.raises(KeyFileError, match="not UTF-8"):
        load_identity(path)


def private_fields(identity: Identity) -> dict[str, str]:
    return {
        "name": identity.name,
        "signing_key": b64url_encode(identity.signing_key.private_bytes_raw()),
        "encryption_key": b64url_encode(identity.encryption_key.private_bytes_raw()),
    }


@pytest.mark.parametrize("field", ["signing_key", "encryption_key"])
def test_wrong_key_length_names_the_field_and_hides_the_value(tmp_path: Path, field: str) -> None:
    fields = private_fields(generate_identity("hub"))
    fields[field] = b64url_encode(b64url_decode(fields[field])[:31])
    path = write_private(tmp_path / "hub.key", json.dumps(fields))

    with pytest.raises(KeyFileError, match=f"field '{field}': expected a 32-byte key, got 31"):
        load_identity(path)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"signing_key": None}, "field 'signing_key': expected base64url text, got NoneType"),
        ({"signing_key": "not base64!"}, "field 'signing_key': expected unpadded base64url"),
        ({"name": "Hub"}, "field 'name': 'Hub' is not a valid name"),
        ({"comment": "x"}, "unexpected field 'comment'"),
    ],
)
def test_bad_private_fields(tmp_path: Path, change: dict[str, object], expected: str) -> None:
    fields: dict[str, object] = {**private_fields(generate_identity("hub")), **change}
    path = write_private(tmp_path / "hub.key", json.dumps(fields))

    with pytest.raises(KeyFileError, match=re.escape(expected)):
        load_identity(path)


def test_missing_private_field(tmp_path: Path) -> None:
    fields = private_fields(generate_identity("hub"))
    del fields["encryption_key"]
    path = write_private(tmp_path / "hub.key", json.dumps(fields))

    with pytest.raises(KeyFileError, match="missing field 'encryption_key'"):
        load_identity(path)


def test_json_that_is_not_an_object(tmp_path: Path) -> None:
    path = write_private(tmp_path / "hub.key", "[1, 2]")

    with pytest.raises(KeyFileError, match="expected a JSON object, got list"):
        load_identity(path)


def test_public_file_given_where_a_private_key_is_expected(tmp_path: Path) -> None:
    _, pub_path = write_identity(generate_identity("hub"), tmp_path)

    with pytest.raises(KeyFileError, match="is a public key file"):
        load_identity(pub_path)


def test_private_file_given_where_a_public_key_is_expected(tmp_path: Path) -> None:
    key_path, _ = write_identity(generate_identity("hub"), tmp_path)

    with pytest.raises(KeyFileError, match="holds a private key"):
        load_public(key_path)


def test_error_messages_are_one_line(tmp_path: Path) -> None:
    path = write_private(tmp_path / "hub.key", "{\n\n")

    with pytest.raises(KeyFileError) as caught:
        load_identity(path)

    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["hub", "st-marys", "a", "0", "a" * 63, "node-1-2"])
def test_valid_names(name: str) -> None:
    assert generate_identity(name).name == name


@pytest.mark.parametrize("name", ["", "-hub", "Hub", "st_marys", "a" * 64, "hub\n", "hub.key", "é"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(KeyFileError, match="not a valid name"):
        generate_identity(name)


def test_public_identity_json_round_trip() -> None:
    public = generate_identity("hub").public

    data = public.to_json()

    assert set(data) == {"name", "verify_key", "encryption_key"}
    assert len(b64url_decode(data["verify_key"])) == 32
    assert PublicIdentity.from_json(data) == public


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("hub", "expected a JSON object, got str"),
        ({"name": "hub", "encryption_key": "x"}, "missing field 'verify_key'"),
        ({"name": "hub", "verify_key": "AAAA", "encryption_key": "AAAA"}, "field 'verify_key'"),
        ({"name": 7, "verify_key": "AAAA", "encryption_key": "AAAA"}, "field 'name'"),
    ],
)
def test_public_identity_from_bad_json_names_the_field(data: object, expected: str) -> None:
    with pytest.raises(KeyFileError, match=expected):
        PublicIdentity.from_json(data)


def test_fingerprint_is_stable_and_short() -> None:
    public = generate_identity("hub").public

    fingerprint = public.fingerprint()

    assert fingerprint.startswith("SHA256:")
    assert len(fingerprint) == len("SHA256:") + 16
    assert PublicIdentity.from_json(public.to_json()).fingerprint() == fingerprint
    assert generate_identity("hub").public.fingerprint() != fingerprint


def test_identity_repr_shows_no_key_material() -> None:
    assert repr(generate_identity("hub")) == "Identity(name='hub')"


@given(st.binary(max_size=80))
def test_base64url_round_trip(raw: bytes) -> None:
    assert b64url_decode(b64url_encode(raw)) == raw


@pytest.mark.parametrize("text", ["AB", "AAA=", "A A", "A+/A", "A"])
def test_base64url_accepts_one_spelling_only(text: str) -> None:
    # "AB" decodes to the same byte as "AA" in lenient decoders; refusing it keeps a
    # changed character in a signature from going unnoticed.
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(text)

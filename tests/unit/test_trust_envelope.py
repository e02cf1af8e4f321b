from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accord.errors import TrustError
from accord.trust.canonical import b64url_decode, b64url_encode, canonical_json
from accord.trust.envelope import (
    InMemoryNonceStore,
    ReplayGuard,
    SqliteNonceStore,
    open_envelope,
    seal,
)
from accord.trust.keys import Identity, generate_identity

NOW = 1_750_000_000.0
HUB = generate_identity("hub")
NODE = generate_identity("st-marys")
KNOWN = {HUB.name: HUB.public.verify_key, NODE.name: NODE.public.verify_key}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


def keys(name: str) -> Ed25519PublicKey | None:
    return KNOWN.get(name)


def sealed(
    payload: dict[str, Any] | None = None,
    *,
    sender: Identity = NODE,
    recipient: str = "hub",
    kind: str = "task.result",
    now: float = NOW,
) -> dict[str, Any]:
    return seal(
        payload if payload is not None else {"task_id": "t1", "count": 12},
        sender=sender.name,
        recipient=recipient,
        kind=kind,
        key=sender.signing_key,
        now=now,
    )


def opened(
    envelope: object,
    *,
    guard: ReplayGuard | None = None,
    kind: str | None = "task.result",
    now: float = NOW,
    lookup: Callable[[str], Ed25519PublicKey | None] = keys,
) -> dict[str, Any]:
    return open_envelope(
        envelope,
        keys=lookup,
        recipient="hub",
        guard=guard if guard is not None else ReplayGuard(),
        kind=kind,
        now=now,
    )


def over_the_wire(envelope: dict[str, Any]) -> Any:
    return json.loads(json.dumps(envelope))


def test_envelope_format() -> None:
    envelope = sealed({"task_id": "t1"})

    assert set(envelope) == {"v", "kind", "sender", "recipient", "nonce", "ts", "payload", "sig"}
    assert envelope["v"] == 1
    assert (envelope["kind"], envelope["sender"], envelope["recipient"]) == (
        "task.result",
        "st-marys",
        "hub",
    )
    assert len(b64url_decode(envelope["nonce"])) == 16
    assert envelope["ts"] == NOW
    assert envelope["payload"] == {"task_id": "t1"}
    unsigned = {k: v for k, v in envelope.items() if k != "sig"}
    NODE.public.verify_key.verify(b64url_decode(envelope["sig"]), canonical_json(unsigned))


def test_nonces_differ() -> None:
    assert sealed()["nonce"] != sealed()["nonce"]


def test_seal_normalises_the_payload_to_what_the_recipient_will_see() -> None:
    envelope = sealed({"pair": (1, 2)})

    assert envelope["payload"] == {"pair": [1, 2]}
    assert opened(over_the_wire(envelope)) == {"pair": [1, 2]}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"sender": "Hub"}, "sender"),
        ({"recipient": "a b"}, "recipient"),
        ({"kind": "Task Run"}, "kind"),
        ({"payload": {"x": float("nan")}}, "canonical JSON"),
        ({"payload": {"x": object()}}, "canonical JSON"),
    ],
)
def test_seal_refuses_bad_arguments(arguments: dict[str, Any], expected: str) -> None:
    call: dict[str, Any] = {
        "payload": {},
        "sender": "hub",
        "recipient": "st-marys",
        "kind": "task.run",
        "key": HUB.signing_key,
        **arguments,
    }
    payload = call.pop("payload")

    with pytest.raises(ValueError, match=expected):
        seal(payload, **call)


@given(payloads)
@settings(max_examples=60)
def test_round_trip_for_any_json_payload(payload: dict[str, Any]) -> None:
    envelope = over_the_wire(sealed(payload))

    assert canonical_json(opened(envelope)) == canonical_json(payload)


@given(payloads, st.data())
@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
def test_any_single_byte_change_to_the_signature_fails(
    payload: dict[str, Any], data: st.DataObject
) -> None:
    envelope = over_the_wire(sealed(payload))
    signature = bytearray(b64url_decode(envelope["sig"]))
    index = data.draw(st.integers(0, len(signature) - 1), label="index")
    signature[index] ^= data.draw(st.integers(1, 255), label="xor")
    envelope["sig"] = b64url_encode(bytes(signature))

    with pytest.raises(TrustError, match="bad signature"):
        opened(envelope)


@given(payloads.filter(bool), st.data())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_any_single_byte_change_to_the_payload_fails(
    payload: dict[str, Any], data: st.DataObject
) -> None:
    envelope = sealed(payload)
    wire = canonical_json(envelope)
    payload_bytes = canonical_json(envelope["payload"])
    start = wire.index(b'"payload":' + payload_bytes) + len(b'"payload":')
    index = data.draw(st.integers(start, start + len(payload_bytes) - 1), label="index")
    # Mostly letters and digits, which keep the JSON valid far more often than punctuation.
    replacement = data.draw(
        (st.sampled_from(b"0123456789aeftnuxzAEZ") | st.integers(0x20, 0x7E)).filter(
            lambda b: b != wire[index]
        ),
        label="replacement",
    )
    changed = wire[:index] + bytes([replacement]) + wire[index + 1 :]
    try:
        received = json.loads(changed.decode("utf-8"))
    except ValueError:
        event("change left invalid JSON")  # the transport refuses it before it reaches us
        return
    try:
        same = canonical_json(received) == wire
    except ValueError:
        same = False
    if same:
        event("change respelled the same value")  # 1e5 and 1E5: nothing was changed
        return

    with pytest.raises(TrustError):
        opened(received)


def test_tampered_field_fails_the_signature() -> None:
    envelope = sealed()
    envelope["payload"]["count"] = 13

    with pytest.raises(TrustError, match="bad signature on envelope from 'st-marys'"):
        opened(envelope)


def test_error_never_echoes_the_payload() -> None:
    envelope = sealed({"secret": "DO-NOT-ECHO"})
    envelope["payload"]["secret"] = "DO-NOT-ECHO-EITHER"

    with pytest.raises(TrustError) as caught:
        opened(envelope)

    assert "DO-NOT-ECHO" not in str(caught.value)


def test_replayed_nonce_is_refused() -> None:
    guard = ReplayGuard()
    envelope = sealed()
    opened(over_the_wire(envelope), guard=guard)

    with pytest.raises(TrustError, match="replayed envelope from 'st-marys'"):
        opened(over_the_wire(envelope), guard=guard, now=NOW + 1)


def test_same_nonce_from_two_senders_is_two_messages() -> None:
    guard = ReplayGuard()
    from_node = sealed()
    from_hub = sealed(sender=HUB)
    from_hub["nonce"] = from_node["nonce"]
    unsigned = {k: v for k, v in from_hub.items() if k != "sig"}
    from_hub["sig"] = b64url_encode(HUB.signing_key.sign(canonical_json(unsigned)))

    opened(from_node, guard=guard)
    opened(from_hub, guard=guard)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(-301.0, "stale envelope"), (301.0, "in the future"), (-3600.0, "stale"), (1e9, "future")],
)
def test_timestamp_outside_the_window_is_refused(offset: float, expected: str) -> None:
    with pytest.raises(TrustError, match=expected):
        opened(sealed(now=NOW + offset))


@pytest.mark.parametrize("offset", [-300.0, -299.5, 0.0, 299.5, 300.0])
def test_timestamp_inside_the_window_is_accepted(offset: float) -> None:
    assert opened(sealed(now=NOW + offset)) == {"task_id": "t1", "count": 12}


def test_window_is_configurable() -> None:
    guard = ReplayGuard(window=10)

    with pytest.raises(TrustError, match="stale"):
        opened(sealed(now=NOW - 11), guard=guard)


@pytest.mark.parametrize("window", [0, -1, float("inf"), float("nan")])
def test_window_must_be_positive_and_finite(window: float) -> None:
    with pytest.raises(ValueError, match="window"):
        ReplayGuard(window=window)


def test_unknown_signer_is_refused() -> None:
    stranger = generate_identity("stranger")

    with pytest.raises(TrustError, match="unknown signer 'stranger'"):
        opened(sealed(sender=stranger))


def test_known_name_with_another_key_is_refused() -> None:
    impostor = Identity("st-marys", generate_identity("x").signing_key, NODE.encryption_key)

    with pytest.raises(TrustError, match="bad signature"):
        opened(sealed(sender=impostor))


def test_wrong_recipient_is_refused() -> None:
    with pytest.raises(TrustError, match="addressed to 'other-hub' was delivered to 'hub'"):
        opened(sealed(recipient="other-hub"))


def test_wrong_kind_is_refused() -> None:
    with pytest.raises(TrustError, match=r"unexpected message kind 'task\.refused'"):
        opened(sealed(kind="task.refused"), kind="task.result")


def test_kind_is_not_checked_when_not_asked() -> None:
    assert opened(sealed(kind="task.refused"), kind=None)


def test_forged_envelope_does_not_use_up_the_nonce() -> None:
    guard = ReplayGuard()
    genuine = sealed()
    forged = dict(genuine, payload={"task_id": "t1", "count": 9999})

    with pytest.raises(TrustError, match="bad signature"):
        opened(forged, guard=guard)
    assert opened(genuine, guard=guard)["count"] == 12


def test_unknown_signer_does_not_use_up_the_nonce() -> None:
    guard = ReplayGuard()
    envelope = sealed()
    known: dict[str, Ed25519PublicKey] = {}

    with pytest.raises(TrustError, match="unknown signer"):
        opened(envelope, guard=guard, lookup=known.get)
    assert opened(envelope, guard=guard)


def test_checks_run_in_order_recipient_before_signer() -> None:
    envelope = sealed(sender=generate_identity("stranger"), recipient="elsewhere")

    with pytest.raises(TrustError, match="addressed to 'elsewhere'"):
        opened(envelope)


def test_signature_is_checked_before_the_kind() -> None:
    envelope = sealed(kind="task.refused")
    envelope["payload"]["count"] = 1

    with pytest.raises(TrustError, match="bad signature"):
        opened(envelope, kind="task.result")


def with_change(field: str, value: Any) -> dict[str, Any]:
    envelope = sealed()
    envelope[field] = value
    return envelope


def without(field: str) -> dict[str, Any]:
    envelope = sealed()
    del envelope[field]
    return envelope


@pytest.mark.parametrize(
    ("envelope", "expected"),
    [
        ([1, 2], "expected a JSON object, got list"),
        ("envelope", "expected a JSON object, got str"),
        *[(without(field), f"missing field '{field}'") for field in ("v", "nonce", "sig", "ts")],
        (with_change("extra", 1), "unexpected field 'extra'"),
        (with_change("v", 2), "unsupported version 2"),
        (with_change("v", True), "unsupported version True"),
        (with_change("v", "1"), "unsupported version '1'"),
        (with_change("sender", 7), "field 'sender'"),
        (with_change("sender", "St Marys"), "field 'sender'"),
        (with_change("recipient", None), "field 'recipient'"),
        (with_change("kind", ""), "field 'kind'"),
        (with_change("nonce", "AAAA"), "field 'nonce': expected 16 bytes, got 3"),
        (with_change("nonce", "not base64!"), "field 'nonce': expected base64url"),
        (with_change("sig", 12), "field 'sig': expected base64url"),
        (with_change("ts", "1750000000"), "field 'ts'"),
        (with_change("ts", True), "field 'ts'"),
        (with_change("ts", float("nan")), "field 'ts'"),
        (with_change("ts", 10**400), "field 'ts'"),
        (with_change("payload", [1]), "field 'payload'"),
        (with_change("payload", {"x": float("inf")}), "no canonical JSON form"),
        (with_change("payload", {"x": "\ud800"}), "no canonical JSON form"),
    ],
)
def test_malformed_envelopes_are_refused(envelope: object, expected: str) -> None:
    with pytest.raises(TrustError, match="malformed envelope") as caught:
        opened(envelope)

    assert expected in caught.value.message


# -- nonce stores: one contract, run against every implementation ----------------------


Store = InMemoryNonceStore | SqliteNonceStore


class NonceStoreContract:
    @pytest.fixture
    def store(self, tmp_path: Path) -> Store | Iterator[Store]:
        raise NotImplementedError

    def test_first_use_is_accepted_and_the_second_refused(self, store: Store) -> None:
        assert store.add_if_absent("st-marys", "n1", NOW + 300)
        assert not store.add_if_absent("st-marys", "n1", NOW + 300)

    def test_nonces_are_per_sender(self, store: Store) -> None:
        assert store.add_if_absent("st-marys", "n1", NOW + 300)
        assert store.add_if_absent("hub", "n1", NOW + 300)

    def test_purge_forgets_only_expired_nonces(self, store: Store) -> None:
        store.add_if_absent("a", "old", NOW - 1)
        store.add_if_absent("a", "due-now", NOW)
        store.add_if_absent("a", "new", NOW + 1)

        store.purge(NOW)

        assert store.add_if_absent("a", "old", NOW + 300)
        assert not store.add_if_absent("a", "due-now", NOW + 300)
        assert not store.add_if_absent("a", "new", NOW + 300)

    def test_guard_memory_stays_bounded(self, store: Store) -> None:
        guard = ReplayGuard(store, window=10)
        for second in range(100):
            opened(sealed(now=NOW + second), guard=guard, now=NOW + second)

        # Only the last window's nonces (ts in [now - 10, now]) are still remembered.
        assert len(store) == 11


class TestInMemoryNonceStore(NonceStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        return InMemoryNonceStore()


class TestSqliteNonceStore(NonceStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        with SqliteNonceStore(tmp_path / "nonces.db") as store:
            yield store

    def test_a_restarted_guard_still_refuses_replays(self, tmp_path: Path) -> None:
        path = tmp_path / "restart.db"
        envelope = sealed()
        with SqliteNonceStore(path) as store:
            opened(envelope, guard=ReplayGuard(store))

        with SqliteNonceStore(path) as store, pytest.raises(TrustError, match="replayed"):
            opened(envelope, guard=ReplayGuard(store), now=NOW + 5)

    def test_two_stores_on_one_file_agree(self, tmp_path: Path) -> None:
        path = tmp_path / "shared.db"
        with SqliteNonceStore(path) as first, SqliteNonceStore(path) as second:
            assert first.add_if_absent("a", "n", NOW)
            assert not second.add_if_absent("a", "n", NOW)


def test_deeply_nested_payload_is_refused_not_crashed() -> None:
    nested: Any = {}
    for _ in range(5000):
        nested = {"x": nested}
    envelope = sealed()
    envelope["payload"] = nested

    with pytest.raises(TrustError, match="no canonical JSON form"):
        opened(envelope)

"""secure() over a stand-in paho client and key server: what reaches on_message and what does not."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from fixtures import KEY_SERVER_SEED, NOW, bundle, identity, revocations, writer_record

from smqtt import _crypto
from smqtt.documents import open_principal_record, sign_document
from smqtt.enroll import Enrollment
from smqtt.envelope import EnvelopeSigner, open_envelope, seal_envelope
from smqtt.keyring import Keyring
from smqtt.keyserver import KeyServerClient
from smqtt.secure import SecureClient, SecureMessage, SecurityErrorEvent
from smqtt.storage import MemoryStorage

KS = _crypto.ed25519_public_key(KEY_SERVER_SEED)
ME = identity("app-1")
WRITER = identity("thermostat-1")
WRITERS = [(1000, WRITER, "home/+/thermostat/thermostat-1/#"), (1001, ME, "home/+/thermostat/app-1/#")]
TOPIC = "home/h1/thermostat/thermostat-1/temp"


class FakeKeyServer(KeyServerClient):
    def __init__(self) -> None:
        super().__init__("https://127.0.0.1:1", identity=ME)
        self.floor = 0

    def with_identity(self, identity: Any) -> FakeKeyServer:
        return self

    def bundle(self) -> tuple[Any, str | None]:
        return bundle(ME, WRITERS), "tag-1"

    def revocations(self) -> Any:
        return revocations(1, [])

    def reserve_sequence(self, at_least: int, size: int) -> tuple[int, int]:
        start = max(self.floor, at_least)
        self.floor = start + size
        return start, start + size


class FakePaho:
    def __init__(self) -> None:
        self._username: str | None = None
        self._client_id = b"app-1"
        self._protocol = 4
        self.passwords: list[str] = []
        self.published: list[tuple[str, bytes, int, bool]] = []
        self.subscribed: list[str] = []
        self.on_connect: Any = None
        self.on_message: Any = None

    def username_pw_set(self, username: str, password: str) -> None:
        self._username = username
        self.passwords.append(password)

    def reconnect(self) -> int:
        return 0

    def subscribe(self, topic: str, qos: int = 0) -> None:
        self.subscribed.append(topic)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, properties: Any = None) -> str:
        self.published.append((topic, payload, qos, retain))
        return "info"


def started(
    now: Any = lambda: NOW,
) -> tuple[SecureClient, FakePaho, MemoryStorage, list[SecureMessage], list[SecurityErrorEvent]]:
    principal = sign_document(
        "smqtt.principal",
        {"type": "smqtt.principal", "v": 1, "id": ME.id, "kid": 1001, "roles": ["app"],
         "signingKey": ME.public_json()["signingKey"], "agreementKey": ME.public_json()["agreementKey"],
         "kem": "x25519", "issuedAt": NOW},
        KEY_SERVER_SEED,
    )
    enrollment = Enrollment(ME, 1001, KS, "https://127.0.0.1:1", open_principal_record(principal, KS))
    paho = FakePaho()
    storage = MemoryStorage()
    sc = SecureClient(paho, enrollment, storage=storage, key_server=FakeKeyServer(), freshness_interval=0, now=now)
    sc.start()
    messages: list[SecureMessage] = []
    errors: list[SecurityErrorEvent] = []

    def on_message(_: SecureClient, message: SecureMessage) -> None:
        # saved before delivery: a restart now would refuse this envelope again
        state = json.loads(storage.get("replay:app-1") or "{}")
        assert any(w[3] == message.seq for w in state["windows"])
        messages.append(message)

    sc.on_message = on_message
    sc.on_security_error = lambda _, e: errors.append(e)
    return sc, paho, storage, messages, errors


def from_writer(seq: int, topic: str = TOPIC) -> bytes:
    ring = Keyring(lambda: NOW)
    from smqtt.documents import open_key_bundle

    ring.apply(open_key_bundle(bundle(WRITER, WRITERS), key_server_public_key=KS, recipient=WRITER, now=NOW))
    return seal_envelope(
        topic=topic, payload=b"21.5", epoch_key=ring.sealing_key(topic, 1000),
        signer=EnvelopeSigner(kid=1000, seed=WRITER.signing_seed), seq=seq, sent_at=NOW,
    )


def deliver(paho: FakePaho, topic: str, payload: bytes, retain: bool = False) -> None:
    paho.on_message(paho, None, SimpleNamespace(topic=topic, payload=payload, qos=1, retain=retain))


def test_login_with_a_fresh_password_per_attempt() -> None:
    sc, paho, *_ = started()
    assert paho._username == "app-1" and len(paho.passwords) == 1
    paho.reconnect()
    assert len(paho.passwords) == 2 and paho.passwords[0] != paho.passwords[1]
    assert paho.passwords[1].startswith("smqtt1.")
    paho.on_connect(paho, None, {}, 0)
    assert paho.subscribed == ["smqtt/control/principals/app-1"]


def test_verified_messages_reach_on_message_failures_never_do() -> None:
    _, paho, _, messages, errors = started()
    envelope = from_writer(7)
    deliver(paho, TOPIC, envelope)
    assert [(m.sender, m.kid, m.payload, m.group, m.epoch, m.seq, m.sent_at) for m in messages] == [
        ("thermostat-1", 1000, b"21.5", 7, 300, 7, NOW)
    ]
    deliver(paho, TOPIC, envelope)  # replayed
    tampered = envelope[:-1] + bytes([envelope[-1] ^ 1])
    deliver(paho, TOPIC, from_writer(8)[:-1] + b"\x00")  # forged
    deliver(paho, "home/h1/thermostat/thermostat-1/other", from_writer(9))  # moved
    deliver(paho, TOPIC, b"not an envelope")
    deliver(paho, TOPIC, tampered)
    assert len(messages) == 1
    assert [e.code for e in errors] == [
        "ERR_REPLAY",
        "ERR_ENVELOPE_SIGNATURE_INVALID",
        "ERR_ENVELOPE_SIGNATURE_INVALID",
        "ERR_ENVELOPE_UNSUPPORTED",
        "ERR_REPLAY",
    ]


def test_publish_seals_with_reserved_sequence_numbers() -> None:
    sc, paho, storage, *_ = started()
    sc.publish("home/h1/thermostat/app-1/temp", b"x", qos=1)
    sc.publish("home/h1/thermostat/app-1/temp", b"y", qos=1)
    (t1, e1, _, _), (_, e2, _, _) = paho.published
    ring = Keyring(lambda: NOW)
    ring.apply(sc.keyring._held)  # type: ignore[arg-type]
    first = open_envelope(e1, t1, keys=ring, now=NOW)
    second = open_envelope(e2, t1, keys=ring, now=NOW)
    assert first.payload == b"x" and second.header.seq == first.header.seq + 1
    assert storage.get("seq:app-1") == "4096"


def test_pushed_bundles_apply_and_forged_pushes_are_ignored() -> None:
    sc, paho, *_ = started()
    before = sc.keyring.issued_at
    forged = {"type": "bundle", "bundle": bundle(ME, WRITERS, issued_at=NOW + 5, seed=bytes(32))}
    deliver(paho, "smqtt/control/principals/app-1", json.dumps(forged).encode())
    assert sc.keyring.issued_at == before
    newer = {"type": "bundle", "bundle": bundle(ME, WRITERS, issued_at=NOW + 5)}
    deliver(paho, "smqtt/control/principals/app-1", json.dumps(newer).encode())
    assert sc.keyring.issued_at == NOW + 5


def test_a_writer_the_bundle_does_not_list_is_learned_from_a_writer_record() -> None:
    sc, paho, _, messages, errors = started()
    stranger = identity("thermostat-9")
    record = writer_record([(1009, stranger, "home/+/thermostat/thermostat-9/#")])
    asked: list[tuple[int, list[int]]] = []

    def writers(group: int, kids: list[int]) -> Any:
        asked.append((group, kids))
        return record

    sc._key_server.writers = writers  # type: ignore[method-assign]
    topic = "home/h1/thermostat/thermostat-9/temp"
    ring = Keyring(lambda: NOW)
    from smqtt.documents import open_key_bundle

    ring.apply(open_key_bundle(bundle(WRITER, WRITERS), key_server_public_key=KS, recipient=WRITER, now=NOW))
    envelope = seal_envelope(
        topic=topic, payload=b"hi", epoch_key=ring.sealing_key(TOPIC, 1000),
        signer=EnvelopeSigner(kid=1009, seed=stranger.signing_seed), seq=1, sent_at=NOW,
    )
    deliver(paho, topic, envelope)
    assert sc.wait_until_settled(5)
    assert asked == [(7, [1009])]
    assert [(m.sender, m.payload) for m in messages] == [("thermostat-9", b"hi")] and errors == []

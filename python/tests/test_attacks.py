"""The attacks of the TypeScript client's catalogue that apply to a client, against the Python one:
forgery, replay, topic swap, a reader forging as a writer, a writer outside its rights, a revoked
sender, bundle rollback, a bundle from another key server."""

from __future__ import annotations

import pytest
from fixtures import FILTER, GROUP, KEY_SERVER_SEED, NOW, bundle, identity, revocations

from smqtt import _crypto
from smqtt.documents import RevocationList, open_key_bundle
from smqtt.envelope import EnvelopeSigner, EpochKey, open_envelope, seal_envelope
from smqtt.errors import SmqttError
from smqtt.keyring import Keyring
from smqtt.replay import ReplayWindow

KS = _crypto.ed25519_public_key(KEY_SERVER_SEED)
READER = identity("app-1")
WRITER = identity("thermostat-1")
OTHER_WRITER = identity("thermostat-2")
TOPIC = "home/h1/thermostat/thermostat-1/temp"
WRITERS = [(1000, WRITER, "home/+/thermostat/thermostat-1/#"), (1001, OTHER_WRITER, "home/+/thermostat/thermostat-2/#")]


def keyring_of(who: object = READER) -> Keyring:
    ring = Keyring(lambda: NOW)
    ring.apply(open_key_bundle(bundle(READER, WRITERS), key_server_public_key=KS, recipient=READER, now=NOW))
    return ring


def writer_key() -> EpochKey:
    ring = Keyring(lambda: NOW)
    ring.apply(open_key_bundle(bundle(WRITER, WRITERS), key_server_public_key=KS, recipient=WRITER, now=NOW))
    return ring.sealing_key(TOPIC, 1000)


def sealed(topic: str = TOPIC, kid: int = 1000, seed: bytes = WRITER.signing_seed, seq: int = 1) -> bytes:
    return seal_envelope(
        topic=topic, payload=b"21.5", epoch_key=writer_key(), signer=EnvelopeSigner(kid=kid, seed=seed), seq=seq, sent_at=NOW
    )


def refused(envelope: bytes, topic: str = TOPIC, **options: object) -> str:
    ring = options.pop("keys", None) or keyring_of()
    with pytest.raises(SmqttError) as err:
        open_envelope(envelope, topic, keys=ring, now=NOW, **options)  # type: ignore[arg-type]
    return err.value.code


def test_genuine_message_opens() -> None:
    opened = open_envelope(sealed(), TOPIC, keys=keyring_of(), now=NOW)
    assert opened.payload == b"21.5" and opened.header.sender == 1000
    assert keyring_of().writer_principal(GROUP, 1000) == "thermostat-1"


def test_forgery_and_tampering() -> None:
    envelope = sealed()
    for i in (0, 5, len(envelope) - 70, len(envelope) - 1):
        tampered = bytearray(envelope)
        tampered[i] ^= 0x01
        assert refused(bytes(tampered)) in ("ERR_ENVELOPE_SIGNATURE_INVALID", "ERR_ENVELOPE_UNSUPPORTED", "ERR_ENVELOPE_MALFORMED", "ERR_UNKNOWN_SENDER", "ERR_UNKNOWN_EPOCH")
    assert refused(envelope + b"\x00") == "ERR_ENVELOPE_SIGNATURE_INVALID"
    assert refused(envelope[:-1]) == "ERR_ENVELOPE_SIGNATURE_INVALID"


def test_replay() -> None:
    window = ReplayWindow()
    envelope = sealed()
    open_envelope(envelope, TOPIC, keys=keyring_of(), now=NOW, replay=window)
    assert refused(envelope, replay=window) == "ERR_REPLAY"


def test_topic_swap() -> None:
    assert refused(sealed(), "home/h1/thermostat/thermostat-1/humidity") == "ERR_ENVELOPE_SIGNATURE_INVALID"


def test_reader_forging_as_writer() -> None:
    # A reader holds the group key, so it can encrypt; but it cannot sign as a listed writer.
    assert refused(sealed(kid=1000, seed=READER.signing_seed)) == "ERR_ENVELOPE_SIGNATURE_INVALID"
    assert refused(sealed(kid=4242, seed=READER.signing_seed)) == "ERR_UNKNOWN_SENDER"


def test_writer_outside_its_rights() -> None:
    topic = "home/h1/thermostat/thermostat-2/temp"  # the other thermostat's topic
    assert refused(sealed(topic=topic), topic) == "ERR_SENDER_NOT_PERMITTED"


def test_revoked_sender() -> None:
    held = RevocationList()
    held.accept(revocations(2, [1000]), key_server_public_key=KS)
    assert refused(sealed(), is_revoked=held.is_revoked_kid) == "ERR_SENDER_REVOKED"
    with pytest.raises(SmqttError) as err:
        held.accept(revocations(1, []), key_server_public_key=KS)  # yesterday's list un-revoking it
    assert err.value.code == "ERR_REVOCATION_LIST_ROLLBACK"


def test_bundle_rollback_and_other_key_server() -> None:
    ring = keyring_of()
    newer = open_key_bundle(bundle(READER, WRITERS, issued_at=NOW + 10), key_server_public_key=KS, recipient=READER, now=NOW)
    assert ring.apply(newer)
    assert not ring.apply(newer)  # the same again: ignored
    older = open_key_bundle(bundle(READER, WRITERS[:1]), key_server_public_key=KS, recipient=READER, now=NOW)
    with pytest.raises(SmqttError) as err:
        ring.apply(older)
    assert err.value.code == "ERR_BUNDLE_ROLLBACK"
    with pytest.raises(SmqttError) as err:
        open_key_bundle(bundle(READER, WRITERS, seed=bytes(32)), key_server_public_key=KS, recipient=READER, now=NOW)
    assert err.value.code == "ERR_BUNDLE_SIGNATURE_INVALID"
    assert ring.group_of(TOPIC) is not None and ring.group_of("home/h1/lock/x/cmd") is None
    assert FILTER == ring.groups[0].filter

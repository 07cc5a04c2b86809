"""The parser's strictness and the order of checks of docs/envelope.md, beyond the vectors."""

from __future__ import annotations

import pytest
from conftest import vectors

from smqtt.envelope import EnvelopeSigner, EpochKey, StaticKeys, open_envelope, parse_envelope, seal_envelope
from smqtt.errors import SmqttError
from smqtt.replay import ReplayWindow

CASE = vectors("envelope-v1.json")["cases"][0]
TOPIC = CASE["topic"]
NOW = CASE["sentAt"]


def setup() -> tuple[bytes, StaticKeys, EpochKey, EnvelopeSigner]:
    key = EpochKey(group=CASE["group"], epoch=CASE["epoch"], suite=1, key=bytes.fromhex(CASE["epochKey"]))
    signer = EnvelopeSigner(kid=CASE["kid"], seed=bytes.fromhex(CASE["signingSeed"]))
    return bytes.fromhex(CASE["envelope"]), StaticKeys([key], {(CASE["group"], CASE["kid"]): signer.public_key}), key, signer


def code(run: object) -> str:
    assert callable(run)
    with pytest.raises(SmqttError) as err:
        run()
    return err.value.code


def test_structure() -> None:
    envelope, *_ = setup()
    assert code(lambda: parse_envelope(b"\x01")) == "ERR_ENVELOPE_MALFORMED"
    assert code(lambda: parse_envelope(b"\x02" + envelope[1:])) == "ERR_ENVELOPE_UNSUPPORTED"
    assert code(lambda: parse_envelope(envelope[:1] + b"\x03" + envelope[2:])) == "ERR_ENVELOPE_UNSUPPORTED"
    assert code(lambda: parse_envelope(envelope[:1] + b"\x41" + envelope[2:])) == "ERR_ENVELOPE_MALFORMED"
    assert code(lambda: parse_envelope(envelope[:1] + b"\x81" + envelope[2:])) == "ERR_ENVELOPE_MALFORMED"
    # group 7 as a two-byte varint (0x87 0x00): not minimal
    assert code(lambda: parse_envelope(envelope[:2] + b"\x87\x00" + envelope[3:])) == "ERR_ENVELOPE_MALFORMED"
    # group above 2^32 - 1
    assert code(lambda: parse_envelope(envelope[:2] + b"\x80\x80\x80\x80\x10" + envelope[3:])) == "ERR_ENVELOPE_MALFORMED"
    assert code(lambda: parse_envelope(envelope[:20])) == "ERR_ENVELOPE_MALFORMED"
    # flag 0x20 set, descriptor binding nothing
    header = parse_envelope(envelope).header_bytes
    bound_nothing = header[:1] + b"\x21" + header[2:] + b"\x00\x00" + envelope[len(header):]
    assert code(lambda: parse_envelope(bound_nothing)) == "ERR_ENVELOPE_MALFORMED"
    assert code(lambda: parse_envelope(header[:1] + b"\x21" + header[2:] + b"\x08\x00" + envelope[len(header):])) == "ERR_ENVELOPE_MALFORMED"
    assert code(lambda: parse_envelope(header[:1] + b"\x21" + header[2:] + b"\x00\x11" + envelope[len(header):])) == "ERR_ENVELOPE_MALFORMED"


def test_size_limit_comes_first() -> None:
    envelope, keys, *_ = setup()
    assert code(lambda: open_envelope(b"\x09" * 100, TOPIC, keys=keys, max_envelope_bytes=99)) == "ERR_ENVELOPE_TOO_LARGE"


def test_order_revoked_replay_epoch_sender_signature_decryption() -> None:
    envelope, keys, key, signer = setup()
    assert code(lambda: open_envelope(envelope, TOPIC, keys=keys, now=NOW, is_revoked=lambda kid: True)) == "ERR_SENDER_REVOKED"
    assert code(lambda: open_envelope(envelope, TOPIC, keys=keys, now=NOW + 301, replay=ReplayWindow())) == "ERR_STALE"
    assert code(lambda: open_envelope(envelope, TOPIC, keys=StaticKeys([], keys.writers), now=NOW)) == "ERR_UNKNOWN_EPOCH"
    aes = EpochKey(group=key.group, epoch=key.epoch, suite=2, key=bytes(32))
    assert code(lambda: open_envelope(envelope, TOPIC, keys=StaticKeys([aes], keys.writers), now=NOW)) == "ERR_ENVELOPE_UNSUPPORTED"
    assert code(lambda: open_envelope(envelope, TOPIC, keys=StaticKeys([key], {}), now=NOW)) == "ERR_UNKNOWN_SENDER"
    forged = envelope[:-1] + bytes([envelope[-1] ^ 1])
    assert code(lambda: open_envelope(forged, TOPIC, keys=keys, now=NOW)) == "ERR_ENVELOPE_SIGNATURE_INVALID"
    # A listed writer signing ciphertext made under another key: only the AEAD can tell.
    wrong = EpochKey(group=key.group, epoch=key.epoch, suite=1, key=bytes(32))
    sealed = seal_envelope(topic=TOPIC, payload=b"x", epoch_key=wrong, signer=signer, seq=5, sent_at=NOW)
    assert code(lambda: open_envelope(sealed, TOPIC, keys=keys, now=NOW)) == "ERR_ENVELOPE_DECRYPTION_FAILED"


def test_replay_recorded_only_once_authentic() -> None:
    envelope, keys, *_ = setup()
    window = ReplayWindow()
    forged = envelope[:-1] + bytes([envelope[-1] ^ 1])
    assert code(lambda: open_envelope(forged, TOPIC, keys=keys, now=NOW, replay=window)) == "ERR_ENVELOPE_SIGNATURE_INVALID"
    open_envelope(envelope, TOPIC, keys=keys, now=NOW, replay=window)  # the forgery burnt nothing
    assert code(lambda: open_envelope(envelope, TOPIC, keys=keys, now=NOW, replay=window)) == "ERR_REPLAY"


def test_retained_rules_need_both_flags() -> None:
    _, keys, key, signer = setup()
    retained = seal_envelope(topic=TOPIC, payload=b"r", epoch_key=key, signer=signer, seq=9, sent_at=NOW, retain=True)
    window = ReplayWindow()
    later = NOW + 3600  # past the live freshness limit, within the retained one
    for _ in range(2):  # re-delivered on every subscribe
        assert open_envelope(retained, TOPIC, keys=keys, now=later, replay=window, retained=True).payload == b"r"
    # a broker marking it retained does not help a live message; live rules apply here
    assert code(lambda: open_envelope(retained, TOPIC, keys=keys, now=later, replay=window, retained=False)) == "ERR_STALE"


class Forbidding(StaticKeys):
    """Keys whose writer may publish nowhere (a policy that narrowed its rights)."""

    def writer_may_publish(self, group: int, sender: int, topic: str) -> bool | None:
        return False


def test_precedence_as_docs_envelope_md_tabulates() -> None:
    envelope, keys, key, signer = setup()
    # within the parser: version, then suite (both UNSUPPORTED), then flag bits (MALFORMED)
    assert code(lambda: parse_envelope(b"\x02\xc3" + envelope[2:])) == "ERR_ENVELOPE_UNSUPPORTED"
    assert code(lambda: parse_envelope(envelope[:1] + b"\xc3" + envelope[2:])) == "ERR_ENVELOPE_UNSUPPORTED"
    assert code(lambda: parse_envelope(envelope[:1] + b"\xc1" + envelope[2:])) == "ERR_ENVELOPE_MALFORMED"
    # an empty plaintext (16-byte ciphertext) parses; 15 bytes of ciphertext do not
    empty = seal_envelope(topic=TOPIC, payload=b"", epoch_key=key, signer=signer, seq=9, sent_at=NOW)
    assert open_envelope(empty, TOPIC, keys=keys, now=NOW).payload == b""
    assert code(lambda: parse_envelope(empty[:-65] + empty[-64:])) == "ERR_ENVELOPE_MALFORMED"
    # publish rights after the signature, before decryption
    forbidding = Forbidding([key], keys.writers)
    forged = envelope[:-1] + bytes([envelope[-1] ^ 1])
    assert code(lambda: open_envelope(forged, TOPIC, keys=forbidding, now=NOW)) == "ERR_ENVELOPE_SIGNATURE_INVALID"
    wrong = EpochKey(group=key.group, epoch=key.epoch, suite=1, key=bytes(32))
    undecryptable = seal_envelope(topic=TOPIC, payload=b"x", epoch_key=wrong, signer=signer, seq=5, sent_at=NOW)
    assert code(lambda: open_envelope(undecryptable, TOPIC, keys=forbidding, now=NOW)) == "ERR_SENDER_NOT_PERMITTED"
    # the second revocation check comes after decryption: revoked meanwhile, still refused
    calls: list[int] = []

    def revoked_on_second_look(kid: int) -> bool:
        calls.append(kid)
        return len(calls) > 1

    assert code(lambda: open_envelope(envelope, TOPIC, keys=keys, now=NOW, is_revoked=revoked_on_second_look)) == "ERR_SENDER_REVOKED"
    assert len(calls) == 2

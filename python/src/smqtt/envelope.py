"""The SMQTT envelope, version 1 (docs/envelope.md): seal, open, verify, parse.

Byte for byte the TypeScript implementation's, checked against the frozen vectors in
``packages/core/vectors/``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import _crypto
from ._bytes import check_bytes, check_uint, write_varint
from .errors import SmqttError
from .replay import ReplayWindow
from .topic import validate_topic

ENVELOPE_VERSION = 1
SIGNATURE_LENGTH = 64
TAG_LENGTH = 16
FLAG_RETAIN = 0x10
FLAG_PROPERTIES = 0x20
KNOWN_FLAGS = FLAG_RETAIN | FLAG_PROPERTIES
MAX_ID = 0xFFFF_FFFF
MAX_SEQ = 2**53 - 1
DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_ENVELOPE_BYTES = DEFAULT_MAX_PAYLOAD_BYTES + 1024
EPOCH_KEY_LENGTH = 32

BIND_CONTENT_TYPE = 0x01
BIND_RESPONSE_TOPIC = 0x02
BIND_CORRELATION_DATA = 0x04
KNOWN_BIND_BITS = 0x07
MAX_BOUND_USER_PROPERTIES = 16
MAX_BOUND_PROPERTY_BYTES = 1024
MAX_BOUND_PROPERTIES_BYTES = 4096

#: suite id -> AEAD name
SUITES: dict[int, str] = {1: _crypto.CHACHA20_POLY1305, 2: _crypto.AES_256_GCM}

_SENDER_SALT = b"smqtt/v1 sender"
_SIGNATURE_CONTEXT = b"smqtt/v1 envelope\x00"


# --- bound MQTT 5 properties ---------------------------------------------------------------


@dataclass(frozen=True)
class EnvelopeProperties:
    """MQTT 5 PUBLISH properties an envelope can bind; user properties in packet order."""

    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = ()

    def is_empty(self) -> bool:
        return (
            self.content_type is None
            and self.response_topic is None
            and self.correlation_data is None
            and not self.user_properties
        )


@dataclass(frozen=True)
class PropertyBinding:
    """Which properties an envelope binds (its header's descriptor)."""

    content_type: bool
    response_topic: bool
    correlation_data: bool
    user_properties: int

    @property
    def mask(self) -> int:
        return (
            (BIND_CONTENT_TYPE if self.content_type else 0)
            | (BIND_RESPONSE_TOPIC if self.response_topic else 0)
            | (BIND_CORRELATION_DATA if self.correlation_data else 0)
        )


def _mqtt_text(value: object, label: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{label} must be a str")
    if "\x00" in value:
        raise TypeError(f"{label} contains U+0000")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise TypeError(f"{label} contains a lone surrogate") from None


def encode_bound_properties(binding: PropertyBinding, properties: EnvelopeProperties | None) -> bytes | None:
    """The canonical encoding of the bound properties taken from ``properties``; None when they
    cannot have been sealed (fewer user properties than bound, over the limits)."""
    props = properties or EnvelopeProperties()
    out = bytearray()

    def field_bytes(data: bytes) -> bool:
        if len(data) > MAX_BOUND_PROPERTY_BYTES:
            return False
        out.extend(struct.pack(">H", len(data)))
        out.extend(data)
        return True

    def text_bytes(value: str) -> bytes | None:
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            return None

    for bound, value in (
        (binding.content_type, props.content_type),
        (binding.response_topic, props.response_topic),
        (binding.correlation_data, props.correlation_data),
    ):
        if not bound:
            continue
        if value is None:
            out.append(0)
            continue
        out.append(1)
        data = text_bytes(value) if isinstance(value, str) else bytes(value)
        if data is None or not field_bytes(data):
            return None
    users = props.user_properties
    if len(users) < binding.user_properties:
        return None
    for key, value in users[: binding.user_properties]:
        k = text_bytes(key)
        v = text_bytes(value)
        if k is None or v is None or not field_bytes(k) or not field_bytes(v):
            return None
    if len(out) > MAX_BOUND_PROPERTIES_BYTES:
        return None
    return bytes(out)


def _check_sealer_properties(properties: EnvelopeProperties) -> PropertyBinding:
    if not isinstance(properties, EnvelopeProperties):
        raise TypeError("properties must be EnvelopeProperties")
    if properties.content_type is not None:
        _mqtt_text(properties.content_type, "properties.content_type")
    if properties.response_topic is not None:
        _mqtt_text(properties.response_topic, "properties.response_topic")
    if properties.correlation_data is not None:
        check_bytes(properties.correlation_data, "properties.correlation_data")
    for i, pair in enumerate(properties.user_properties):
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise TypeError(f"properties.user_properties[{i}] must be a (key, value) tuple")
        _mqtt_text(pair[0], f"properties.user_properties[{i}] key")
        _mqtt_text(pair[1], f"properties.user_properties[{i}] value")
    if len(properties.user_properties) > MAX_BOUND_USER_PROPERTIES:
        raise SmqttError(
            "ERR_ENVELOPE_TOO_LARGE",
            f"at most {MAX_BOUND_USER_PROPERTIES} user properties can be bound, got {len(properties.user_properties)}",
        )
    # SMQTT's sealer binds all three kinds, present or absent, so nobody can add one.
    binding = PropertyBinding(True, True, True, len(properties.user_properties))
    if encode_bound_properties(binding, properties) is None:
        raise SmqttError("ERR_ENVELOPE_TOO_LARGE", "bound properties exceed the limits")
    return binding


@dataclass(frozen=True)
class PropertyVerdict:
    """What was received, split by whether the sender's signature covers it."""

    verified: EnvelopeProperties = field(default_factory=EnvelopeProperties)
    unsigned: EnvelopeProperties = field(default_factory=EnvelopeProperties)


def _property_verdict(binding: PropertyBinding | None, received: EnvelopeProperties | None) -> PropertyVerdict:
    if received is None:
        return PropertyVerdict()
    if binding is None:
        return PropertyVerdict(unsigned=received)
    split: dict[bool, dict[str, object]] = {True: {}, False: {}}
    split[binding.content_type]["content_type"] = received.content_type
    split[binding.response_topic]["response_topic"] = received.response_topic
    split[binding.correlation_data]["correlation_data"] = received.correlation_data
    users = received.user_properties
    split[True]["user_properties"] = users[: binding.user_properties]
    split[False]["user_properties"] = users[binding.user_properties :]
    return PropertyVerdict(
        verified=EnvelopeProperties(**split[True]),  # type: ignore[arg-type]
        unsigned=EnvelopeProperties(**split[False]),  # type: ignore[arg-type]
    )


# --- header ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvelopeHeader:
    """The authenticated, cleartext part of an envelope: who sent what, where, when."""

    version: int
    suite: int
    retain: bool
    group: int
    epoch: int
    sender: int
    seq: int
    sent_at: int
    properties: PropertyBinding | None = None


@dataclass(frozen=True)
class ParsedEnvelope:
    header: EnvelopeHeader
    header_bytes: bytes
    ciphertext: bytes
    signature: bytes


def encode_header(header: EnvelopeHeader) -> bytes:
    flags = (FLAG_RETAIN if header.retain else 0) | (FLAG_PROPERTIES if header.properties else 0)
    out = bytearray([header.version, flags | header.suite])
    for value in (header.group, header.epoch, header.sender, header.seq):
        out += write_varint(value)
    out += struct.pack(">I", header.sent_at)
    if header.properties is not None:
        out += bytes([header.properties.mask, header.properties.user_properties])
    return bytes(out)


def _malformed(reason: str) -> SmqttError:
    return SmqttError("ERR_ENVELOPE_MALFORMED", f"malformed envelope: {reason}")


def _read_varint(data: bytes, offset: int, label: str, maximum: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if offset >= len(data):
            raise _malformed(f"{label} is truncated")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << (7 * i)
        if byte & 0x80 == 0:
            if byte == 0 and i > 0:
                raise _malformed(f"{label} is not minimally encoded")
            if value > maximum:
                raise _malformed(f"{label} is out of range")
            return value, offset
    raise _malformed(f"{label} is too long")


def parse_envelope(data: bytes) -> ParsedEnvelope:
    """Splits an envelope into header, ciphertext and signature; structure only, no crypto."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _malformed("not bytes")
    data = bytes(data)
    if len(data) < 2:
        raise _malformed("too short")
    version = data[0]
    if version != ENVELOPE_VERSION:
        raise SmqttError("ERR_ENVELOPE_UNSUPPORTED", f"unsupported envelope version {version}")
    flags_suite = data[1]
    suite = flags_suite & 0x0F
    if suite not in SUITES:
        raise SmqttError("ERR_ENVELOPE_UNSUPPORTED", f"unsupported envelope suite {suite}")
    if flags_suite & 0xF0 & ~KNOWN_FLAGS:
        raise _malformed("unknown flag bits are set")
    offset = 2
    group, offset = _read_varint(data, offset, "group", MAX_ID)
    epoch, offset = _read_varint(data, offset, "epoch", MAX_ID)
    sender, offset = _read_varint(data, offset, "sender", MAX_ID)
    seq, offset = _read_varint(data, offset, "seq", MAX_SEQ)
    bound = bool(flags_suite & FLAG_PROPERTIES)
    header_end = offset + 4 + (2 if bound else 0)
    if len(data) < header_end + TAG_LENGTH + SIGNATURE_LENGTH:
        raise _malformed("too short for tag and signature")
    (sent_at,) = struct.unpack_from(">I", data, offset)
    binding: PropertyBinding | None = None
    if bound:
        mask, count = data[offset + 4], data[offset + 5]
        if mask & ~KNOWN_BIND_BITS:
            raise _malformed("unknown bound-property bits are set")
        if count > MAX_BOUND_USER_PROPERTIES:
            raise _malformed("too many bound user properties")
        if mask == 0 and count == 0:
            raise _malformed("the properties flag is set but binds nothing")
        binding = PropertyBinding(
            bool(mask & BIND_CONTENT_TYPE), bool(mask & BIND_RESPONSE_TOPIC), bool(mask & BIND_CORRELATION_DATA), count
        )
    header = EnvelopeHeader(
        version, suite, bool(flags_suite & FLAG_RETAIN), group, epoch, sender, seq, sent_at, binding
    )
    signature_start = len(data) - SIGNATURE_LENGTH
    return ParsedEnvelope(header, data[:header_end], data[header_end:signature_start], data[signature_start:])


# --- keys ------------------------------------------------------------------------------------


class EpochKey:
    """A group's key for one epoch; derives each sender's AEAD key and nonce base (cached)."""

    __slots__ = ("group", "epoch", "suite", "_key", "_senders")

    def __init__(self, *, group: int, epoch: int, suite: int, key: bytes) -> None:
        self.group = check_uint(group, "group", MAX_ID)
        self.epoch = check_uint(epoch, "epoch", MAX_ID)
        if suite not in SUITES:
            raise ValueError(f"unknown suite {suite}")
        self.suite = suite
        self._key = check_bytes(key, "epoch key", EPOCH_KEY_LENGTH)
        self._senders: dict[int, tuple[bytes, bytes]] = {}

    def sender_key(self, sender: int) -> tuple[bytes, bytes]:
        """(key, iv) of ``sender`` in this epoch: HKDF-SHA256 as docs/envelope.md says."""
        cached = self._senders.get(sender)
        if cached is None:
            check_uint(sender, "sender", MAX_ID)
            info = struct.pack(">BIII", self.suite, self.group, self.epoch, sender)
            okm = _crypto.hkdf(self._key, _SENDER_SALT, info, 44)
            cached = (okm[:32], okm[32:44])
            if len(self._senders) >= 4096:
                self._senders.clear()
            self._senders[sender] = cached
        return cached

    def same_key(self, key: bytes) -> bool:
        return _crypto.constant_time_equal(self._key, key)

    def __repr__(self) -> str:
        return f"EpochKey(group={self.group}, epoch={self.epoch}, suite={self.suite})"


def sender_nonce(iv: bytes, seq: int) -> bytes:
    return bytes(a ^ b for a, b in zip(iv, seq.to_bytes(12, "big")))


class EnvelopeSigner:
    """A sender's Ed25519 key with its key id (kid)."""

    __slots__ = ("kid", "_secret_key", "public_key")

    def __init__(self, *, kid: int, seed: bytes) -> None:
        self.kid = check_uint(kid, "kid", MAX_ID)
        self._secret_key = _crypto.ed25519_secret_key(check_bytes(seed, "seed", 32))
        self.public_key = self._secret_key[32:]

    def sign(self, message: bytes) -> bytes:
        return _crypto.ed25519_sign_with_secret_key(message, self._secret_key)


class EnvelopeKeys(Protocol):
    """The keys a subscriber holds: epoch keys and writers' public keys, per group."""

    def epoch_key(self, group: int, epoch: int) -> EpochKey | None: ...

    def writer_key(self, group: int, sender: int) -> bytes | None: ...

    def writer_may_publish(self, group: int, sender: int, topic: str) -> bool | None:
        """False refuses (``ERR_SENDER_NOT_PERMITTED``); None skips the check."""
        ...


@dataclass
class StaticKeys:
    """Fixed keys (tests, vectors): ``epoch_keys`` and ``writers`` ((group, kid) -> public key)."""

    epoch_keys: Sequence[EpochKey] = ()
    writers: dict[tuple[int, int], bytes] = field(default_factory=dict)

    def epoch_key(self, group: int, epoch: int) -> EpochKey | None:
        for key in self.epoch_keys:
            if key.group == group and key.epoch == epoch:
                return key
        return None

    def writer_key(self, group: int, sender: int) -> bytes | None:
        return self.writers.get((group, sender))

    def writer_may_publish(self, group: int, sender: int, topic: str) -> bool | None:
        return None


# --- signed bytes ----------------------------------------------------------------------------


def _aad(header_bytes: bytes, topic: str, bound: bytes) -> bytes:
    topic_bytes = topic.encode("utf-8")
    if len(topic_bytes) > 0xFFFF:
        raise ValueError("topic is longer than 65535 bytes")
    return header_bytes + struct.pack(">H", len(topic_bytes)) + topic_bytes + bound


# --- seal ------------------------------------------------------------------------------------


def seal_envelope(
    *,
    topic: str,
    payload: bytes,
    epoch_key: EpochKey,
    signer: EnvelopeSigner,
    seq: int,
    sent_at: int | None = None,
    retain: bool = False,
    properties: EnvelopeProperties | None = None,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> bytes:
    """Encrypts and signs ``payload`` for one topic. ``seq`` must never repeat for this sender.

    With ``properties``, binds content type, response topic and correlation data (present or
    absent) and every user property given; publish exactly those, user properties first.

    Example::

        envelope = seal_envelope(topic="home/hall/temp", payload=b"21.5", epoch_key=key,
                                 signer=signer, seq=counter.next())
    """
    payload = check_bytes(payload, "payload")
    check_uint(seq, "seq", MAX_SEQ)
    if len(payload) > max_payload_bytes:
        raise SmqttError("ERR_ENVELOPE_TOO_LARGE", f"payload of {len(payload)} bytes exceeds the limit")
    validate_topic(topic)
    sent = int(time.time()) if sent_at is None else sent_at
    check_uint(sent, "sent_at", 0xFFFF_FFFF)
    binding = None if properties is None else _check_sealer_properties(properties)
    bound = b"" if binding is None else encode_bound_properties(binding, properties) or b""
    header_bytes = encode_header(
        EnvelopeHeader(
            ENVELOPE_VERSION, epoch_key.suite, retain, epoch_key.group, epoch_key.epoch, signer.kid, seq, sent, binding
        )
    )
    key, iv = epoch_key.sender_key(signer.kid)
    aad = _aad(header_bytes, topic, bound)
    ciphertext = _crypto.aead_seal(SUITES[epoch_key.suite], key, sender_nonce(iv, seq), payload, aad)
    signature = signer.sign(_SIGNATURE_CONTEXT + aad + ciphertext)
    return header_bytes + ciphertext + signature


# --- verify / open ---------------------------------------------------------------------------


def _signature_valid(parsed: ParsedEnvelope, topic: str, public_key: bytes, bound: bytes | None) -> tuple[bool, bytes]:
    aad = _aad(parsed.header_bytes, topic, bound or b"")
    if bound is None:
        return False, aad
    return _crypto.ed25519_verify(parsed.signature, _SIGNATURE_CONTEXT + aad + parsed.ciphertext, public_key), aad


def _bound_of(parsed: ParsedEnvelope, received: EnvelopeProperties | None) -> bytes | None:
    binding = parsed.header.properties
    return b"" if binding is None else encode_bound_properties(binding, received)


def _check_size(data: bytes, max_envelope_bytes: int) -> None:
    if isinstance(data, (bytes, bytearray, memoryview)) and len(data) > max_envelope_bytes:
        raise SmqttError("ERR_ENVELOPE_TOO_LARGE", f"envelope of {len(data)} bytes exceeds the limit")


def verify_envelope(
    data: bytes,
    topic: str,
    *,
    writer_key: Callable[[int, int], bytes | None],
    properties: EnvelopeProperties | None = None,
    max_envelope_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES,
) -> ParsedEnvelope:
    """Parses an envelope and checks its sender's signature without any group key (what a broker
    can check). ``writer_key(group, kid)`` gives a writer's Ed25519 public key or None."""
    _check_size(data, max_envelope_bytes)
    parsed = parse_envelope(data)
    public_key = writer_key(parsed.header.group, parsed.header.sender)
    if public_key is None:
        raise SmqttError("ERR_UNKNOWN_SENDER", f"sender {parsed.header.sender} is not a writer of group {parsed.header.group}")
    valid, _ = _signature_valid(parsed, topic, public_key, _bound_of(parsed, properties))
    if not valid:
        raise SmqttError("ERR_ENVELOPE_SIGNATURE_INVALID")
    return parsed


@dataclass(frozen=True)
class OpenedEnvelope:
    header: EnvelopeHeader
    payload: bytes
    properties: PropertyVerdict


def open_envelope(
    data: bytes,
    topic: str,
    *,
    keys: EnvelopeKeys,
    replay: ReplayWindow | None = None,
    retained: bool = False,
    is_revoked: Callable[[int], bool] | None = None,
    now: int | None = None,
    properties: EnvelopeProperties | None = None,
    max_envelope_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES,
) -> OpenedEnvelope:
    """Verifies, checks for replay and decrypts an envelope received on ``topic``, in the order
    of docs/envelope.md; the replay window records it only once it is authentic.

    ``retained``: the delivery carried the MQTT retain flag. ``properties``: the MQTT 5
    properties the PUBLISH carried (user properties in packet order).

    Example::

        opened = open_envelope(msg.payload, msg.topic, keys=keyring, replay=window)
    """
    _check_size(data, max_envelope_bytes)
    parsed = parse_envelope(data)
    header = parsed.header
    if is_revoked is not None and is_revoked(header.sender):
        raise SmqttError("ERR_SENDER_REVOKED")
    clock = int(time.time()) if now is None else now
    # Only a message the sender itself marked retained gets the retained rules.
    retained_rules = header.retain and retained
    if replay is not None:
        replay.check(header.group, header.epoch, header.sender, header.seq, header.sent_at, clock, retained_rules)
    epoch_key = keys.epoch_key(header.group, header.epoch)
    if epoch_key is None:
        raise SmqttError("ERR_UNKNOWN_EPOCH", f"no key for group {header.group} epoch {header.epoch}")
    if epoch_key.suite != header.suite:
        raise SmqttError("ERR_ENVELOPE_UNSUPPORTED", f"suite {header.suite} is not the suite of group {header.group}")
    public_key = keys.writer_key(header.group, header.sender)
    if public_key is None:
        raise SmqttError("ERR_UNKNOWN_SENDER", f"sender {header.sender} is not a writer of group {header.group}")
    valid, aad = _signature_valid(parsed, topic, public_key, _bound_of(parsed, properties))
    if not valid:
        raise SmqttError("ERR_ENVELOPE_SIGNATURE_INVALID")
    if keys.writer_may_publish(header.group, header.sender, topic) is False:
        raise SmqttError("ERR_SENDER_NOT_PERMITTED", f"sender {header.sender} may not publish on {topic}")
    key, iv = epoch_key.sender_key(header.sender)
    try:
        payload = _crypto.aead_open(SUITES[header.suite], key, sender_nonce(iv, header.seq), parsed.ciphertext, aad)
    except NotImplementedError:
        raise SmqttError("ERR_ENVELOPE_UNSUPPORTED", "AES-256-GCM is not available on this machine") from None
    if payload is None:
        raise SmqttError("ERR_ENVELOPE_DECRYPTION_FAILED")
    # Again, as docs/envelope.md step 17: a revocation list applied meanwhile still counts.
    if is_revoked is not None and is_revoked(header.sender):
        raise SmqttError("ERR_SENDER_REVOKED")
    if replay is not None:
        replay.accept(header.group, header.epoch, header.sender, header.seq, header.sent_at, clock, retained_rules)
    return OpenedEnvelope(header, payload, _property_verdict(header.properties, properties))

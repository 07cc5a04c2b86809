"""Signed documents (key bundle, revocation list, principal record), identities, and the two
proofs of possession: the MQTT CONNECT password and signed HTTP requests.

A signed document is ``{"payload": base64url(UTF-8 JSON), "signature": base64url(Ed25519)}``,
the signature over ``"smqtt/v1 " + type + "\\0" + payload bytes`` under the key server's key.
"""

from __future__ import annotations

import functools
import json
import re
import struct
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

from . import _crypto, _mlkem
from ._bytes import from_base64url, to_base64url
from .errors import SmqttError, SmqttErrorCode
from .hpke import hpke_open
from .topic import is_valid_filter, topic_matches

DEFAULT_MAX_DOCUMENT_BYTES = 1024 * 1024
_PREFIX = "smqtt/v1 "


# --- context signatures ----------------------------------------------------------------------


def signed_bytes(context: str, message: bytes) -> bytes:
    """``"smqtt/v1 " + context + "\\0" + message``: what every SMQTT signature covers."""
    if not (1 <= len(context) <= 128 and all(0x20 <= ord(c) <= 0x7E for c in context)):
        raise ValueError("context must be 1 to 128 printable ASCII characters")
    return (_PREFIX + context).encode("ascii") + b"\x00" + message


def sign_with_context(seed: bytes, context: str, message: bytes) -> bytes:
    return _crypto.ed25519_sign(signed_bytes(context, message), seed)


def verify_with_context(public_key: bytes, context: str, message: bytes, signature: bytes) -> bool:
    return _crypto.ed25519_verify(signature, signed_bytes(context, message), public_key)


# --- strict JSON -----------------------------------------------------------------------------


def _utf16_length(text: str) -> int:
    # The TypeScript reader counts UTF-16 code units (JavaScript string length).
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def is_well_formed_text(value: object, max_length: int) -> bool:
    return (
        isinstance(value, str)
        and 1 <= _utf16_length(value) <= max_length
        and not any(unicodedata.category(c) in ("Cc", "Cs") for c in value)
    )


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str) -> Any:
    """JSON as JavaScript's JSON.parse reads it (no NaN / Infinity)."""
    return json.loads(text, parse_constant=_reject_constant)


class StrictJsonReader:
    """Reads untrusted JSON; every problem is an SmqttError with one code."""

    def __init__(self, code: SmqttErrorCode) -> None:
        self.code: SmqttErrorCode = code

    def fail(self, reason: str) -> NoReturn:
        raise SmqttError(self.code, f"{self.code} ({reason})")

    def record(
        self, value: object, path: str, required: Sequence[str], optional: Sequence[str] = ()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(f"{path} must be an object")
        for key in value:
            if key not in required and key not in optional:
                self.fail(f"{path} has unknown field {key}")
        for key in required:
            if key not in value:
                self.fail(f"{path}.{key} is missing")
        return value

    def array(self, value: object, path: str, max_length: int = 65_536) -> list[Any]:
        if not isinstance(value, list):
            self.fail(f"{path} must be an array")
        if len(value) > max_length:
            self.fail(f"{path} has more than {max_length} items")
        return value

    def uint32(self, value: object, path: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON.parse reads 1.0 as the integer 1
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF_FFFF:
            self.fail(f"{path} must be an integer in [0, 2^32 - 1]")
        return value

    def string(self, value: object, path: str, max_length: int = 1024) -> str:
        if not is_well_formed_text(value, max_length):
            self.fail(f"{path} must be a string of 1 to {max_length} characters, without control characters")
        assert isinstance(value, str)
        return value

    def literal(self, value: object, path: str, expected: object) -> None:
        if value != expected or type(value) is not type(expected):
            self.fail(f"{path} must be {expected!r}")

    def one_of(self, value: object, path: str, choices: Sequence[str]) -> str:
        if not isinstance(value, str) or value not in choices:
            self.fail(f"{path} must be one of {', '.join(choices)}")
        return value

    def binary(self, value: object, path: str, length: int | None = None) -> bytes:
        data = from_base64url(value)
        if data is None:
            self.fail(f"{path} must be canonical base64url")
        if length is not None and len(data) != length:
            self.fail(f"{path} must decode to {length} bytes")
        return data

    def once(self, value: int, seen: set[int], duplicate: str) -> None:
        """Remembers ``value`` in ``seen``; fails with ``duplicate`` if it is there already."""
        if value in seen:
            self.fail(duplicate)
        seen.add(value)

    def principal(self, value: object, path: str) -> str:
        if not is_well_formed_text(value, 256):
            self.fail(f"{path} is not a valid principal id")
        assert isinstance(value, str)
        return value


def open_signed_document(
    signed: object,
    *,
    type: str,
    signing_key: bytes,
    malformed: SmqttErrorCode,
    signature_invalid: SmqttErrorCode,
    max_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
) -> tuple[Any, StrictJsonReader]:
    """Checks the signature, then parses the payload as JSON; returns (body, reader)."""
    read = StrictJsonReader(malformed)
    outer = read.record(signed, "document", ["payload", "signature"])
    read.string(outer["payload"], "payload", -(-max_bytes * 4 // 3))
    payload = read.binary(outer["payload"], "payload")
    if len(payload) > max_bytes:
        read.fail(f"payload is larger than {max_bytes} bytes")
    signature = from_base64url(read.string(outer["signature"], "signature", 128))
    if signature is None or len(signature) != 64 or not verify_with_context(signing_key, type, payload, signature):
        raise SmqttError(signature_invalid)
    try:
        text = payload.decode("utf-8")  # strict: no overlong forms, no surrogates
        body = parse_json(text[1:] if text.startswith("\ufeff") else text)
    except UnicodeDecodeError:
        read.fail("payload is not UTF-8")
    except ValueError:
        read.fail("payload is not JSON")
    return body, read


def open_signed_body(
    signed: object,
    *,
    type: str,
    version: int,
    name: str,
    fields: Sequence[str],
    optional: Sequence[str] = (),
    signing_key: bytes,
    malformed: SmqttErrorCode,
    signature_invalid: SmqttErrorCode,
    max_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
) -> tuple[dict[str, Any], StrictJsonReader]:
    """:func:`open_signed_document`, then its body: an object (``name`` in errors) of this
    ``type`` and ``version`` with ``fields`` besides ``type`` and ``v``; returns (body, reader)."""
    body, read = open_signed_document(
        signed,
        type=type,
        signing_key=signing_key,
        malformed=malformed,
        signature_invalid=signature_invalid,
        max_bytes=max_bytes,
    )
    o = read.record(body, name, ["type", "v", *fields], optional)
    read.literal(o["type"], "type", type)
    read.literal(o["v"], "v", version)
    return o, read


def sign_document(type: str, body: dict[str, Any], seed: bytes) -> dict[str, str]:
    """The key server's side, for tests: JSON as JavaScript's JSON.stringify writes it."""
    if body.get("type") != type:
        raise ValueError(f"body type must be {type}")
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return {"payload": to_base64url(payload), "signature": to_base64url(sign_with_context(seed, type, payload))}


# --- identity ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A principal's keys: Ed25519 (signing) and X25519 or X-Wing (receiving group keys by HPKE).
    For ``kem="xwing"`` the agreement secret is the 32-byte X-Wing seed."""

    id: str
    signing_seed: bytes
    agreement_secret: bytes
    kem: str = "x25519"

    @property
    def signing_key(self) -> bytes:
        return _crypto.ed25519_public_key(self.signing_seed)

    @functools.cached_property
    def agreement_key(self) -> bytes:
        if self.kem == "xwing":
            return _mlkem.xwing_public_key(self.agreement_secret)  # ML-KEM key generation: cached
        return _crypto.x25519_public_key(self.agreement_secret)

    @staticmethod
    def generate(principal_id: str, kem: str = "x25519") -> Identity:
        """Fresh keys; ``kem="xwing"`` for a post-quantum (X-Wing) agreement key."""
        if not is_well_formed_text(principal_id, 256):
            raise ValueError("id must be 1 to 256 characters without control characters")
        if kem not in ("x25519", "xwing"):
            raise ValueError("kem must be 'x25519' or 'xwing'")
        return Identity(principal_id, _crypto.random_bytes(32), _crypto.random_bytes(32), kem)

    def public_json(self) -> dict[str, Any]:
        return {
            "type": "smqtt.public-identity",
            "v": 1,
            "id": self.id,
            "kem": self.kem,
            "signingKey": to_base64url(self.signing_key),
            "agreementKey": to_base64url(self.agreement_key),
        }

    def to_json(self) -> dict[str, Any]:
        """The TypeScript ``exportIdentity`` shape, the public identity with its two secrets (store
        it like a private key)."""
        return {
            **self.public_json(),
            "type": "smqtt.identity",
            "signingSeed": to_base64url(self.signing_seed),
            "agreementSecret": to_base64url(self.agreement_secret),
        }

    @staticmethod
    def from_json(value: object) -> Identity:
        read = StrictJsonReader("ERR_IDENTITY_MALFORMED")
        o = read.record(
            value, "identity", ["type", "v", "id", "kem", "signingSeed", "agreementSecret"], ["signingKey", "agreementKey"]
        )
        read.literal(o["type"], "type", "smqtt.identity")
        read.literal(o["v"], "v", 1)
        kem = read.one_of(o["kem"], "kem", ["x25519", "xwing"])
        identity = Identity(
            read.principal(o["id"], "id"),
            read.binary(o["signingSeed"], "signingSeed", 32),
            read.binary(o["agreementSecret"], "agreementSecret", 32),
            kem,
        )
        if "signingKey" in o and read.binary(o["signingKey"], "signingKey") != identity.signing_key:
            read.fail("signingKey does not match signingSeed")
        if "agreementKey" in o and read.binary(o["agreementKey"], "agreementKey") != identity.agreement_key:
            read.fail("agreementKey does not match agreementSecret")
        return identity


# --- principal record ------------------------------------------------------------------------


@dataclass(frozen=True)
class PrincipalRecord:
    id: str
    kid: int
    roles: tuple[str, ...]
    signing_key: bytes
    agreement_key: bytes
    kem: str
    issued_at: int


def open_principal_record(signed: object, key_server_public_key: bytes) -> PrincipalRecord:
    body, read = open_signed_document(
        signed,
        type="smqtt.principal",
        signing_key=key_server_public_key,
        malformed="ERR_IDENTITY_MALFORMED",
        signature_invalid="ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID",
    )
    o = read.record(body, "principal", ["type", "v", "id", "kid", "roles", "signingKey", "agreementKey", "kem", "issuedAt"])
    read.literal(o["type"], "principal.type", "smqtt.principal")
    read.literal(o["v"], "principal.v", 1)
    kem = read.one_of(o["kem"], "principal.kem", ["x25519", "xwing"])
    roles = tuple(read.string(r, f"principal.roles[{i}]", 64) for i, r in enumerate(read.array(o["roles"], "principal.roles", 64)))
    record = PrincipalRecord(
        id=read.principal(o["id"], "principal.id"),
        kid=read.uint32(o["kid"], "principal.kid"),
        roles=roles,
        signing_key=read.binary(o["signingKey"], "principal.signingKey", 32),
        agreement_key=read.binary(o["agreementKey"], "principal.agreementKey"),
        kem=kem,
        issued_at=read.uint32(o["issuedAt"], "principal.issuedAt"),
    )
    if not _crypto.is_valid_ed25519_public_key(record.signing_key):
        read.fail("principal keys: signingKey is not a valid Ed25519 key")
    if kem == "x25519" and not _crypto.is_valid_x25519_public_key(record.agreement_key):
        read.fail("principal keys: agreementKey is not a valid x25519 key")
    if kem == "xwing" and len(record.agreement_key) != 1216:
        read.fail("principal keys: agreementKey is not a valid xwing key")
    return record


# --- key bundle --------------------------------------------------------------------------------

MAX_WRITER_FILTERS = 32


@dataclass(frozen=True)
class PublishRights:
    allow: tuple[str, ...]
    deny: tuple[str, ...]

    def allows(self, topic: str) -> bool:
        return any(topic_matches(f, topic) for f in self.allow) and not any(topic_matches(f, topic) for f in self.deny)


@dataclass(frozen=True)
class Writer:
    principal: str
    signing_key: bytes
    publish: PublishRights


@dataclass(frozen=True)
class OpenedEpochKey:
    epoch: int
    key: bytes
    activates_at: int
    retires_at: int


_Epoch = TypeVar("_Epoch")


@dataclass(frozen=True)
class KeyGroup(Generic[_Epoch]):
    """A key group of a bundle, with its epochs as opened or as a keyring holds them."""

    group: int
    name: str
    filter: str
    suite: int
    epochs: tuple[_Epoch, ...]
    writers: dict[int, Writer]


#: a key group as :func:`open_key_bundle` returns it
OpenedKeyGroup = KeyGroup[OpenedEpochKey]


@dataclass(frozen=True)
class OpenedKeyBundle:
    principal: str
    issued_at: int
    not_before: int
    not_after: int
    groups: tuple[OpenedKeyGroup, ...]


def group_key_info(recipient: str, group: int, epoch: int, suite: int) -> bytes:
    """HPKE info of a sealed epoch key: label, 0, group u32 BE, epoch u32 BE, suite u32 BE, recipient id."""
    return b"smqtt/v1 group-key\x00" + struct.pack(">III", group, epoch, suite) + recipient.encode("utf-8")


def _filter_covers(wide: str, narrow: str) -> bool:
    """Every topic ``narrow`` matches is matched by ``wide``."""
    w = wide.split("/")
    n = narrow.split("/")
    if w[0] in ("+", "#") and n[0].startswith("$"):
        return False
    for i in range(max(len(w), len(n)) + 1):
        wl = w[i] if i < len(w) else None
        nl = n[i] if i < len(n) else None
        if wl == "#":
            return True
        if wl is None or nl is None:
            return wl == nl
        if nl == "#":
            return False  # narrow also matches its parent and any depth; only '#' covers that
        if wl != "+" and wl != nl:
            return False
    return False


def _read_rights(read: StrictJsonReader, value: object, path: str, group_filter: str) -> PublishRights:
    o = read.record(value, path, ["allow", "deny"])
    lists = []
    for name in ("allow", "deny"):
        lists.append(
            tuple(read.string(f, f"{path}.{name}[{i}]", 65_535) for i, f in enumerate(read.array(o[name], f"{path}.{name}", MAX_WRITER_FILTERS)))
        )
    rights = PublishRights(lists[0], lists[1])
    if not rights.allow:
        read.fail(f"{path} allows no topic")
    if len(rights.allow) + len(rights.deny) > MAX_WRITER_FILTERS:
        read.fail(f"{path} has more than {MAX_WRITER_FILTERS} filters")
    for f in rights.allow + rights.deny:
        if not is_valid_filter(f) or not _filter_covers(group_filter, f):
            read.fail(f"{path} filter {f!r} is not a valid filter within {group_filter}")
    return rights


def read_writers(read: StrictJsonReader, value: object, path: str, group: int, group_filter: str) -> dict[int, Writer]:
    writers: dict[int, Writer] = {}
    for w, entry in enumerate(read.array(value, path)):
        at = f"{path}[{w}]"
        o = read.record(entry, at, ["kid", "principal", "signingKey", "publish"])
        kid = read.uint32(o["kid"], f"{at}.kid")
        if kid in writers:
            read.fail(f"duplicate kid {kid} in group {group}")
        signing_key = read.binary(o["signingKey"], f"{at}.signingKey", 32)
        if not _crypto.is_valid_ed25519_public_key(signing_key):
            read.fail(f"{at}.signingKey is not a valid Ed25519 key")
        principal = read.principal(o["principal"], f"{at}.principal")
        writers[kid] = Writer(principal, signing_key, _read_rights(read, o["publish"], f"{at}.publish", group_filter))
    return writers


@dataclass(frozen=True)
class OpenedWriterRecord:
    reader: str
    group: int
    filter: str
    issued_at: int
    not_after: int
    writers: dict[int, Writer]


def _check_addressed(addressee: str, recipient: str, not_before: int, not_after: int, now: int | None) -> None:
    """A key bundle's or writer record's last checks, once it parsed: its recipient, then its validity."""
    if addressee != recipient:
        raise SmqttError("ERR_BUNDLE_WRONG_RECIPIENT")
    clock = int(time.time()) if now is None else now
    if clock < not_before:
        raise SmqttError("ERR_BUNDLE_NOT_YET_VALID")
    if clock >= not_after:
        raise SmqttError("ERR_BUNDLE_EXPIRED")


def open_writer_record(
    signed: object, *, key_server_public_key: bytes, reader: str, now: int | None = None
) -> OpenedWriterRecord:
    """The answer to ``POST /v1/writers``: writers a bundle does not list (docs/documents.md §6)."""
    o, read = open_signed_body(
        signed, type="smqtt.writer-record", version=1, name="writer record", signing_key=key_server_public_key,
        fields=["reader", "group", "filter", "issuedAt", "notAfter", "writers"],
        # a detached part of a key bundle: the same errors
        malformed="ERR_BUNDLE_MALFORMED", signature_invalid="ERR_BUNDLE_SIGNATURE_INVALID",
    )
    record_reader = read.principal(o["reader"], "reader")
    group = read.uint32(o["group"], "group")
    group_filter = read.string(o["filter"], "filter", 65_535)
    if not is_valid_filter(group_filter):
        read.fail("filter is not a valid topic filter")
    issued_at = read.uint32(o["issuedAt"], "issuedAt")
    not_after = read.uint32(o["notAfter"], "notAfter")
    if issued_at > not_after:
        read.fail("issuedAt is after notAfter")
    read.array(o["writers"], "writers", 256)
    writers = read_writers(read, o["writers"], "writers", group, group_filter)
    # A record has no notBefore: it is valid from issuedAt, with a minute for clock skew.
    _check_addressed(record_reader, reader, issued_at - 60, not_after, now)
    return OpenedWriterRecord(record_reader, group, group_filter, issued_at, not_after, writers)


def open_key_bundle(
    signed: object,
    *,
    key_server_public_key: bytes,
    recipient: Identity,
    now: int | None = None,
    max_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
) -> OpenedKeyBundle:
    """Verifies a key bundle (signature, recipient, validity) and opens its sealed epoch keys."""
    b, read = open_signed_body(
        signed, type="smqtt.key-bundle", version=2, name="bundle", signing_key=key_server_public_key,
        fields=["principal", "issuedAt", "notBefore", "notAfter", "groups"],
        malformed="ERR_BUNDLE_MALFORMED", signature_invalid="ERR_BUNDLE_SIGNATURE_INVALID", max_bytes=max_bytes,
    )
    principal = read.principal(b["principal"], "principal")
    issued_at = read.uint32(b["issuedAt"], "issuedAt")
    not_before = read.uint32(b["notBefore"], "notBefore")
    not_after = read.uint32(b["notAfter"], "notAfter")
    if not_before > not_after:
        read.fail("notBefore is after notAfter")
    parsed: list[tuple[int, str, str, int, list[tuple[int, int, int, str, bytes, bytes]], dict[int, Writer]]] = []
    seen_groups: set[int] = set()
    for g, value in enumerate(read.array(b["groups"], "groups")):
        path = f"groups[{g}]"
        o = read.record(value, path, ["group", "name", "filter", "suite", "epochs", "writers"])
        group = read.uint32(o["group"], f"{path}.group")
        read.once(group, seen_groups, f"duplicate group {group}")
        group_filter = read.string(o["filter"], f"{path}.filter", 65_535)
        epochs: list[tuple[int, int, int, str, bytes, bytes]] = []
        seen_epochs: set[int] = set()
        for e, ev in enumerate(read.array(o["epochs"], f"{path}.epochs")):
            at = f"{path}.epochs[{e}]"
            eo = read.record(ev, at, ["epoch", "activatesAt", "retiresAt", "enc", "sealedKey", "kem"])
            epoch = read.uint32(eo["epoch"], f"{at}.epoch")
            read.once(epoch, seen_epochs, f"duplicate epoch {epoch} in group {group}")
            activates_at = read.uint32(eo["activatesAt"], f"{at}.activatesAt")
            retires_at = read.uint32(eo["retiresAt"], f"{at}.retiresAt")
            if activates_at > retires_at:
                read.fail(f"{at}.activatesAt is after retiresAt")
            kem = read.one_of(eo["kem"], f"{at}.kem", ["x25519", "xwing"])
            enc = read.binary(eo["enc"], f"{at}.enc", 32 if kem == "x25519" else 1120)
            sealed = read.binary(eo["sealedKey"], f"{at}.sealedKey", 32 + 16)
            epochs.append((epoch, activates_at, retires_at, kem, enc, sealed))
        writers = read_writers(read, o["writers"], f"{path}.writers", group, group_filter)
        name = read.string(o["name"], f"{path}.name", 256)
        suite = read.uint32(o["suite"], f"{path}.suite")
        parsed.append((group, name, group_filter, suite, epochs, writers))
    _check_addressed(principal, recipient.id, not_before, not_after, now)
    groups = []
    for group, name, group_filter, suite, epochs, writers in parsed:
        opened = []
        for epoch, activates_at, retires_at, kem, enc, sealed in epochs:
            if kem != recipient.kem:
                raise SmqttError("ERR_HPKE_OPEN_FAILED")
            key = hpke_open(
                enc, recipient.agreement_secret, group_key_info(recipient.id, group, epoch, suite), sealed, kem=kem
            )
            opened.append(OpenedEpochKey(epoch, key, activates_at, retires_at))
        groups.append(OpenedKeyGroup(group, name, group_filter, suite, tuple(opened), writers))
    return OpenedKeyBundle(principal, issued_at, not_before, not_after, tuple(groups))


# --- revocation list ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RevocationEntry:
    principal: str
    kid: int
    revoked_at: int


class RevocationList:
    """The latest revocation list accepted; its version only goes up."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.issued_at: int | None = None
        self.pruned_before = 0
        self._payload: str | None = None
        self.entries: tuple[RevocationEntry, ...] = ()
        self._kids: set[int] = set()
        self._principals: set[str] = set()

    def accept(self, signed: object, *, key_server_public_key: bytes) -> bool:
        """Accepts a newer list (True), ignores the same one (False); raises on rollback."""
        o, read = open_signed_body(
            signed, type="smqtt.revocations", version=1, name="revocation list", signing_key=key_server_public_key,
            fields=["version", "issuedAt", "entries"], optional=["prunedBefore"],
            malformed="ERR_REVOCATION_LIST_MALFORMED", signature_invalid="ERR_REVOCATION_LIST_SIGNATURE_INVALID",
        )
        version = read.uint32(o["version"], "version")
        issued_at = read.uint32(o["issuedAt"], "issuedAt")
        pruned_before = 0 if "prunedBefore" not in o else read.uint32(o["prunedBefore"], "prunedBefore")
        entries: list[RevocationEntry] = []
        kids: set[int] = set()
        for i, value in enumerate(read.array(o["entries"], "entries", 1_000_000)):
            fields = read.record(value, f"entries[{i}]", ["principal", "kid", "revokedAt"])
            kid = read.uint32(fields["kid"], f"entries[{i}].kid")
            read.once(kid, kids, f"duplicate kid {kid}")
            entries.append(
                RevocationEntry(
                    read.principal(fields["principal"], f"entries[{i}].principal"),
                    kid,
                    read.uint32(fields["revokedAt"], f"entries[{i}].revokedAt"),
                )
            )
        payload = signed["payload"] if isinstance(signed, dict) else None
        if self.version is not None:
            if version < self.version:
                raise SmqttError("ERR_REVOCATION_LIST_ROLLBACK")
            if version == self.version:
                if payload == self._payload:
                    return False
                raise SmqttError(
                    "ERR_REVOCATION_LIST_ROLLBACK", f"two different revocation lists carry version {version}"
                )
        self.version, self.issued_at, self.pruned_before = version, issued_at, pruned_before
        self._payload = payload
        self.entries = tuple(entries)
        self._kids = kids
        self._principals = {e.principal for e in entries}
        return True

    def is_revoked_kid(self, kid: int) -> bool:
        return kid in self._kids

    def is_revoked_principal(self, principal: str) -> bool:
        return principal in self._principals

    def covers_bundle_issued_at(self, issued_at: int) -> bool:
        return issued_at >= self.pruned_before


# --- proofs of possession ------------------------------------------------------------------------

CONNECT_PASSWORD_PREFIX = "smqtt1."


def create_connect_password(seed: bytes, client_id: str, *, now: int | None = None, nonce: bytes | None = None) -> str:
    """The MQTT CONNECT password SMQTT brokers accept (username = principal id)::

        "smqtt1." timestamp "." nonce "." signature
        signature = Ed25519(context "mqtt-connect", client_id "\\n" timestamp "\\n" nonce)

    Valid for about a minute, once (the broker remembers the nonce): make one per attempt.
    """
    timestamp = int(time.time()) if now is None else now
    nonce_text = to_base64url(nonce if nonce is not None else _crypto.random_bytes(16))
    message = f"{client_id}\n{timestamp}\n{nonce_text}".encode("utf-8")
    signature = sign_with_context(seed, "mqtt-connect", message)
    return f"{CONNECT_PASSWORD_PREFIX}{timestamp}.{nonce_text}.{to_base64url(signature)}"


_PASSWORD = re.compile(r"^smqtt1\.([0-9]{1,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{86})$")


def verify_connect_password(
    password: str, *, client_id: str, signing_key: bytes, now: int | None = None, max_skew_seconds: int = 60
) -> str:
    """The broker's check (for tests and Python brokers): returns the nonce to remember once;
    every failure is ``ERR_UNAUTHENTICATED``."""
    refuse = SmqttError("ERR_UNAUTHENTICATED", "CONNECT password does not prove the principal key")
    match = _PASSWORD.match(password)
    if match is None:
        raise refuse
    timestamp = int(match.group(1))
    clock = int(time.time()) if now is None else now
    signature = from_base64url(match.group(3))
    nonce_bytes = from_base64url(match.group(2))
    if abs(clock - timestamp) > max_skew_seconds or signature is None or nonce_bytes is None or len(nonce_bytes) != 16:
        raise refuse
    message = f"{client_id}\n{timestamp}\n{match.group(2)}".encode("utf-8")
    if not verify_with_context(signing_key, "mqtt-connect", message, signature):
        raise refuse
    return match.group(2)


REQUEST_SIGNATURE_HEADERS = ("smqtt-principal", "smqtt-timestamp", "smqtt-nonce", "smqtt-signature")


def sign_request(
    principal: str,
    seed: bytes,
    *,
    method: str,
    path: str,
    body: bytes,
    now: int | None = None,
    nonce: bytes | None = None,
) -> dict[str, str]:
    """Headers proving possession of the principal's key for one HTTPS request to the key server.

    Signed (context ``http-request``): ``METHOD \\n path-with-query \\n timestamp \\n nonce \\n
    base64url(sha256(body))``.
    """
    timestamp = int(time.time()) if now is None else now
    nonce_text = to_base64url(nonce if nonce is not None else _crypto.random_bytes(16))
    body_hash = to_base64url(_crypto.sha256(body))
    message = f"{method.upper()}\n{path}\n{timestamp}\n{nonce_text}\n{body_hash}".encode("utf-8")
    signature = sign_with_context(seed, "http-request", message)
    return {
        "smqtt-principal": principal,
        "smqtt-timestamp": str(timestamp),
        "smqtt-nonce": nonce_text,
        "smqtt-signature": to_base64url(signature),
    }


def verify_request_signature(
    headers: dict[str, str],
    signing_key: bytes,
    *,
    method: str,
    path: str,
    body: bytes,
    now: int | None = None,
    max_skew_seconds: int = 60,
) -> str:
    """The key server's check of :func:`sign_request` headers (nonce replay aside, which needs
    state): returns the principal id; every failure is ``ERR_REQUEST_SIGNATURE_INVALID``."""

    def invalid(reason: str) -> SmqttError:
        return SmqttError("ERR_REQUEST_SIGNATURE_INVALID", f"request signature invalid: {reason}")

    def one(name: str) -> str:
        value = headers.get(name)
        if not isinstance(value, str) or not value:
            raise invalid(f"header {name} is missing or repeated")
        return value

    principal = one("smqtt-principal")
    if not is_well_formed_text(principal, 256):
        raise invalid("malformed principal id")
    timestamp_text = one("smqtt-timestamp")
    if not re.fullmatch(r"[0-9]{1,12}", timestamp_text):
        raise invalid("malformed timestamp")
    nonce = one("smqtt-nonce")
    nonce_bytes = from_base64url(nonce)
    if nonce_bytes is None or len(nonce_bytes) != 16:
        raise invalid("malformed nonce")
    signature = from_base64url(one("smqtt-signature"))
    if signature is None or len(signature) != 64:
        raise invalid("malformed signature")
    timestamp = int(timestamp_text)
    clock = int(time.time()) if now is None else now
    if abs(clock - timestamp) > max_skew_seconds:
        raise invalid("timestamp outside the allowed window")
    body_hash = to_base64url(_crypto.sha256(body))
    message = f"{method.upper()}\n{path}\n{timestamp}\n{nonce}\n{body_hash}".encode("utf-8")
    if not verify_with_context(signing_key, "http-request", message, signature):
        raise invalid("signature does not verify")
    return principal


def create_enrollment_request(
    identity: Identity, token: str, *, roles: Sequence[str] | None = None, tls_public_key: bytes | None = None
) -> dict[str, Any]:
    """The body of ``POST /v1/enroll``: the proof signs (context ``enrollment``)
    ``sha256(token) || signing key || agreement key``."""
    proven = _crypto.sha256(token.encode("utf-8")) + identity.signing_key + identity.agreement_key
    request: dict[str, Any] = {
        "token": token,
        "identity": identity.public_json(),
        "proof": to_base64url(sign_with_context(identity.signing_seed, "enrollment", proven)),
    }
    if roles is not None:
        request["roles"] = list(roles)
    if tls_public_key is not None:
        request["tlsPublicKey"] = to_base64url(tls_public_key)
    return request

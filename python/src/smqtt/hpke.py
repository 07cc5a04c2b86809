"""HPKE (RFC 9180) base mode: DHKEM(X25519, HKDF-SHA256) 0x0020 or X-Wing 0x647a (ML-KEM-768 +
X25519, ``_mlkem``), HKDF-SHA256, ChaCha20-Poly1305.

What the key server uses to seal epoch keys to one principal. X-Wing's 32-byte shared secret
already binds ciphertext and public key, so it enters the key schedule as it is.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from . import _crypto, _mlkem
from .errors import SmqttError

MODE_BASE = 0
KEM_X25519 = 0x0020
KEM_XWING = 0x647A
KEM_IDS = {"x25519": KEM_X25519, "xwing": KEM_XWING}
ENC_LENGTHS = {"x25519": 32, "xwing": _mlkem.XWING_CIPHERTEXT_LENGTH}
KDF_HKDF_SHA256 = 0x0001
AEAD_CHACHA20_POLY1305 = 0x0003
TAG_LENGTH = 16

_KEM_SUITE = b"KEM" + struct.pack(">H", KEM_X25519)


def _hpke_suite(kem: str) -> bytes:
    return b"HPKE" + struct.pack(">HHH", KEM_IDS[kem], KDF_HKDF_SHA256, AEAD_CHACHA20_POLY1305)


def _labeled_extract(suite: bytes, salt: bytes, label: str, ikm: bytes) -> bytes:
    return _crypto.hkdf_extract(salt, b"HPKE-v1" + suite + label.encode() + ikm)


def _labeled_expand(suite: bytes, prk: bytes, label: str, info: bytes, length: int) -> bytes:
    return _crypto.hkdf_expand(prk, struct.pack(">H", length) + b"HPKE-v1" + suite + label.encode() + info, length)


def _extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    eae_prk = _labeled_extract(_KEM_SUITE, b"", "eae_prk", dh)
    return _labeled_expand(_KEM_SUITE, eae_prk, "shared_secret", kem_context, 32)


def derive_x25519_key_pair(ikm: bytes) -> tuple[bytes, bytes]:
    """DeriveKeyPair (RFC 9180 §7.1.3): (secret key, public key)."""
    dkp_prk = _labeled_extract(_KEM_SUITE, b"", "dkp_prk", ikm)
    secret = _labeled_expand(_KEM_SUITE, dkp_prk, "sk", b"", 32)
    return secret, _crypto.x25519_public_key(secret)


@dataclass(frozen=True)
class HpkeContext:
    enc: bytes
    shared_secret: bytes
    key: bytes
    base_nonce: bytes
    exporter_secret: bytes

    def nonce(self, sequence_number: int) -> bytes:
        return bytes(a ^ b for a, b in zip(self.base_nonce, sequence_number.to_bytes(12, "big")))


def _key_schedule(enc: bytes, shared_secret: bytes, info: bytes, kem: str = "x25519") -> HpkeContext:
    suite = _hpke_suite(kem)
    psk_id_hash = _labeled_extract(suite, b"", "psk_id_hash", b"")
    info_hash = _labeled_extract(suite, b"", "info_hash", info)
    context = bytes([MODE_BASE]) + psk_id_hash + info_hash
    secret = _labeled_extract(suite, shared_secret, "secret", b"")
    return HpkeContext(
        enc=enc,
        shared_secret=shared_secret,
        key=_labeled_expand(suite, secret, "key", context, 32),
        base_nonce=_labeled_expand(suite, secret, "base_nonce", context, 12),
        exporter_secret=_labeled_expand(suite, secret, "exp", context, 32),
    )


def setup_base_sender(
    recipient_public_key: bytes, info: bytes, *, unsafe_ephemeral_secret: bytes | None = None, kem: str = "x25519"
) -> HpkeContext:
    """SetupBaseS. ``unsafe_ephemeral_secret`` only for test vectors (64 bytes for X-Wing)."""
    if kem == "xwing":
        if len(recipient_public_key) != _mlkem.XWING_PUBLIC_KEY_LENGTH:
            raise SmqttError("ERR_KEY_INVALID", "not an X-Wing public key")
        eseed = unsafe_ephemeral_secret if unsafe_ephemeral_secret is not None else _crypto.random_bytes(64)
        shared, enc = _mlkem.xwing_encapsulate(recipient_public_key, eseed)
        return _key_schedule(enc, shared, info, kem)
    sk_e = unsafe_ephemeral_secret if unsafe_ephemeral_secret is not None else _crypto.random_bytes(32)
    enc = _crypto.x25519_public_key(sk_e)
    dh = _crypto.x25519(sk_e, recipient_public_key)
    if dh is None:
        raise SmqttError("ERR_KEY_INVALID", "the recipient key is of small order")
    return _key_schedule(enc, _extract_and_expand(dh, enc + recipient_public_key), info)


def setup_base_recipient(enc: bytes, recipient_secret_key: bytes, info: bytes, kem: str = "x25519") -> HpkeContext | None:
    """SetupBaseR; None on any failure."""
    if len(enc) != ENC_LENGTHS[kem]:
        return None
    if kem == "xwing":
        shared = _mlkem.xwing_decapsulate(enc, recipient_secret_key)
        return None if shared is None else _key_schedule(enc, shared, info, kem)
    dh = _crypto.x25519(recipient_secret_key, enc)
    if dh is None:
        return None
    pk_r = _crypto.x25519_public_key(recipient_secret_key)
    return _key_schedule(enc, _extract_and_expand(dh, enc + pk_r), info)


def hpke_seal(
    recipient_public_key: bytes, info: bytes, plaintext: bytes, aad: bytes = b"", *, kem: str = "x25519"
) -> tuple[bytes, bytes]:
    """Single-shot seal: (enc, ciphertext)."""
    context = setup_base_sender(recipient_public_key, info, kem=kem)
    return context.enc, _crypto.aead_seal(_crypto.CHACHA20_POLY1305, context.key, context.base_nonce, plaintext, aad)


def hpke_open(
    enc: bytes, recipient_secret_key: bytes, info: bytes, ciphertext: bytes, aad: bytes = b"", *, kem: str = "x25519"
) -> bytes:
    """Single-shot open; every failure is ``SmqttError('ERR_HPKE_OPEN_FAILED')``."""
    context = setup_base_recipient(enc, recipient_secret_key, info, kem)
    plaintext = (
        None
        if context is None
        else _crypto.aead_open(_crypto.CHACHA20_POLY1305, context.key, context.base_nonce, ciphertext, aad)
    )
    if plaintext is None:
        raise SmqttError("ERR_HPKE_OPEN_FAILED")
    return plaintext

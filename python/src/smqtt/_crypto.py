"""Every primitive SMQTT uses, from libsodium through PyNaCl, plus HKDF from the stdlib.

Nothing else in the package imports nacl.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import hmac
import os

import nacl.bindings as sodium
import nacl.exceptions

CHACHA20_POLY1305 = "chacha20-poly1305"
AES_256_GCM = "aes-256-gcm"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    if length > 255 * 32:
        raise ValueError("HKDF-SHA256 output is at most 8160 bytes")
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 with SHA-256."""
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


def _load_aes_gcm() -> ctypes.CDLL | None:
    # PyNaCl 1.5 does not wrap libsodium's AES-256-GCM. Debian's PyNaCl links the system
    # libsodium, so the same library is called through ctypes; libsodium offers AES-256-GCM
    # only on CPUs with AES-NI and PCLMUL (crypto_aead_aes256gcm_is_available).
    name = ctypes.util.find_library("sodium")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        if lib.sodium_init() < 0 or lib.crypto_aead_aes256gcm_is_available() != 1:
            return None
    except (OSError, AttributeError):
        return None
    return lib


_AES_GCM = _load_aes_gcm()


def aes_gcm_available() -> bool:
    """True when libsodium's AES-256-GCM can be used here (suite 2)."""
    return _AES_GCM is not None


def _aes_gcm_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    assert _AES_GCM is not None
    out = ctypes.create_string_buffer(len(plaintext) + 16)
    out_len = ctypes.c_ulonglong(0)
    rc = _AES_GCM.crypto_aead_aes256gcm_encrypt(
        out, ctypes.byref(out_len), plaintext, ctypes.c_ulonglong(len(plaintext)),
        aad, ctypes.c_ulonglong(len(aad)), None, nonce, key,
    )
    if rc != 0:
        raise RuntimeError("AES-256-GCM encryption failed")
    return out.raw[: out_len.value]


def _aes_gcm_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes | None:
    assert _AES_GCM is not None
    if len(ciphertext) < 16:
        return None
    out = ctypes.create_string_buffer(max(1, len(ciphertext) - 16))
    out_len = ctypes.c_ulonglong(0)
    rc = _AES_GCM.crypto_aead_aes256gcm_decrypt(
        out, ctypes.byref(out_len), None, ciphertext, ctypes.c_ulonglong(len(ciphertext)),
        aad, ctypes.c_ulonglong(len(aad)), nonce, key,
    )
    return out.raw[: out_len.value] if rc == 0 else None


def aead_seal(aead: str, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    if aead == CHACHA20_POLY1305:
        return bytes(sodium.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key))
    if aead == AES_256_GCM and aes_gcm_available():
        return _aes_gcm_seal(key, nonce, plaintext, aad)
    raise NotImplementedError(f"{aead} is not available here (libsodium without AES-NI support)")


def aead_open(aead: str, key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes | None:
    """The plaintext, or None when the tag does not verify (one answer for every cause)."""
    try:
        if aead == CHACHA20_POLY1305:
            return bytes(sodium.crypto_aead_chacha20poly1305_ietf_decrypt(ciphertext, aad, nonce, key))
        if aead == AES_256_GCM and aes_gcm_available():
            return _aes_gcm_open(key, nonce, ciphertext, aad)
    except nacl.exceptions.CryptoError:
        return None
    raise NotImplementedError(f"{aead} is not available here (libsodium without AES-NI support)")


def ed25519_public_key(seed: bytes) -> bytes:
    public, _secret = sodium.crypto_sign_seed_keypair(seed)
    return bytes(public)


def ed25519_secret_key(seed: bytes) -> bytes:
    """libsodium's 64-byte secret key (seed || public key), to sign many times from one seed."""
    _public, secret = sodium.crypto_sign_seed_keypair(seed)
    return bytes(secret)


def ed25519_sign_with_secret_key(message: bytes, secret_key: bytes) -> bytes:
    return bytes(sodium.crypto_sign(message, secret_key)[:64])


def ed25519_sign(message: bytes, seed: bytes) -> bytes:
    return ed25519_sign_with_secret_key(message, ed25519_secret_key(seed))


def ed25519_verify(signature: bytes, message: bytes, public_key: bytes) -> bool:
    """libsodium's strict verification (S < L, canonical A and R, neither of small order)."""
    if len(signature) != 64 or len(public_key) != 32:
        return False
    try:
        sodium.crypto_sign_open(signature + message, public_key)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
        return False


_P = 2**255 - 19
_D = (-121665 * pow(121666, -1, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_X25519_SMALL_ORDER_U = {
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    _P - 1,
}


def _edwards_add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    return (x1 * y2 + x2 * y1) * pow(1 + t, -1, _P) % _P, (y1 * y2 + x1 * x2) * pow(1 - t, -1, _P) % _P


def is_valid_ed25519_public_key(key: bytes) -> bool:
    """A canonical encoding (RFC 8032 §5.1.3, y < p) of a curve point that is not of small order:
    the rule the TypeScript code applies (noble's strict decoding, then isSmallOrder)."""
    if len(key) != 32:
        return False
    n = int.from_bytes(key, "little")
    y = n & ((1 << 255) - 1)
    sign = n >> 255
    if y >= _P:
        return False
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x2 = u * pow(v, -1, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
        if (x * x - x2) % _P != 0:
            return False
    if x == 0 and sign == 1:
        return False
    if x & 1 != sign:
        x = _P - x
    point = (x, y)
    for _ in range(3):  # times the cofactor 8: the identity exactly for points of small order
        point = _edwards_add(point, point)
    return point != (0, 1)


def is_valid_x25519_public_key(key: bytes) -> bool:
    """u < 2^255 - 19 and not one of the small-order u values."""
    if len(key) != 32:
        return False
    u = int.from_bytes(key, "little")
    return u < _P and u not in _X25519_SMALL_ORDER_U


def x25519_public_key(secret: bytes) -> bytes:
    return bytes(sodium.crypto_scalarmult_base(secret))


def x25519(secret: bytes, public: bytes) -> bytes | None:
    """The shared secret, or None for an all-zero result (a small-order public key)."""
    try:
        shared = bytes(sodium.crypto_scalarmult(secret, public))
    except nacl.exceptions.RuntimeError:
        return None
    except nacl.exceptions.CryptoError:
        return None
    if hmac.compare_digest(shared, bytes(32)):
        return None
    return shared


def random_bytes(length: int) -> bytes:
    return os.urandom(length)


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)

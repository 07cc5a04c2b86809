"""A P-256 key pair for the TLS client certificate the key server issues at enrollment
(docs/documents.md §10, ``tlsPublicKey``), with the standard library alone: PyNaCl has no P-256.

Only key generation is here, once per enrollment; every TLS signature is made by OpenSSL
(``ssl``) from the PEM written below. The scalar multiplication is Python integer arithmetic and
so not constant time: it runs once, on the device, at enrollment, and what an attacker would
have to time is that one computation. Curve: SEC 2 / FIPS 186-4 secp256r1.
"""

from __future__ import annotations

import base64
import secrets

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
A = P - 3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)

Point = tuple[int, int] | None  # None: the point at infinity

# DER prefixes (RFC 5480 SubjectPublicKeyInfo; RFC 5915 ECPrivateKey), id-ecPublicKey + prime256v1
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
_SEC1_PREFIX = bytes.fromhex("30770201010420")
_SEC1_MIDDLE = bytes.fromhex("a00a06082a8648ce3d030107a144034200")


def _add(p1: Point, p2: Point) -> Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2:
        if (y1 + y2) % P == 0:
            return None
        slope = (3 * x1 * x1 + A) * pow(2 * y1, -1, P) % P
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (slope * slope - x1 - x2) % P
    return x3, (slope * (x1 - x3) - y1) % P


def multiply(k: int, point: Point = G) -> Point:
    """``k · point`` by a Montgomery ladder (one addition and one doubling per bit)."""
    r0: Point = None
    r1: Point = point
    for i in reversed(range(256)):
        if (k >> i) & 1:
            r0, r1 = _add(r0, r1), _add(r1, r1)
        else:
            r1, r0 = _add(r0, r1), _add(r0, r0)
    return r0


def on_curve(point: Point) -> bool:
    if point is None:
        return False
    x, y = point
    return (y * y - (x * x * x + A * x + B)) % P == 0


def _uncompressed(point: Point) -> bytes:
    assert point is not None
    return b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


def generate_key_pair() -> tuple[bytes, str]:
    """A fresh key: (DER SubjectPublicKeyInfo, the private key as a PEM ``EC PRIVATE KEY``)."""
    d = secrets.randbelow(N - 1) + 1
    public = _uncompressed(multiply(d))
    der = _SEC1_PREFIX + d.to_bytes(32, "big") + _SEC1_MIDDLE + public
    body = base64.encodebytes(der).decode("ascii").replace("\n", "")
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return _SPKI_PREFIX + public, f"-----BEGIN EC PRIVATE KEY-----\n{lines}\n-----END EC PRIVATE KEY-----\n"

"""ML-KEM-768 (FIPS 203) key generation and decapsulation, and X-Wing (draft-connolly-cfrg-xwing-kem-08)
on top of it, with the standard library (SHA-3 and SHAKE from ``hashlib``) and PyNaCl's X25519.

What a device needs for ``kem: "xwing"`` identities: make its key pair at enrollment and
decapsulate the HPKE ``enc`` of each epoch key in its bundles. Encapsulation (the key server's
side) is here only to test the rest. Pure Python: about ten milliseconds per operation, and not
constant time (python/README.md says why that is acceptable here); the X25519 half is libsodium.
Checked against the draft's test vector (packages/core/vectors/xwing-draft-connolly-08.json).
"""

from __future__ import annotations

import hashlib

from . import _crypto

Q = 3329
N = 256
K = 3  # ML-KEM-768
ETA1 = ETA2 = 2
DU, DV = 10, 4
ZETA = 17

Poly = list[int]


def _bitrev7(i: int) -> int:
    return int(f"{i:07b}"[::-1], 2)


ZETAS = [pow(ZETA, _bitrev7(i), Q) for i in range(128)]
GAMMAS = [pow(ZETA, 2 * _bitrev7(i) + 1, Q) for i in range(128)]
N_INV = pow(128, -1, Q)


def _ntt(f: Poly) -> Poly:
    f = list(f)
    i = 1
    length = 128
    while length >= 2:
        for start in range(0, N, 2 * length):
            zeta = ZETAS[i]
            i += 1
            for j in range(start, start + length):
                t = zeta * f[j + length] % Q
                f[j + length] = (f[j] - t) % Q
                f[j] = (f[j] + t) % Q
        length //= 2
    return f


def _ntt_inverse(f: Poly) -> Poly:
    f = list(f)
    i = 127
    length = 2
    while length <= 128:
        for start in range(0, N, 2 * length):
            zeta = ZETAS[i]
            i -= 1
            for j in range(start, start + length):
                t = f[j]
                f[j] = (t + f[j + length]) % Q
                f[j + length] = zeta * (f[j + length] - t) % Q
        length *= 2
    return [x * N_INV % Q for x in f]


def _multiply_ntts(f: Poly, g: Poly) -> Poly:
    h = [0] * N
    for i in range(128):
        a0, a1, b0, b1 = f[2 * i], f[2 * i + 1], g[2 * i], g[2 * i + 1]
        h[2 * i] = (a0 * b0 + a1 * b1 * GAMMAS[i]) % Q
        h[2 * i + 1] = (a0 * b1 + a1 * b0) % Q
    return h


def _add(f: Poly, g: Poly) -> Poly:
    return [(a + b) % Q for a, b in zip(f, g, strict=True)]


def _sample_ntt(seed: bytes) -> Poly:
    stream = hashlib.shake_128(seed).digest(840)  # enough with overwhelming probability
    out: Poly = []
    pos = 0
    while len(out) < N:
        if pos + 3 > len(stream):
            stream = hashlib.shake_128(seed).digest(len(stream) * 2)
        b0, b1, b2 = stream[pos], stream[pos + 1], stream[pos + 2]
        pos += 3
        d1 = b0 + 256 * (b1 % 16)
        d2 = (b1 >> 4) + 16 * b2
        if d1 < Q:
            out.append(d1)
        if d2 < Q and len(out) < N:
            out.append(d2)
    return out


def _cbd(data: bytes, eta: int) -> Poly:
    bits = [(data[i // 8] >> (i % 8)) & 1 for i in range(len(data) * 8)]
    out = []
    for i in range(N):
        x = sum(bits[2 * i * eta + j] for j in range(eta))
        y = sum(bits[2 * i * eta + eta + j] for j in range(eta))
        out.append((x - y) % Q)
    return out


def _prf(seed: bytes, nonce: int, eta: int) -> bytes:
    return hashlib.shake_256(seed + bytes([nonce])).digest(64 * eta)


def _encode(f: Poly, d: int) -> bytes:
    value = 0
    for i, x in enumerate(f):
        value |= x << (i * d)
    return value.to_bytes(32 * d, "little")


def _decode(data: bytes, d: int) -> Poly:
    value = int.from_bytes(data, "little")
    mask = (1 << d) - 1
    out = [(value >> (i * d)) & mask for i in range(N)]
    return [x % Q for x in out] if d == 12 else out


def _compress(x: int, d: int) -> int:
    return ((x << d) + Q // 2) // Q % (1 << d)


def _decompress(y: int, d: int) -> int:
    return (Q * y + (1 << (d - 1))) >> d


def _matrix(rho: bytes) -> list[list[Poly]]:
    return [[_sample_ntt(rho + bytes([j, i])) for j in range(K)] for i in range(K)]


def _pke_keygen(d: bytes) -> tuple[bytes, bytes]:
    digest = hashlib.sha3_512(d + bytes([K])).digest()
    rho, sigma = digest[:32], digest[32:]
    a = _matrix(rho)
    s = [_ntt(_cbd(_prf(sigma, i, ETA1), ETA1)) for i in range(K)]
    e = [_ntt(_cbd(_prf(sigma, K + i, ETA1), ETA1)) for i in range(K)]
    t = []
    for i in range(K):
        acc = e[i]
        for j in range(K):
            acc = _add(acc, _multiply_ntts(a[i][j], s[j]))
        t.append(acc)
    return b"".join(_encode(p, 12) for p in t) + rho, b"".join(_encode(p, 12) for p in s)


def _pke_encrypt(ek: bytes, m: bytes, r: bytes) -> bytes:
    t = [_decode(ek[384 * i : 384 * (i + 1)], 12) for i in range(K)]
    a = _matrix(ek[384 * K :])
    y = [_ntt(_cbd(_prf(r, i, ETA1), ETA1)) for i in range(K)]
    e1 = [_cbd(_prf(r, K + i, ETA2), ETA2) for i in range(K)]
    e2 = _cbd(_prf(r, 2 * K, ETA2), ETA2)
    u = []
    for i in range(K):
        acc = [0] * N
        for j in range(K):
            acc = _add(acc, _multiply_ntts(a[j][i], y[j]))  # A transposed
        u.append(_add(_ntt_inverse(acc), e1[i]))
    mu = [_decompress(bit, 1) for bit in _decode(m, 1)]
    acc = [0] * N
    for i in range(K):
        acc = _add(acc, _multiply_ntts(t[i], y[i]))
    v = _add(_add(_ntt_inverse(acc), e2), mu)
    c1 = b"".join(_encode([_compress(x, DU) for x in p], DU) for p in u)
    return c1 + _encode([_compress(x, DV) for x in v], DV)


def _pke_decrypt(dk: bytes, c: bytes) -> bytes:
    u = [[_decompress(x, DU) for x in _decode(c[320 * i : 320 * (i + 1)], DU)] for i in range(K)]
    v = [_decompress(x, DV) for x in _decode(c[320 * K :], DV)]
    s = [_decode(dk[384 * i : 384 * (i + 1)], 12) for i in range(K)]
    acc = [0] * N
    for i in range(K):
        acc = _add(acc, _multiply_ntts(s[i], _ntt(u[i])))
    w = [(a - b) % Q for a, b in zip(v, _ntt_inverse(acc), strict=True)]
    return _encode([_compress(x, 1) for x in w], 1)


def mlkem_keygen(d: bytes, z: bytes) -> tuple[bytes, bytes]:
    """ML-KEM.KeyGen_internal(d, z): (encapsulation key 1184 bytes, decapsulation key 2400)."""
    ek, dk_pke = _pke_keygen(d)
    return ek, dk_pke + ek + hashlib.sha3_256(ek).digest() + z


def mlkem_encaps(ek: bytes, m: bytes) -> tuple[bytes, bytes]:
    """ML-KEM.Encaps_internal(ek, m): (shared secret, ciphertext 1088 bytes)."""
    digest = hashlib.sha3_512(m + hashlib.sha3_256(ek).digest()).digest()
    return digest[:32], _pke_encrypt(ek, m, digest[32:])


def mlkem_decaps(dk: bytes, c: bytes) -> bytes:
    """ML-KEM.Decaps_internal(dk, c): the shared secret (an implicit-rejection key when ``c`` is altered)."""
    dk_pke, ek = dk[: 384 * K], dk[384 * K : 768 * K + 32]
    h, z = dk[768 * K + 32 : 768 * K + 64], dk[768 * K + 64 :]
    m = _pke_decrypt(dk_pke, c)
    digest = hashlib.sha3_512(m + h).digest()
    rejected = hashlib.shake_256(z + c).digest(32)
    ok = _crypto.constant_time_equal(_pke_encrypt(ek, m, digest[32:]), c)
    return digest[:32] if ok else rejected


# --- X-Wing -----------------------------------------------------------------------------------

XWING_LABEL = b"\\.//^\\"
XWING_PUBLIC_KEY_LENGTH = 1216
XWING_CIPHERTEXT_LENGTH = 1120


def _xwing_expand(seed: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    expanded = hashlib.shake_256(seed).digest(96)
    ek, dk = mlkem_keygen(expanded[:32], expanded[32:64])
    sk_x = expanded[64:]
    return ek, dk, sk_x, _crypto.x25519_public_key(sk_x)


def _combine(ss_m: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest()


def xwing_public_key(seed: bytes) -> bytes:
    """The 1216-byte public key of a 32-byte X-Wing secret key (seed)."""
    ek, _, _, pk_x = _xwing_expand(seed)
    return ek + pk_x


def xwing_decapsulate(ciphertext: bytes, seed: bytes) -> bytes | None:
    """The 32-byte shared secret, or None for a malformed ciphertext or a small-order X25519 part."""
    if len(ciphertext) != XWING_CIPHERTEXT_LENGTH or len(seed) != 32:
        return None
    _, dk, sk_x, pk_x = _xwing_expand(seed)
    ct_m, ct_x = ciphertext[:1088], ciphertext[1088:]
    ss_x = _crypto.x25519(sk_x, ct_x)
    if ss_x is None:
        return None
    return _combine(mlkem_decaps(dk, ct_m), ss_x, ct_x, pk_x)


def xwing_encapsulate(public_key: bytes, eseed: bytes) -> tuple[bytes, bytes]:
    """(shared secret, ciphertext) from a 64-byte ephemeral seed: for tests."""
    ek, pk_x = public_key[:1184], public_key[1184:]
    ss_m, ct_m = mlkem_encaps(ek, eseed[:32])
    ek_x = eseed[32:]
    ct_x = _crypto.x25519_public_key(ek_x)
    ss_x = _crypto.x25519(ek_x, pk_x)
    assert ss_x is not None
    return _combine(ss_m, ss_x, ct_x, pk_x), ct_m + ct_x

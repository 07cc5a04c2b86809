"""The Ed25519 public-key rule of docs/documents.md §2, as written there: canonical, a curve
point, not of small order; the five small-order y values refused; mixed-order points accepted."""

from __future__ import annotations

from smqtt import _crypto

P = 2**255 - 19
SMALL_ORDER_Y = [  # docs/documents.md §2, little-endian hex
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
]


def decode(data: bytes) -> tuple[int, int]:
    n = int.from_bytes(data, "little")
    y, sign = n & ((1 << 255) - 1), n >> 255
    u, v = (y * y - 1) % P, (_crypto._D * y * y + 1) % P
    x2 = u * pow(v, -1, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * _crypto._SQRT_M1 % P
    assert (x * x - x2) % P == 0
    return (P - x if x & 1 != sign else x), y


def encode(point: tuple[int, int]) -> bytes:
    x, y = point
    return (y | (x & 1) << 255).to_bytes(32, "little")


def test_the_small_order_points_are_refused_with_either_sign_bit() -> None:
    for hex_y in SMALL_ORDER_Y:
        y = bytes.fromhex(hex_y)
        assert not _crypto.is_valid_ed25519_public_key(y), hex_y
        assert not _crypto.is_valid_ed25519_public_key(y[:31] + bytes([y[31] | 0x80])), hex_y


def test_a_mixed_order_point_is_accepted_and_a_non_canonical_y_refused() -> None:
    base = decode(encode(((15112221349535400772501151409588531511454012693041857206046113283949847762202), 4 * pow(5, -1, P) % P)))
    torsion = decode(bytes.fromhex(SMALL_ORDER_Y[3]))
    mixed = encode(_crypto._edwards_add(base, torsion))
    assert _crypto.is_valid_ed25519_public_key(encode(base))
    assert _crypto.is_valid_ed25519_public_key(mixed)
    assert mixed.hex() == "da99e28ba529cdde35a25fba9059e78ecaee239f99755b9b1aa4f65df00803e2"  # the example in docs/documents.md §2
    assert not _crypto.is_valid_ed25519_public_key((P + 1).to_bytes(32, "little"))  # y = p + 1, i.e. 1, not canonical

"""Byte helpers: strict base64url (no padding, canonical), LEB128 varints, checks."""

from __future__ import annotations

import base64
import binascii
import re

_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def to_base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_base64url(text: object) -> bytes | None:
    """Strict base64url: no padding, no other alphabet, canonical trailing bits; None when bad."""
    if not isinstance(text, str) or not _B64URL.match(text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # Canonical: unused low bits of the last character must be zero, so re-encoding round-trips.
    if to_base64url(data) != text:
        return None
    return data


def check_bytes(value: object, label: str, length: int | None = None) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{label} must be bytes")
    data = bytes(value)
    if length is not None and len(data) != length:
        raise ValueError(f"{label} must be {length} bytes, got {len(data)}")
    return data


def check_uint(value: object, label: str, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{label} must be an int")
    if value < 0 or value > maximum:
        raise ValueError(f"{label} must be in [0, {maximum}]")
    return value


def write_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)

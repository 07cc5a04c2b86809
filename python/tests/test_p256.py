"""The P-256 key made for the TLS client certificate: a point of the curve, and what OpenSSL
reads from the private key is the public key sent to the key server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from smqtt import _p256


def test_the_curve_constants_hold() -> None:
    assert _p256.on_curve(_p256.G)
    assert _p256.multiply(_p256.N) is None  # G has order n
    assert _p256.multiply(2) == _p256._add(_p256.G, _p256.G)
    assert _p256.multiply(3) == _p256._add(_p256.multiply(2), _p256.G)


def test_a_generated_key_is_on_the_curve_and_encoded_as_rfc_5480_says() -> None:
    spki, pem = _p256.generate_key_pair()
    assert len(spki) == 91 and spki[26] == 0x04
    point = (int.from_bytes(spki[27:59], "big"), int.from_bytes(spki[59:], "big"))
    assert _p256.on_curve(point)
    assert pem.startswith("-----BEGIN EC PRIVATE KEY-----\n") and pem.endswith("-----END EC PRIVATE KEY-----\n")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_openssl_derives_the_same_public_key(tmp_path: Path) -> None:
    spki, pem = _p256.generate_key_pair()
    key = tmp_path / "key.pem"
    key.write_text(pem)
    derived = subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    assert derived == spki

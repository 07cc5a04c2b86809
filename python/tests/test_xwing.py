"""X-Wing (ML-KEM-768 + X25519) for ``kem: "xwing"`` identities: the draft's vector, read from
packages/core/vectors, HPKE with KEM 0x647a, and a key bundle whose epoch key is sealed with it."""

from __future__ import annotations

from conftest import vectors
from fixtures import KEY_SERVER_SEED, NOW

from smqtt import _crypto, _mlkem
from smqtt._bytes import to_base64url
from smqtt.documents import Identity, group_key_info, open_key_bundle, sign_document
from smqtt.hpke import hpke_open, hpke_seal, setup_base_recipient

V = vectors("xwing-draft-connolly-08.json")["vectors"][0]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def test_the_draft_vector() -> None:
    assert _mlkem.xwing_public_key(h(V["seed"])).hex() == V["pk"]
    shared, ciphertext = _mlkem.xwing_encapsulate(h(V["pk"]), h(V["eseed"]))
    assert ciphertext.hex() == V["ct"] and shared.hex() == V["ss"]
    assert _mlkem.xwing_decapsulate(h(V["ct"]), h(V["seed"])) == h(V["ss"])


def test_an_altered_ciphertext_gives_another_secret_and_a_bad_length_none() -> None:
    altered = bytearray(h(V["ct"]))
    altered[5] ^= 1  # in the ML-KEM part: implicit rejection, a different (pseudo-random) secret
    assert _mlkem.xwing_decapsulate(bytes(altered), h(V["seed"])) not in (None, h(V["ss"]))
    assert _mlkem.xwing_decapsulate(h(V["ct"])[:-1], h(V["seed"])) is None
    zero_x25519 = h(V["ct"])[:1088] + bytes(32)  # a small-order X25519 share
    assert _mlkem.xwing_decapsulate(zero_x25519, h(V["seed"])) is None


def test_hpke_with_xwing_round_trips_and_refuses_another_key() -> None:
    me = Identity.generate("app-pq", "xwing")
    assert len(me.agreement_key) == 1216
    enc, sealed = hpke_seal(me.agreement_key, b"info", b"epoch key", kem="xwing")
    assert len(enc) == 1120
    assert hpke_open(enc, me.agreement_secret, b"info", sealed, kem="xwing") == b"epoch key"
    other = Identity.generate("other", "xwing")
    context = setup_base_recipient(enc, other.agreement_secret, b"info", "xwing")
    assert context is None or _crypto.aead_open(_crypto.CHACHA20_POLY1305, context.key, context.base_nonce, sealed, b"") is None
    assert Identity.from_json(me.to_json()) == me


def test_a_key_bundle_for_an_xwing_recipient_opens() -> None:
    me = Identity.generate("app-pq", "xwing")
    epoch_key = bytes(range(32))
    enc, sealed = hpke_seal(me.agreement_key, group_key_info(me.id, 7, 300, 1), epoch_key, kem="xwing")
    body = {
        "type": "smqtt.key-bundle", "v": 2, "principal": me.id, "issuedAt": NOW, "notBefore": NOW - 60,
        "notAfter": NOW + 3600,
        "groups": [{
            "group": 7, "name": "thermostats", "filter": "home/+/thermostat/#", "suite": 1,
            "epochs": [{"epoch": 300, "activatesAt": NOW - 3600, "retiresAt": NOW + 7200, "enc": to_base64url(enc),
                        "sealedKey": to_base64url(sealed), "kem": "xwing"}],
            "writers": [],
        }],
    }
    signed = sign_document("smqtt.key-bundle", body, KEY_SERVER_SEED)
    opened = open_key_bundle(signed, key_server_public_key=_crypto.ed25519_public_key(KEY_SERVER_SEED),
                             recipient=me, now=NOW)
    assert opened.groups[0].epochs[0].key == epoch_key

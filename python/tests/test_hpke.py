from conftest import vectors

from smqtt import _crypto
from smqtt.errors import SmqttError
from smqtt.hpke import derive_x25519_key_pair, hpke_open, hpke_seal, setup_base_recipient, setup_base_sender

V = vectors("hpke-rfc9180-x25519-sha256-chacha20poly1305.json")
h = bytes.fromhex


def test_rfc9180_a_2_1() -> None:
    assert (V["mode"], V["kem_id"], V["kdf_id"], V["aead_id"]) == (0, 32, 1, 3)
    sk_e, pk_e = derive_x25519_key_pair(h(V["ikmE"]))
    assert (sk_e.hex(), pk_e.hex()) == (V["skEm"], V["pkEm"])
    sk_r, pk_r = derive_x25519_key_pair(h(V["ikmR"]))
    assert (sk_r.hex(), pk_r.hex()) == (V["skRm"], V["pkRm"])
    sender = setup_base_sender(pk_r, h(V["info"]), unsafe_ephemeral_secret=sk_e)
    assert sender.enc.hex() == V["enc"]
    assert sender.shared_secret.hex() == V["shared_secret"]
    assert (sender.key.hex(), sender.base_nonce.hex(), sender.exporter_secret.hex()) == (
        V["key"], V["base_nonce"], V["exporter_secret"],
    )
    receiver = setup_base_recipient(h(V["enc"]), sk_r, h(V["info"]))
    assert receiver == sender
    for e in V["encryptions"]:
        nonce = sender.nonce(e["sequence_number"])
        assert nonce.hex() == e["nonce"]
        ct = _crypto.aead_seal(_crypto.CHACHA20_POLY1305, sender.key, nonce, h(e["pt"]), h(e["aad"]))
        assert ct.hex() == e["ct"]


def test_single_shot_round_trip_and_uniform_failure() -> None:
    sk, pk = derive_x25519_key_pair(b"\x07" * 32)
    enc, ct = hpke_seal(pk, b"info", b"k" * 32)
    assert hpke_open(enc, sk, b"info", ct) == b"k" * 32
    for args in ((enc, sk, b"other", ct), (enc, sk, b"info", ct[:-1] + b"\x00"), (bytes(32), sk, b"info", ct)):
        try:
            hpke_open(*args)
        except SmqttError as err:
            assert err.code == "ERR_HPKE_OPEN_FAILED"
        else:
            raise AssertionError("opened")

"""Every case of the frozen envelope vectors, byte for byte."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import vectors
from properties_json import properties_from_json, properties_to_json

from smqtt import _crypto
from smqtt.envelope import (
    EnvelopeSigner,
    EpochKey,
    StaticKeys,
    encode_bound_properties,
    open_envelope,
    parse_envelope,
    seal_envelope,
    verify_envelope,
)
from smqtt.errors import SmqttError

PLAIN = vectors("envelope-v1.json")["cases"]
BOUND = vectors("envelope-v1-bound-properties.json")["cases"]


def needs_suite(case: dict[str, Any]) -> None:
    if case["suite"] == 2 and not _crypto.aes_gcm_available():
        pytest.skip("AES-256-GCM (suite 2) needs libsodium on a CPU with AES-NI")


def keys_of(case: dict[str, Any]) -> tuple[EpochKey, EnvelopeSigner, StaticKeys]:
    epoch_key = EpochKey(
        group=case["group"], epoch=case["epoch"], suite=case["suite"], key=bytes.fromhex(case["epochKey"])
    )
    signer = EnvelopeSigner(kid=case["kid"], seed=bytes.fromhex(case["signingSeed"]))
    assert signer.public_key.hex() == case["signingPublicKey"]
    keys = StaticKeys([epoch_key], {(case["group"], case["kid"]): signer.public_key})
    return epoch_key, signer, keys


@pytest.mark.parametrize("case", PLAIN, ids=[c["name"] for c in PLAIN])
def test_envelope_v1(case: dict[str, Any]) -> None:
    epoch_key, signer, keys = keys_of(case)
    key, iv = epoch_key.sender_key(case["kid"])
    assert key.hex() == case["senderKey"] and iv.hex() == case["senderIv"]
    needs_suite(case)
    sealed = seal_envelope(
        topic=case["topic"],
        payload=bytes.fromhex(case["payload"]),
        epoch_key=epoch_key,
        signer=signer,
        seq=case["seq"],
        sent_at=case["sentAt"],
        retain=case["retain"],
    )
    assert sealed.hex() == case["envelope"]
    envelope = bytes.fromhex(case["envelope"])
    opened = open_envelope(envelope, case["topic"], keys=keys, now=case["sentAt"])
    assert opened.payload.hex() == case["payload"]
    h = opened.header
    assert (h.group, h.epoch, h.sender, h.seq, h.sent_at, h.retain, h.suite) == (
        case["group"], case["epoch"], case["kid"], case["seq"], case["sentAt"], case["retain"], case["suite"],
    )
    verify_envelope(envelope, case["topic"], writer_key=keys.writer_key)
    # moved to another topic: both signature and AEAD refuse
    with pytest.raises(SmqttError) as err:
        open_envelope(envelope, case["topic"] + "x", keys=keys, now=case["sentAt"])
    assert err.value.code == "ERR_ENVELOPE_SIGNATURE_INVALID"


@pytest.mark.parametrize("case", BOUND, ids=[c["name"] for c in BOUND])
def test_envelope_v1_bound_properties(case: dict[str, Any]) -> None:
    epoch_key, signer, keys = keys_of(case)
    sent = properties_from_json(case["properties"])
    assert sent is not None
    binding = parse_envelope(bytes.fromhex(case["envelope"])).header.properties
    assert binding is not None
    assert (binding.content_type, binding.response_topic, binding.correlation_data, binding.user_properties) == (
        case["binding"]["contentType"], case["binding"]["responseTopic"],
        case["binding"]["correlationData"], case["binding"]["userProperties"],
    )
    assert (encode_bound_properties(binding, sent) or b"").hex() == case["boundProperties"]
    needs_suite(case)
    if all(case["binding"][k] for k in ("contentType", "responseTopic", "correlationData")):
        sealed = seal_envelope(
            topic=case["topic"], payload=bytes.fromhex(case["payload"]), epoch_key=epoch_key, signer=signer,
            seq=case["seq"], sent_at=case["sentAt"], retain=case["retain"], properties=sent,
        )
        assert sealed.hex() == case["envelope"]
    envelope = bytes.fromhex(case["envelope"])
    for check in case["checks"]:
        received = properties_from_json(check["received"])
        if check["result"] == "opened":
            opened = open_envelope(envelope, case["topic"], keys=keys, now=case["sentAt"], properties=received)
            assert opened.payload.hex() == case["payload"], check["name"]
            assert properties_to_json(opened.properties.verified) == check["verified"], check["name"]
            assert properties_to_json(opened.properties.unsigned) == check["unsigned"], check["name"]
            verify_envelope(envelope, case["topic"], writer_key=keys.writer_key, properties=received)
        else:
            for run in (
                lambda: open_envelope(envelope, case["topic"], keys=keys, now=case["sentAt"], properties=received),
                lambda: verify_envelope(envelope, case["topic"], writer_key=keys.writer_key, properties=received),
            ):
                with pytest.raises(SmqttError) as err:
                    run()
                assert err.value.code == check["result"], check["name"]

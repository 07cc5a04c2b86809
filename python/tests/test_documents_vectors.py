"""packages/core/vectors/documents-v1.json (docs/documents.md), every case."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import vectors

from smqtt import _crypto
from smqtt._bytes import from_base64url, to_base64url
from smqtt.documents import (
    Identity,
    RevocationList,
    create_connect_password,
    create_enrollment_request,
    group_key_info,
    open_key_bundle,
    open_principal_record,
    open_writer_record,
    sign_request,
    sign_with_context,
    signed_bytes,
    verify_connect_password,
    verify_request_signature,
)
from smqtt.errors import SmqttError
from smqtt.hpke import hpke_open, setup_base_sender

V = vectors("documents-v1.json")
h = bytes.fromhex
KEY_SERVER = h(V["keyServer"]["signingKey"])


def identity(json_: dict[str, Any]) -> Identity:
    ident = Identity(json_["id"], h(json_["signingSeed"]), h(json_["agreementSecret"]), json_["kem"])
    assert ident.signing_key.hex() == json_["signingKey"]
    assert ident.agreement_key.hex() == json_["agreementKey"]
    return ident


def principal(principal_id: str) -> Identity:
    return identity(next(p for p in V["principals"] if p["id"] == principal_id))


def outcome(run: Any) -> str:
    try:
        run()
    except SmqttError as err:
        return err.code
    return "ok"


def test_key_server_and_principal_keys() -> None:
    assert _crypto.ed25519_public_key(h(V["keyServer"]["signingSeed"])) == KEY_SERVER
    for p in V["principals"]:
        identity(p)


@pytest.mark.parametrize("case", V["signatureWithContext"], ids=lambda c: c["context"])
def test_signature_with_context(case: dict[str, Any]) -> None:
    assert signed_bytes(case["context"], h(case["message"])).hex() == case["signedBytes"]
    assert sign_with_context(h(case["signingSeed"]), case["context"], h(case["message"])).hex() == case["signature"]


def test_base64url() -> None:
    for case in V["base64url"]["valid"]:
        assert to_base64url(h(case["hex"])) == case["text"]
        assert from_base64url(case["text"]) == h(case["hex"])
    for text in V["base64url"]["invalid"]:
        assert from_base64url(text) is None, text


@pytest.mark.parametrize("case", V["hpke"], ids=lambda c: c["name"])
def test_hpke_as_bundles_use_it(case: dict[str, Any]) -> None:
    info = group_key_info(case["recipient"], case["group"], case["epoch"], case["suite"])
    assert info.hex() == case["info"]
    context = setup_base_sender(h(case["recipientPublicKey"]), info, unsafe_ephemeral_secret=h(case["ephemeralSecretKey"]))
    assert context.enc.hex() == case["enc"]
    sealed = _crypto.aead_seal(_crypto.CHACHA20_POLY1305, context.key, context.base_nonce, h(case["plaintext"]), h(case["aad"]))
    assert sealed.hex() == case["ciphertext"]
    assert hpke_open(h(case["enc"]), h(case["recipientSecretKey"]), info, h(case["ciphertext"])).hex() == case["plaintext"]


def bundle_json(opened: Any) -> dict[str, Any]:
    return {
        "principal": opened.principal,
        "issuedAt": opened.issued_at,
        "notBefore": opened.not_before,
        "notAfter": opened.not_after,
        "groups": [
            {
                "group": g.group,
                "name": g.name,
                "filter": g.filter,
                "suite": g.suite,
                "epochs": [
                    {"epoch": e.epoch, "activatesAt": e.activates_at, "retiresAt": e.retires_at, "key": e.key.hex()}
                    for e in g.epochs
                ],
                "writers": [
                    {
                        "kid": kid,
                        "principal": w.principal,
                        "signingKey": w.signing_key.hex(),
                        "publish": {"allow": list(w.publish.allow), "deny": list(w.publish.deny)},
                    }
                    for kid, w in g.writers.items()
                ],
            }
            for g in opened.groups
        ],
    }


def test_key_bundle_opens() -> None:
    kb = V["keyBundle"]
    recipient = identity(kb["recipient"])
    assert from_base64url(kb["document"]["payload"]) == kb["payloadText"].encode()
    opened = open_key_bundle(kb["document"], key_server_public_key=KEY_SERVER, recipient=recipient, now=kb["now"])
    assert bundle_json(opened) == kb["opened"]
    for boundary in kb["boundaries"]:
        assert outcome(
            lambda: open_key_bundle(kb["document"], key_server_public_key=KEY_SERVER, recipient=recipient, now=boundary["now"])
        ) == boundary["result"]


@pytest.mark.parametrize("case", V["keyBundle"]["negative"], ids=lambda c: c["name"])
def test_key_bundle_refused(case: dict[str, Any]) -> None:
    recipient = principal(case["recipient"])
    assert outcome(
        lambda: open_key_bundle(case["document"], key_server_public_key=KEY_SERVER, recipient=recipient, now=case["now"])
    ) == case["error"]


@pytest.mark.parametrize("case", V["keyBundleAccepted"], ids=lambda c: c["name"])
def test_key_bundle_accepted(case: dict[str, Any]) -> None:
    kb = V["keyBundle"]
    recipient = identity(kb["recipient"])
    run = lambda: open_key_bundle(case["document"], key_server_public_key=KEY_SERVER, recipient=recipient, now=kb["now"])  # noqa: E731
    assert outcome(run) == case["error"]


def test_revocation_lists() -> None:
    rl = V["revocationList"]
    for case in rl["valid"]:
        held = RevocationList()
        assert held.accept(case["document"], key_server_public_key=KEY_SERVER)
        assert (held.version, held.issued_at, held.pruned_before) == (case["version"], case["issuedAt"], case["prunedBefore"])
        assert [
            {"principal": e.principal, "kid": e.kid, "revokedAt": e.revoked_at} for e in held.entries
        ] == case["entries"]
    for case in rl["negative"]:
        assert outcome(lambda: RevocationList().accept(case["document"], key_server_public_key=KEY_SERVER)) == case["error"], case["name"]
    for case in rl["sequences"]:
        held = RevocationList()
        results = []
        for document in case["documents"]:
            try:
                results.append("accepted" if held.accept(document, key_server_public_key=KEY_SERVER) else "unchanged")
            except SmqttError as err:
                results.append(err.code)
        assert results == case["results"], case["name"]
        assert (held.version, held.pruned_before) == (case["held"]["version"], case["held"]["prunedBefore"])


def test_writer_record() -> None:
    wr = V["writerRecord"]
    opened = open_writer_record(wr["document"], key_server_public_key=KEY_SERVER, reader=wr["reader"], now=wr["now"])
    assert {
        "reader": opened.reader,
        "group": opened.group,
        "filter": opened.filter,
        "issuedAt": opened.issued_at,
        "notAfter": opened.not_after,
        "writers": [
            {"kid": kid, "principal": w.principal, "signingKey": w.signing_key.hex(),
             "publish": {"allow": list(w.publish.allow), "deny": list(w.publish.deny)}}
            for kid, w in opened.writers.items()
        ],
    } == wr["opened"]
    for b in wr["boundaries"]:
        assert outcome(lambda: open_writer_record(wr["document"], key_server_public_key=KEY_SERVER, reader=wr["reader"], now=b["now"])) == b["result"]
    for case in wr["negative"]:
        assert outcome(
            lambda: open_writer_record(case["document"], key_server_public_key=KEY_SERVER, reader=case["reader"], now=case["now"])
        ) == case["error"], case["name"]


def test_principal_record() -> None:
    pr = V["principalRecord"]
    record = open_principal_record(pr["document"], KEY_SERVER)
    assert json.loads(pr["payloadText"])["kid"] == record.kid
    for case in pr["negative"]:
        assert outcome(lambda: open_principal_record(case["document"], KEY_SERVER)) == case["error"], case["name"]


def test_connect_password() -> None:
    cp = V["connectPassword"]
    password = create_connect_password(h(cp["signingSeed"]), cp["clientId"], now=cp["timestamp"], nonce=h(cp["nonce"]))
    assert password == cp["password"]
    for check in cp["checks"]:
        assert outcome(
            lambda: verify_connect_password(check["password"], client_id=check["clientId"], signing_key=h(cp["signingKey"]), now=check["now"])
        ) == check["result"], check["name"]


def test_request_signatures() -> None:
    rs = V["requestSignature"]
    for r in rs["requests"]:
        headers = sign_request(
            r["principal"], h(r["signingSeed"]), method=r["method"], path=r["path"], body=r["body"].encode(),
            now=r["timestamp"], nonce=h(r["nonce"]),
        )
        assert headers == r["headers"], r["path"]
    # Each check names the method and path it is verified against (docs/documents.md §9).
    target = rs["requests"][2]
    key = _crypto.ed25519_public_key(h(target["signingSeed"]))
    for check in rs["checks"]:
        assert outcome(
            lambda: verify_request_signature(
                check["headers"], key, method=check["method"], path=check["path"], body=check["body"].encode(), now=check["now"]
            )
        ) == check["result"], check["name"]


def test_enrollment() -> None:
    e = V["enrollment"]
    ident = identity(e["identity"])
    request = create_enrollment_request(ident, e["token"], roles=e["request"].get("roles"))
    assert request == e["request"]
    assert json.dumps(request, separators=(",", ":")) == e["requestBody"]
    record = open_principal_record(e["response"]["principal"], from_base64url(e["response"]["keyServerPublicKey"]) or b"")
    assert record.kid == e["response"]["kid"] and record.signing_key == ident.signing_key


def test_push_message_carries_a_bundle() -> None:
    push = V["push"]
    message = json.loads(push["message"])
    assert push["topic"] == "smqtt/control/principals/thermostat-1" and message["type"] == "bundle"
    kb = V["keyBundle"]
    opened = open_key_bundle(message["bundle"], key_server_public_key=KEY_SERVER, recipient=identity(kb["recipient"]), now=kb["now"])
    assert opened.principal == "thermostat-1"

"""A key server in a few lines, for client-side tests: signed bundles and revocation lists."""

from __future__ import annotations

from typing import Any

from smqtt._bytes import to_base64url
from smqtt.documents import Identity, group_key_info, sign_document
from smqtt.hpke import hpke_seal

KEY_SERVER_SEED = bytes(range(100, 132))
NOW = 1_796_000_000
GROUP = 7
EPOCH = 300
FILTER = "home/+/thermostat/#"
EPOCH_KEY = bytes(range(32))


def identity(name: str) -> Identity:
    seed = name.encode().ljust(32, b"\x01")[:32]
    return Identity(name, seed, bytes(reversed(seed)))


def bundle(
    recipient: Identity,
    writers: list[tuple[int, Identity, str]],
    *,
    issued_at: int = NOW,
    epoch_key: bytes = EPOCH_KEY,
    seed: bytes = KEY_SERVER_SEED,
    epoch: int = EPOCH,
    retires_at: int = NOW + 7200,
) -> dict[str, str]:
    enc, sealed = hpke_seal(recipient.agreement_key, group_key_info(recipient.id, GROUP, epoch, 1), epoch_key)
    body: dict[str, Any] = {
        "type": "smqtt.key-bundle",
        "v": 2,
        "principal": recipient.id,
        "issuedAt": issued_at,
        "notBefore": issued_at - 60,
        "notAfter": issued_at + 3600,
        "groups": [
            {
                "group": GROUP,
                "name": "thermostats",
                "filter": FILTER,
                "suite": 1,
                "epochs": [
                    {
                        "epoch": epoch,
                        "activatesAt": NOW - 3600,
                        "retiresAt": retires_at,
                        "enc": to_base64url(enc),
                        "sealedKey": to_base64url(sealed),
                        "kem": "x25519",
                    }
                ],
                "writers": writers_json(writers),
            }
        ],
    }
    return sign_document("smqtt.key-bundle", body, seed)


def revocations(version: int, kids: list[int], seed: bytes = KEY_SERVER_SEED) -> dict[str, str]:
    body = {
        "type": "smqtt.revocations",
        "v": 1,
        "version": version,
        "issuedAt": NOW,
        "entries": [{"principal": f"p-{kid}", "kid": kid, "revokedAt": NOW} for kid in kids],
    }
    return sign_document("smqtt.revocations", body, seed)


def writer_record(writers: list[tuple[int, Identity, str]]) -> dict[str, str]:
    """The key server's answer to ``POST /v1/writers`` from app-1: writers of the group."""
    body = {
        "type": "smqtt.writer-record",
        "v": 1,
        "reader": "app-1",
        "group": GROUP,
        "filter": FILTER,
        "issuedAt": NOW,
        "notAfter": NOW + 300,
        "writers": writers_json(writers),
    }
    return sign_document("smqtt.writer-record", body, KEY_SERVER_SEED)


def writers_json(writers: list[tuple[int, Identity, str]]) -> list[dict[str, Any]]:
    """(kid, identity, the one filter it may publish to) as a bundle or writer record lists them."""
    return [
        {
            "kid": kid,
            "principal": who.id,
            "signingKey": to_base64url(who.signing_key),
            "publish": {"allow": [allow], "deny": []},
        }
        for kid, who, allow in writers
    ]

"""First start of a device: make an identity, redeem a one-time token at the key server, check
the signed principal record, and keep identity, key id and the pinned key-server key."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from . import _crypto, _p256
from ._bytes import from_base64url, to_base64url
from .documents import Identity, PrincipalRecord, create_enrollment_request, open_principal_record
from .errors import SmqttError
from .keyserver import KeyServerClient
from .storage import Storage

log = logging.getLogger("smqtt.enroll")

IDENTITY_KEY = "identity"
ENROLLMENT_KEY = "enrollment"
PINNED_KEY = "keyserver-key"


@dataclass(frozen=True)
class Enrollment:
    """Everything :func:`smqtt.secure` needs."""

    identity: Identity
    kid: int
    key_server_public_key: bytes
    key_server_url: str
    principal: PrincipalRecord
    #: the TLS client certificate the key server issued (PEM), with ``client_certificate=True``
    certificate_pem: str | None = None
    #: its P-256 private key (PEM), made on this device
    tls_private_key_pem: str | None = None

    @property
    def principal_id(self) -> str:
        return self.identity.id

    def write_client_certificate(self, directory: str) -> tuple[str, str]:
        """Writes the client certificate and its key (mode 0600) into ``directory`` for
        ``paho_client.tls_set(certfile=..., keyfile=...)`` (mutual TLS: the broker logs the
        device in by its certificate, no CONNECT password needed); returns their paths.

        Example::

            cert, key = enrollment.write_client_certificate("/var/lib/thermostat/tls")
            client.tls_set(ca_certs="ca.pem", certfile=cert, keyfile=key)
            sc = secure(client, enrollment, storage=storage, ca_file="ca.pem", connect_password=False)
        """
        if self.certificate_pem is None or self.tls_private_key_pem is None:
            raise SmqttError("ERR_IDENTITY_MALFORMED", "this enrollment holds no client certificate")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        paths = (os.path.join(directory, "client.pem"), os.path.join(directory, "client.key"))
        for path, text in zip(paths, (self.certificate_pem, self.tls_private_key_pem), strict=True):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(text)
        return paths


def _pinned(storage: Storage) -> bytes | None:
    text = storage.get(PINNED_KEY)
    if text is None:
        return None
    key = from_base64url(text)
    if key is None or len(key) != 32:
        raise SmqttError("ERR_KEY_INVALID", "the pinned key server key in storage is malformed")
    return key


def enroll(
    *,
    key_server_url: str,
    token: str,
    principal_id: str,
    storage: Storage,
    ca_file: str | None = None,
    roles: list[str] | None = None,
    key_server_public_key: bytes | None = None,
    client_certificate: bool = False,
    post_quantum: bool = False,
) -> Enrollment:
    """Enrolls this device with a one-time token; pins the key server's key on first use (or
    checks it against ``key_server_public_key``). A lost answer is retried once, the same.
    With ``client_certificate``, a P-256 TLS key is made here and the key server issues a client
    certificate for it (when it runs a CA), for mutual TLS to the broker. With ``post_quantum``,
    the agreement key is X-Wing (ML-KEM-768 + X25519): epoch keys reach this device sealed with it.

    Example::

        storage = FileStorage("./smqtt")
        enrollment = load_enrollment(storage) or enroll(
            key_server_url="https://keys:8443", ca_file="ca.pem", token=token,
            principal_id="thermostat-7", storage=storage)
    """
    if not isinstance(token, str) or not token:
        raise TypeError("token must be a non-empty string")
    if storage.get(ENROLLMENT_KEY) is not None:
        raise SmqttError("ERR_CONFLICT", "this storage already holds an enrollment; use load_enrollment()")
    in_storage = _pinned(storage)
    if key_server_public_key is not None and in_storage is not None and key_server_public_key != in_storage:
        raise SmqttError("ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID", "the given key server key differs from the pinned one")
    pinned = key_server_public_key or in_storage
    identity = Identity.generate(principal_id, "xwing" if post_quantum else "x25519")
    client = KeyServerClient(key_server_url, ca_file=ca_file)
    spki, tls_key_pem = _p256.generate_key_pair() if client_certificate else (None, None)
    request = create_enrollment_request(identity, token, roles=roles, tls_public_key=spki)
    try:
        response = client.enroll(request)
    except SmqttError as err:
        if err.code != "ERR_STORE_UNAVAILABLE":
            raise
        time.sleep(1)
        response = client.enroll(request)
    except OSError:
        # The answer was lost: the same request again is answered as the first time.
        time.sleep(1)
        response = client.enroll(request)
    offered = from_base64url(response["keyServerPublicKey"])
    if offered is None or len(offered) != 32:
        raise SmqttError("ERR_KEY_INVALID", "the key server sent a malformed public key")
    if pinned is not None and not _crypto.constant_time_equal(pinned, offered):
        raise SmqttError("ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID", "the key server key differs from the pinned one")
    key = pinned or offered
    principal = open_principal_record(response["principal"], key)
    if (
        principal.id != identity.id
        or principal.kid != response["kid"]
        or principal.signing_key != identity.signing_key
        or principal.agreement_key != identity.agreement_key
    ):
        raise SmqttError("ERR_IDENTITY_MALFORMED", "the principal record is not about this identity")
    if in_storage is None:
        storage.set(PINNED_KEY, to_base64url(key))
    storage.set(IDENTITY_KEY, json.dumps(identity.to_json()))
    stored: dict[str, Any] = {"v": 1, "kid": principal.kid, "keyserverUrl": key_server_url, "principal": response["principal"]}
    certificate = response.get("certificatePem") if client_certificate else None
    if client_certificate and not isinstance(certificate, str):
        log.warning("the key server issued no client certificate (it runs no CA): log in with the CONNECT password")
        certificate = None
    if certificate is not None:
        stored["certificatePem"] = certificate
        stored["tlsPrivateKeyPem"] = tls_key_pem
    storage.set(ENROLLMENT_KEY, json.dumps(stored))
    log.info("enrolled %s as kid %d", identity.id, principal.kid)
    return Enrollment(
        identity, principal.kid, key, key_server_url, principal,
        certificate, tls_key_pem if certificate is not None else None,
    )


def load_enrollment(storage: Storage) -> Enrollment | None:
    """The enrollment kept in ``storage``, or None; the principal record is verified again."""
    identity_text = storage.get(IDENTITY_KEY)
    enrollment_text = storage.get(ENROLLMENT_KEY)
    if identity_text is None or enrollment_text is None:
        return None
    key = _pinned(storage)
    if key is None:
        raise SmqttError("ERR_IDENTITY_MALFORMED", "storage holds no pinned key server key")
    try:
        stored = json.loads(enrollment_text)
        identity = Identity.from_json(json.loads(identity_text))
    except ValueError:
        raise SmqttError("ERR_IDENTITY_MALFORMED", "the stored enrollment is not JSON") from None
    if not isinstance(stored, dict) or stored.get("v") != 1 or not isinstance(stored.get("keyserverUrl"), str):
        raise SmqttError("ERR_IDENTITY_MALFORMED", "the stored enrollment is malformed")
    principal = open_principal_record(stored.get("principal"), key)
    if principal.id != identity.id or principal.signing_key != identity.signing_key:
        raise SmqttError("ERR_IDENTITY_MALFORMED", "the stored identity and principal record do not match")
    certificate, tls_key = stored.get("certificatePem"), stored.get("tlsPrivateKeyPem")
    if (certificate is None) != (tls_key is None) or not all(v is None or isinstance(v, str) for v in (certificate, tls_key)):
        raise SmqttError("ERR_IDENTITY_MALFORMED", "the stored client certificate is malformed")
    return Enrollment(identity, principal.kid, key, stored["keyserverUrl"], principal, certificate, tls_key)

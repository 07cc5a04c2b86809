"""One exception type with stable codes, the same list as docs/errors.md.

Switch on ``err.code``; messages may change, codes do not. Programmer mistakes (wrong argument
types or lengths) raise ``TypeError`` / ``ValueError`` instead.
"""

from __future__ import annotations

from typing import Final, Literal, TypeGuard

SmqttErrorCode = Literal[
    "ERR_ENVELOPE_MALFORMED",
    "ERR_ENVELOPE_UNSUPPORTED",
    "ERR_ENVELOPE_TOO_LARGE",
    "ERR_ENVELOPE_SIGNATURE_INVALID",
    "ERR_ENVELOPE_DECRYPTION_FAILED",
    "ERR_UNKNOWN_SENDER",
    "ERR_UNKNOWN_EPOCH",
    "ERR_REPLAY",
    "ERR_REPLAY_STATE_INVALID",
    "ERR_STALE",
    "ERR_SENDER_REVOKED",
    "ERR_SENDER_NOT_PERMITTED",
    "ERR_SEQUENCE_EXHAUSTED",
    "ERR_SEQUENCE_UNAVAILABLE",
    "ERR_IDENTITY_IN_USE",
    "ERR_KEY_INVALID",
    "ERR_HPKE_OPEN_FAILED",
    "ERR_BUNDLE_MALFORMED",
    "ERR_BUNDLE_SIGNATURE_INVALID",
    "ERR_BUNDLE_EXPIRED",
    "ERR_BUNDLE_NOT_YET_VALID",
    "ERR_BUNDLE_WRONG_RECIPIENT",
    "ERR_BUNDLE_ROLLBACK",
    "ERR_REVOCATION_LIST_MALFORMED",
    "ERR_REVOCATION_LIST_SIGNATURE_INVALID",
    "ERR_REVOCATION_LIST_ROLLBACK",
    "ERR_IDENTITY_MALFORMED",
    "ERR_TOPIC_INVALID",
    "ERR_FILTER_INVALID",
    "ERR_ACL_SUBSTITUTION_REFUSED",
    "ERR_POLICY_INVALID",
    "ERR_CERTIFICATE_REQUEST_INVALID",
    "ERR_CERTIFICATE_AUTHORITY_INVALID",
    "ERR_MASTER_KEY_INVALID",
    "ERR_SEALED_SECRET_INVALID",
    "ERR_CONFIG_INVALID",
    "ERR_REQUEST_SIGNATURE_INVALID",
    "ERR_UNAUTHENTICATED",
    "ERR_FORBIDDEN",
    "ERR_PRINCIPAL_REVOKED",
    "ERR_NOT_FOUND",
    "ERR_CONFLICT",
    "ERR_REQUEST_INVALID",
    "ERR_PAYLOAD_TOO_LARGE",
    "ERR_RATE_LIMITED",
    "ERR_UNSUPPORTED_MEDIA_TYPE",
    "ERR_ENROLLMENT_TOKEN_INVALID",
    "ERR_INTERNAL",
    "ERR_STORE_UNAVAILABLE",
    "ERR_PRINCIPAL_RECORD_SIGNATURE_INVALID",
    "ERR_SNAPSHOT_MALFORMED",
    "ERR_SNAPSHOT_SIGNATURE_INVALID",
    "ERR_NO_KEY_GROUP",
]

ERROR_CODES: Final[tuple[str, ...]] = SmqttErrorCode.__args__  # type: ignore[attr-defined]


class SmqttError(Exception):
    """An error about untrusted input, with a stable ``code`` from docs/errors.md.

    Example::

        try:
            opened = open_envelope(payload, topic, keys=keyring)
        except SmqttError as err:
            if err.code == "ERR_REPLAY":
                ...
    """

    code: SmqttErrorCode

    def __init__(self, code: SmqttErrorCode, message: str | None = None) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown SMQTT error code {code!r}")
        self.code = code
        super().__init__(message if message is not None else code)

    def __repr__(self) -> str:
        return f"SmqttError({self.code!r}, {str(self)!r})"


def is_error_code(value: object) -> TypeGuard[SmqttErrorCode]:
    """True when ``value`` is one of the codes (e.g. from a key server's JSON error body)."""
    return isinstance(value, str) and value in ERROR_CODES

"""SMQTT for Python: end-to-end security for MQTT, byte-compatible with the TypeScript client."""

from .documents import (
    Identity,
    OpenedKeyBundle,
    PrincipalRecord,
    RevocationList,
    create_connect_password,
    create_enrollment_request,
    open_key_bundle,
    open_principal_record,
    sign_request,
)
from .enroll import Enrollment, enroll, load_enrollment
from .envelope import (
    EnvelopeHeader,
    EnvelopeProperties,
    EnvelopeSigner,
    EpochKey,
    OpenedEnvelope,
    PropertyVerdict,
    StaticKeys,
    open_envelope,
    parse_envelope,
    seal_envelope,
    verify_envelope,
)
from .errors import ERROR_CODES, SmqttError, SmqttErrorCode
from .keyserver import KeyServerClient
from .replay import ReplayWindow
from .secure import SecureClient, SecureMessage, SecurityErrorEvent, secure
from .sequence import SequenceCounter
from .storage import FileStorage, MemoryStorage, Storage

__version__ = "0.1.0"

__all__ = [
    "ERROR_CODES",
    "Enrollment",
    "EnvelopeHeader",
    "EnvelopeProperties",
    "EnvelopeSigner",
    "EpochKey",
    "FileStorage",
    "Identity",
    "KeyServerClient",
    "MemoryStorage",
    "OpenedEnvelope",
    "OpenedKeyBundle",
    "PrincipalRecord",
    "PropertyVerdict",
    "ReplayWindow",
    "RevocationList",
    "SecureClient",
    "SecureMessage",
    "SecurityErrorEvent",
    "SequenceCounter",
    "SmqttError",
    "SmqttErrorCode",
    "StaticKeys",
    "Storage",
    "create_connect_password",
    "create_enrollment_request",
    "enroll",
    "load_enrollment",
    "open_envelope",
    "open_key_bundle",
    "open_principal_record",
    "parse_envelope",
    "seal_envelope",
    "secure",
    "sign_request",
    "verify_envelope",
]

"""``secure(paho_client, enrollment, ...)``: wraps a paho-mqtt client so that publishes are
sealed and signed and ``on_message`` gets only verified plaintext.

Works with paho-mqtt 1.6 and with 2.x under either callback API version (callbacks are taken
with ``*args``), over MQTT 3.1.1 and 5 (with MQTT 5, the sealer binds the PUBLISH properties).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._held import HeldEnvelopes, Wanted
from .documents import RevocationList, create_connect_password, open_key_bundle, open_writer_record
from .envelope import (
    EnvelopeProperties,
    EnvelopeSigner,
    PropertyVerdict,
    open_envelope,
    parse_envelope,
    seal_envelope,
)
from .enroll import Enrollment
from .errors import SmqttError
from .keyring import Keyring
from .keyserver import KeyServerClient
from .replay import ReplayWindow
from .sequence import SequenceCounter, key_server_sequence_source
from .storage import FileStorage, Storage
from .topic import topic_matches

log = logging.getLogger("smqtt")

CONTROL_TOPIC_PREFIX = "smqtt/control/"
MQTT_V5 = 5
#: at most this many writer ids per POST /v1/writers (docs/documents.md §9.1)
MAX_RECORD_WRITERS = 256
#: at most one key refresh per this many seconds for a retired sealing epoch
SEAL_REFRESH_INTERVAL = 5.0
#: codes for which an envelope is held while keys are fetched (docs/envelope.md)
_HOLD_CODES = ("ERR_UNKNOWN_SENDER", "ERR_UNKNOWN_EPOCH", "ERR_BUNDLE_EXPIRED")


@dataclass(frozen=True)
class _Received:
    topic: str
    payload: bytes
    retained: bool
    properties: EnvelopeProperties | None
    qos: int


@dataclass(frozen=True)
class SecureMessage:
    """A verified, decrypted message (or a plaintext one on a plaintext topic: ``encrypted`` False)."""

    topic: str
    payload: bytes
    qos: int
    encrypted: bool
    #: the verified sender's principal id (None for plaintext)
    sender: str | None = None
    kid: int | None = None
    group: int | None = None
    epoch: int | None = None
    seq: int | None = None
    #: the sender's clock at sending, unix seconds
    sent_at: int | None = None
    #: from the broker's retained store, and marked retained by the sender itself
    retained: bool = False
    properties: PropertyVerdict = PropertyVerdict()


@dataclass(frozen=True)
class SecurityErrorEvent:
    code: str
    topic: str
    message: str


def _paho_properties_in(message: Any) -> EnvelopeProperties | None:
    props = getattr(message, "properties", None)
    if props is None:
        return None
    users = getattr(props, "UserProperty", None) or []
    correlation = getattr(props, "CorrelationData", None)
    return EnvelopeProperties(
        content_type=getattr(props, "ContentType", None),
        response_topic=getattr(props, "ResponseTopic", None),
        correlation_data=None if correlation is None else bytes(correlation),
        user_properties=tuple((str(k), str(v)) for k, v in users),
    )


def _paho_properties_out(properties: EnvelopeProperties) -> Any:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    out = Properties(PacketTypes.PUBLISH)
    if properties.content_type is not None:
        out.ContentType = properties.content_type
    if properties.response_topic is not None:
        out.ResponseTopic = properties.response_topic
    if properties.correlation_data is not None:
        out.CorrelationData = properties.correlation_data
    if properties.user_properties:
        out.UserProperty = list(properties.user_properties)  # bound ones first, in this order
    return out


class SecureClient:
    """The secured view of a paho client. Set :attr:`on_message` and :attr:`on_security_error`.

    ``on_message(secure_client, message: SecureMessage)``;
    ``on_security_error(secure_client, event: SecurityErrorEvent)``: every refused message
    (forged, replayed, stale, revoked sender...), never delivered to ``on_message``.
    """

    def __init__(
        self,
        mqtt: Any,
        enrollment: Enrollment,
        *,
        storage: Storage,
        ca_file: str | None = None,
        key_server: KeyServerClient | None = None,
        plaintext_topics: Sequence[str] = (),
        replay: ReplayWindow | None = None,
        connect_password: bool = True,
        freshness_interval: float = 30.0,
        unknown_sender_refresh_interval: float = 5.0,
        unknown_sender_quiet: float = 60.0,
        max_held: int = 256,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.mqtt = mqtt
        self.enrollment = enrollment
        self.storage = storage
        self.identity = enrollment.identity
        self.kid = enrollment.kid
        self._now = now
        self._key_server = (key_server or KeyServerClient(enrollment.key_server_url, ca_file=ca_file)).with_identity(
            self.identity
        )
        self._plaintext = tuple(plaintext_topics)
        self._connect_password = connect_password
        self._freshness_interval = freshness_interval
        self.revocations = RevocationList()
        self.keyring = Keyring(now, self.revocations.covers_bundle_issued_at)
        self.replay = replay or ReplayWindow(max_senders=10_000)
        self._signer = EnvelopeSigner(kid=enrollment.kid, seed=self.identity.signing_seed)
        self._counter = SequenceCounter(key_server_sequence_source(storage, self.identity.id, self._key_server))
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._last_seal_refresh = float("-inf")
        self._local = threading.local()  # .delivering: this thread is inside a callback of ours
        self._poller: threading.Thread | None = None
        self._etag: str | None = None
        self._bundle_tag: str | None = None
        self.control_topic = f"{CONTROL_TOPIC_PREFIX}principals/{self.identity.id}"
        self.on_message: Callable[[SecureClient, SecureMessage], None] | None = None
        self.on_security_error: Callable[[SecureClient, SecurityErrorEvent], None] | None = None
        self.on_connect: Callable[..., None] | None = None
        # Envelopes of an unknown sender or epoch wait here while a worker thread fetches keys.
        self._held: HeldEnvelopes[_Received] = HeldEnvelopes(
            lock=self._lock,
            refresh=self._refresh_for_held,
            is_known=self._keys_known,
            release=lambda r: self._receive(r, may_hold=False),
            interval=unknown_sender_refresh_interval,
            quiet=unknown_sender_quiet,
            max_held=max_held,
        )

    # --- lifecycle ---

    def start(self) -> SecureClient:
        """Locks the storage, loads keys, revocations, the replay window and the first sequence
        range, and takes over the paho client's login and message callbacks."""
        if isinstance(self.storage, FileStorage):
            self.storage.lock()
        self._load_replay_state()
        self._load_stored_documents()
        try:
            self.refresh_keys()
        except (OSError, SmqttError) as err:
            if self.keyring.issued_at < 0:
                raise
            log.warning("key server unreachable, continuing with the stored bundle: %s", err)
        self._counter.prepare()
        self._install()
        if self._freshness_interval > 0:
            self._poller = threading.Thread(target=self._poll, name="smqtt-freshness", daemon=True)
            self._poller.start()
        return self

    def stop(self) -> None:
        """Stops the freshness poll and the key refreshes (held envelopes are refused), unlocks the storage."""
        self._stop.set()
        self._held.stop()
        if isinstance(self.storage, FileStorage):
            self.storage.unlock()

    def _install(self) -> None:
        mqtt = self.mqtt
        if self._connect_password and getattr(mqtt, "_username", None) in (None, b"", ""):
            mqtt.username_pw_set(self.identity.id, self._password())
            original = mqtt.reconnect

            def reconnect(*args: Any, **kwargs: Any) -> Any:
                # A CONNECT password is valid about a minute, once: a fresh one per attempt.
                mqtt.username_pw_set(self.identity.id, self._password())
                return original(*args, **kwargs)

            mqtt.reconnect = reconnect
        mqtt.on_connect = self._on_connect
        mqtt.on_message = self._on_paho_message

    def _password(self) -> str:
        client_id = getattr(self.mqtt, "_client_id", b"") or self.identity.id.encode()
        if isinstance(client_id, bytes):
            client_id = client_id.decode("utf-8")
        return create_connect_password(self.identity.signing_seed, client_id)

    def _on_connect(self, client: Any, userdata: Any, *args: Any) -> None:
        # paho 1.6 / 2.x VERSION1: (flags, rc[, properties]); 2.x VERSION2: (flags, reason_code, properties)
        rc = args[1] if len(args) > 1 else 0
        if int(getattr(rc, "value", rc)) == 0:
            client.subscribe(self.control_topic, qos=1)
        if self.on_connect is not None:
            self.on_connect(client, userdata, *args)

    # --- keys ---

    def _load_stored_documents(self) -> None:
        for key, apply in (("revocations", self._apply_revocations), ("bundle", self._apply_bundle)):
            text = self.storage.get(f"{key}:{self.identity.id}")
            if text is None:
                continue
            try:
                apply(json.loads(text), store=False)
            except (SmqttError, ValueError) as err:
                log.warning("stored %s not usable: %s", key, err)

    def _apply_revocations(self, signed: Any, store: bool = True) -> bool:
        if signed is None:
            return False
        with self._lock:
            changed = self.revocations.accept(signed, key_server_public_key=self.enrollment.key_server_public_key)
        if changed and store:
            self.storage.set(f"revocations:{self.identity.id}", json.dumps(signed))
        return changed

    def _apply_bundle(self, signed: Any, store: bool = True) -> bool:
        bundle = open_key_bundle(
            signed,
            key_server_public_key=self.enrollment.key_server_public_key,
            recipient=self.identity,
            now=int(self._now()),
        )
        if not self.revocations.covers_bundle_issued_at(bundle.issued_at):
            raise SmqttError("ERR_BUNDLE_EXPIRED", "the bundle was issued before the revocation list's watermark")
        with self._lock:
            changed = self.keyring.apply(bundle)
        if changed:
            log.info("key bundle issued at %d in use (%d groups)", bundle.issued_at, len(bundle.groups))
            if store:
                self.storage.set(f"bundle:{self.identity.id}", json.dumps(signed))
        return changed

    def refresh_keys(self) -> None:
        """Pulls the revocation list and the key bundle from the key server now, in the calling
        thread (the client itself calls it only from its own threads, never from paho's)."""
        self._apply_revocations(self._key_server.revocations())
        signed, tag = self._key_server.bundle()
        self._bundle_tag = tag
        self._apply_bundle(signed)

    def _poll(self) -> None:
        while not self._stop.wait(self._freshness_interval):
            try:
                issued_at, not_after = self.keyring.issued_at, self.keyring.not_after
                # Refresh at three quarters of the bundle's validity, and when a newer revocation
                # list raised its watermark above the bundle held.
                stale = self._now() >= issued_at + 0.75 * (not_after - issued_at) or not (
                    self.revocations.covers_bundle_issued_at(issued_at)
                )
                answer = self._key_server.freshness(None if stale else self._etag)
                if answer is None:
                    continue
                version, tag, etag = answer
                if version != (self.revocations.version or 0):
                    self._apply_revocations(self._key_server.revocations())
                if stale or tag != self._bundle_tag:
                    signed, self._bundle_tag = self._key_server.bundle()
                    self._apply_bundle(signed)
                self._etag = etag
            except (OSError, SmqttError) as err:
                log.warning("freshness poll failed: %s", err)

    # --- publishing ---

    def _is_plaintext(self, topic: str) -> bool:
        return self.keyring.group_of(topic) is None and any(topic_matches(f, topic) for f in self._plaintext)

    def seal(
        self, topic: str, payload: bytes, *, retain: bool = False, properties: EnvelopeProperties | None = None
    ) -> bytes:
        """The envelope :meth:`publish` would send (takes a sequence number).

        When every epoch held for the topic's group has retired (e.g. after a long key-server
        outage), the keys are refreshed once (at most every 5 s) and sealing is tried again, as
        the TypeScript client does, but only in a thread of the caller's: on paho's network
        thread (publishing from ``on_message``) or the client's own it raises at once
        (``ERR_UNKNOWN_EPOCH``; the freshness poll or a push brings the new epoch).
        """
        try:
            self._check_watermark()
            with self._lock:
                epoch_key = self.keyring.sealing_key(topic, self.kid)
        except SmqttError as err:
            if err.code not in ("ERR_UNKNOWN_EPOCH", "ERR_BUNDLE_EXPIRED") or not self._may_refresh_for_seal():
                raise
            try:
                self.refresh_keys()
            except (OSError, SmqttError) as refresh_error:
                log.warning("key refresh before sealing failed: %s", refresh_error)
                raise err from None
            self._check_watermark()
            with self._lock:
                epoch_key = self.keyring.sealing_key(topic, self.kid)
        return seal_envelope(
            topic=topic,
            payload=payload,
            epoch_key=epoch_key,
            signer=self._signer,
            seq=self._counter.next(),
            sent_at=int(self._now()),
            retain=retain,
            properties=properties,
        )

    def _may_refresh_for_seal(self) -> bool:
        current = threading.current_thread()
        on_network_thread = current is getattr(self.mqtt, "_thread", None) or getattr(self._local, "delivering", False)
        if on_network_thread or current.name.startswith("smqtt-"):
            return False  # never key-server I/O on paho's network thread (loop_forever too) or ours
        with self._lock:
            if time.monotonic() - self._last_seal_refresh < SEAL_REFRESH_INTERVAL:
                return False
            self._last_seal_refresh = time.monotonic()
        return True

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 0,
        retain: bool = False,
        properties: EnvelopeProperties | None = None,
    ) -> Any:
        """Seals, signs and publishes; returns paho's MQTTMessageInfo.

        ``properties`` (MQTT 5 only) are bound into the envelope and sent as PUBLISH properties.
        """
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        if self._is_plaintext(topic):
            return self.mqtt.publish(topic, data, qos, retain)
        if properties is not None and getattr(self.mqtt, "_protocol", None) != MQTT_V5:
            raise ValueError("properties need an MQTT 5 client")
        envelope = self.seal(topic, data, retain=retain, properties=properties)
        if properties is None:
            return self.mqtt.publish(topic, envelope, qos, retain)
        return self.mqtt.publish(topic, envelope, qos, retain, properties=_paho_properties_out(properties))

    # --- receiving ---

    def _on_paho_message(self, client: Any, userdata: Any, message: Any) -> None:
        # paho's network thread: no key-server call from here (keepalives would stall).
        topic = message.topic
        payload = bytes(message.payload)
        if topic.startswith(CONTROL_TOPIC_PREFIX):
            if topic == self.control_topic:
                self._on_control(payload)
            return
        received = _Received(topic, payload, bool(message.retain), _paho_properties_in(message), message.qos)
        self._local.delivering = True
        try:
            self._receive(received, may_hold=True)
        finally:
            self._local.delivering = False

    def _receive(self, received: _Received, *, may_hold: bool) -> None:
        """Opens and delivers one message, or holds it for a key refresh (``may_hold``), or
        refuses it. Under the lock: messages are opened and delivered one at a time, in order."""
        with self._lock:
            try:
                if self._is_plaintext(received.topic):
                    self._deliver(SecureMessage(received.topic, received.payload, received.qos, False))
                    return
                # A sender with envelopes held: this one waits behind them, to keep its order.
                if may_hold and self._wait_behind_held(received):
                    return
                try:
                    message = self._open(received)
                except SmqttError as err:
                    if may_hold and err.code in _HOLD_CODES and self._hold(received, err.code):
                        return
                    raise
                self._deliver(message)
            except SmqttError as err:
                log.info("refused a message on %s: %s", received.topic, err.code)
                if self.on_security_error is not None:
                    self.on_security_error(self, SecurityErrorEvent(err.code, received.topic, str(err)))

    def _wait_behind_held(self, received: _Received) -> bool:
        try:
            header = parse_envelope(received.payload).header
        except SmqttError:
            return False  # opening refuses it with the parser's code
        if not self._held.holding(header.group, header.sender):
            return False
        # Beyond the bound it is opened now, as the TypeScript client does.
        return self._held.hold(Wanted(header.group, header.epoch, header.sender, ""), len(received.payload), received)

    def _hold(self, received: _Received, code: str) -> bool:
        try:
            header = parse_envelope(received.payload).header
        except SmqttError:
            return False
        return self._held.hold(Wanted(header.group, header.epoch, header.sender, code), len(received.payload), received)

    @property
    def held_refreshes(self) -> int:
        """Key refreshes started for held envelopes (unknown sender or epoch), since the start."""
        return self._held.refreshes

    def wait_until_settled(self, timeout: float | None = None) -> bool:
        """Blocks until no envelope is held for a key refresh and none runs; False on timeout."""
        return self._held.wait_until_settled(timeout)

    def _deliver(self, message: SecureMessage) -> None:
        if self.on_message is not None:
            self.on_message(self, message)

    def _open(self, received: _Received) -> SecureMessage:
        topic, retained = received.topic, received.retained
        with self._lock:
            self._check_watermark()
            opened = open_envelope(
                received.payload,
                topic,
                keys=self.keyring,
                replay=self.replay,
                retained=retained,
                is_revoked=self.revocations.is_revoked_kid,
                now=int(self._now()),
                properties=received.properties,
            )
            h = opened.header
            sender = self.keyring.writer_principal(h.group, h.sender) or ""
            self._save_replay_state()  # before delivery: a restart must not accept it again
        return SecureMessage(
            topic, opened.payload, received.qos, True, sender, h.sender, h.group, h.epoch, h.seq, h.sent_at,
            h.retain and retained, opened.properties,
        )

    # --- key refresh for held envelopes (the worker thread of HeldEnvelopes) ---

    def _keys_known(self, wanted: Wanted) -> bool:
        with self._lock:
            return (
                self.revocations.covers_bundle_issued_at(self.keyring.issued_at)
                and self.keyring.epoch_key(wanted.group, wanted.epoch) is not None
                and self.keyring.writer_key(wanted.group, wanted.sender) is not None
            )

    def _refresh_for_held(self, wanted: Sequence[Wanted]) -> None:
        """Bundle (and revocations) for unknown epochs and an outdated bundle; signed writer
        records by key id for unknown senders, the bundle when the key server refuses those."""
        missing = [w for w in wanted if not self._keys_known(w)]
        refreshed = False
        if any(w.code != "ERR_UNKNOWN_SENDER" for w in missing):
            self.refresh_keys()
            refreshed = True
        senders: dict[int, list[int]] = {}
        with self._lock:
            for w in missing:
                if self.keyring.writer_key(w.group, w.sender) is None and self.keyring.epoch_key(w.group, w.epoch):
                    kids = senders.setdefault(w.group, [])
                    if w.sender not in kids:
                        kids.append(w.sender)
        try:
            for group, kids in senders.items():
                for i in range(0, len(kids), MAX_RECORD_WRITERS):
                    self._learn_writers(group, kids[i : i + MAX_RECORD_WRITERS])
        except (OSError, SmqttError) as err:
            if refreshed:
                raise
            log.info("writer records not available (%s): fetching the bundle", err)
            self.refresh_keys()

    def _check_watermark(self) -> None:
        # A newer revocation list's watermark above the bundle held: that bundle may still list
        # writers revoked since (their entries were pruned from the list), so stop using it.
        if not self.revocations.covers_bundle_issued_at(self.keyring.issued_at):
            raise SmqttError("ERR_BUNDLE_EXPIRED", "the key bundle held predates the revocation list's watermark")

    def _learn_writers(self, group: int, kids: list[int]) -> None:
        signed = self._key_server.writers(group, kids)
        record = open_writer_record(
            signed,
            key_server_public_key=self.enrollment.key_server_public_key,
            reader=self.identity.id,
            now=int(self._now()),
        )
        if record.group == group:
            with self._lock:
                self.keyring.add_writers(record)

    def _on_control(self, payload: bytes) -> None:
        try:
            message = json.loads(payload.decode("utf-8"))
            if not isinstance(message, dict):
                return
            if message.get("type") == "bundle":
                self._apply_bundle(message.get("bundle"))
            elif message.get("type") == "revocations":
                self._apply_revocations(message.get("revocations"))
        except (SmqttError, ValueError) as err:
            # Anyone may publish here on a plain broker; only documents the key server signed count.
            log.info("control message ignored: %s", err)

    # --- replay state ---

    def _replay_key(self) -> str:
        return f"replay:{self.identity.id}"

    def _load_replay_state(self) -> None:
        text = self.storage.get(self._replay_key())
        if text is None:
            return
        try:
            self.replay.restore_state(json.loads(text), self._now())
        except (SmqttError, ValueError) as err:
            # Lost or corrupt: refuse everything that could have been accepted before.
            log.error("replay state unusable, refusing messages sent before now: %s", err)
            self.replay.reset_after_loss(self._now())

    def _save_replay_state(self) -> None:
        state = self.replay.export_state(lambda g, e: self.keyring.epoch_key(g, e) is not None)
        try:
            self.storage.set(self._replay_key(), json.dumps(state, separators=(",", ":")))
        except OSError as err:
            log.error("replay window not saved (the next message retries): %s", err)


def secure(
    mqtt: Any,
    enrollment: Enrollment,
    *,
    storage: Storage,
    ca_file: str | None = None,
    plaintext_topics: Sequence[str] = (),
    connect_password: bool = True,
    freshness_interval: float = 30.0,
    key_server: KeyServerClient | None = None,
    unknown_sender_refresh_interval: float = 5.0,
    max_held: int = 256,
) -> SecureClient:
    """Wraps a paho-mqtt client (before ``connect``): returns the started :class:`SecureClient`.

    Example::

        client = mqtt.Client(client_id=enrollment.principal_id)
        client.tls_set(ca_certs="ca.pem")
        sc = secure(client, enrollment, storage=storage, ca_file="ca.pem")
        sc.on_message = lambda sc, m: print(m.sender, m.topic, m.payload)
        sc.on_security_error = lambda sc, e: print("refused", e.code, e.topic)
        client.connect("broker.example", 8883)
        client.loop_start()
        sc.publish("home/hall/thermostat/t-7/temp", b"21.5", qos=1)
    """
    return SecureClient(
        mqtt,
        enrollment,
        storage=storage,
        ca_file=ca_file,
        plaintext_topics=plaintext_topics,
        connect_password=connect_password,
        freshness_interval=freshness_interval,
        key_server=key_server,
        unknown_sender_refresh_interval=unknown_sender_refresh_interval,
        max_held=max_held,
    ).start()

"""The keys a client holds from its key bundle: epoch keys to seal and open, writers to verify."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import _crypto
from collections import OrderedDict

from .documents import KeyGroup, OpenedKeyBundle, OpenedWriterRecord, Writer
from .envelope import SUITES, EpochKey
from .errors import SmqttError
from .topic import topic_matches


@dataclass(frozen=True)
class HeldEpoch:
    epoch: int
    activates_at: int
    retires_at: int
    key: EpochKey


#: a bundle's key group as the keyring holds it: epochs in order, each with its EpochKey
HeldGroup = KeyGroup[HeldEpoch]


MAX_RECORD_WRITERS_HELD = 10_000


@dataclass(frozen=True)
class _RecordWriter:
    filter: str
    issued_at: int
    not_after: int
    writer: Writer


def _usable_suite(suite: int) -> bool:
    return suite in SUITES and (suite != 2 or _crypto.aes_gcm_available())


class Keyring:
    """Implements :class:`smqtt.envelope.EnvelopeKeys` over the newest key bundle applied."""

    def __init__(
        self, now: Callable[[], float] = time.time, record_usable: Callable[[int], bool] = lambda issued_at: True
    ) -> None:
        self._now = now
        self._record_usable = record_usable
        self._lock = threading.RLock()
        self._groups: dict[int, HeldGroup] = {}
        self._held: OpenedKeyBundle | None = None
        self._records: OrderedDict[tuple[int, int], _RecordWriter] = OrderedDict()

    @property
    def issued_at(self) -> int:
        return self._held.issued_at if self._held else -1

    @property
    def not_after(self) -> int:
        return self._held.not_after if self._held else 0

    @property
    def groups(self) -> tuple[HeldGroup, ...]:
        return tuple(self._groups.values())

    def apply(self, bundle: OpenedKeyBundle) -> bool:
        """Uses a newer bundle (True); the same one again is ignored (False); an older one, or
        another with the same issue time, is ``ERR_BUNDLE_ROLLBACK``."""
        with self._lock:
            if self._held is not None and bundle.issued_at <= self._held.issued_at:
                if bundle == self._held:
                    return False
                raise SmqttError("ERR_BUNDLE_ROLLBACK", f"key bundle issued at {bundle.issued_at} is not newer than the one held")
            groups: dict[int, HeldGroup] = {}
            for g in bundle.groups:
                if not _usable_suite(g.suite):
                    continue  # a suite this client cannot use: its messages fail closed
                epochs = tuple(
                    sorted(
                        (
                            HeldEpoch(e.epoch, e.activates_at, e.retires_at, EpochKey(group=g.group, epoch=e.epoch, suite=g.suite, key=e.key))
                            for e in g.epochs
                        ),
                        key=lambda held: held.epoch,
                    )
                )
                groups[g.group] = HeldGroup(g.group, g.name, g.filter, g.suite, epochs, g.writers)
            self._groups = groups
            self._held = bundle
            return True

    def epoch_key(self, group: int, epoch: int) -> EpochKey | None:
        held = self._groups.get(group)
        if held is None:
            return None
        for e in held.epochs:
            if e.epoch == epoch and e.retires_at > self._now():
                return e.key
        return None

    def add_writers(self, record: OpenedWriterRecord) -> int:
        """Learns writers from a writer record (docs/documents.md §6): only for a group held with
        exactly the record's filter, while the record is valid and issued at or after the
        revocation list's watermark; a writer listed in the bundle keeps the bundle's entry."""
        with self._lock:
            held = self._groups.get(record.group)
            if (
                held is None
                or held.filter != record.filter
                or record.not_after <= self._now()
                or not self._record_usable(record.issued_at)
            ):
                return 0
            added = 0
            for kid, writer in record.writers.items():
                if kid in held.writers:
                    continue
                key = (record.group, kid)
                previous = self._records.get(key)
                if previous is not None and previous.issued_at > record.issued_at:
                    continue
                self._records.pop(key, None)
                if len(self._records) >= MAX_RECORD_WRITERS_HELD:
                    self._records.popitem(last=False)
                self._records[key] = _RecordWriter(record.filter, record.issued_at, record.not_after, writer)
                added += 1
            return added

    def _writer(self, group: int, sender: int) -> Writer | None:
        held = self._groups.get(group)
        if held is None:
            return None
        listed = held.writers.get(sender)
        if listed is not None:
            return listed
        learned = self._records.get((group, sender))
        if learned is None:
            return None
        if learned.not_after <= self._now() or learned.filter != held.filter or not self._record_usable(learned.issued_at):
            self._records.pop((group, sender), None)
            return None
        self._records.move_to_end((group, sender))
        return learned.writer

    def writer_key(self, group: int, sender: int) -> bytes | None:
        writer = self._writer(group, sender)
        return None if writer is None else writer.signing_key

    def writer_may_publish(self, group: int, sender: int, topic: str) -> bool | None:
        writer = self._writer(group, sender)
        return False if writer is None else writer.publish.allows(topic)

    def writer_principal(self, group: int, sender: int) -> str | None:
        writer = self._writer(group, sender)
        return None if writer is None else writer.principal

    def group_of(self, topic: str) -> HeldGroup | None:
        for group in self._groups.values():
            if topic_matches(group.filter, topic):
                return group
        return None

    def sealing_key(self, topic: str, kid: int) -> EpochKey:
        """The newest active epoch key of the topic's group; this principal must be a writer."""
        group = self.group_of(topic)
        if group is None:
            raise SmqttError("ERR_NO_KEY_GROUP", f"no key group of this client holds topic {topic}")
        if kid not in group.writers:
            raise SmqttError("ERR_FORBIDDEN", f"this principal is not a writer of key group {group.name}")
        now = self._now()
        for e in reversed(group.epochs):
            if e.activates_at <= now < e.retires_at:
                return e.key
        raise SmqttError("ERR_UNKNOWN_EPOCH", f"no active epoch held for key group {group.name}")

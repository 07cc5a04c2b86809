"""Envelope sequence numbers: never twice for one sender, across restarts, two running copies
and restored backups (SECURITY.md, "Nonces").

Numbers come only from ranges the key server reserved for this run (``POST /v1/sequence``),
each above every range it reserved for the principal before; the highest number given is also
kept in storage and sent as a floor, so a key server restored from an old backup is covered too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .errors import SmqttError
from .keyserver import KeyServerClient
from .storage import Storage

log = logging.getLogger("smqtt.sequence")

MAX_SEQUENCE = 2**53 - 1
FIRST_RANGE = 4_096
LARGEST_RANGE = 65_536


def sequence_key(principal_id: str) -> str:
    return f"seq:{principal_id}"


RETRY_AHEAD_SECONDS = 5.0


class SequenceCounter:
    """Hands out numbers from reserved ranges. Once half of the current range is used, the next
    one is reserved on a background thread, so publishing rarely waits for the key server; when
    a range runs out with none reserved ahead, the caller's thread reserves (and may fail with
    ``ERR_SEQUENCE_UNAVAILABLE``)."""

    def __init__(self, reserve: Callable[[], tuple[int, int]]) -> None:
        self._reserve = reserve
        self._lock = threading.Lock()
        self._reserving = threading.Lock()  # one reservation at a time
        self._next = 0
        self._end = 0
        self._half = 0
        self._pending: tuple[int, int] | None = None
        self._ahead: threading.Thread | None = None
        self._failed_at = float("-inf")

    @property
    def reserved_until(self) -> int:
        return max(self._end, self._pending[1] if self._pending else 0)

    def _take(self) -> tuple[int, int]:
        try:
            start, end = self._reserve()
        except SmqttError:
            raise
        except OSError as err:
            raise SmqttError("ERR_SEQUENCE_UNAVAILABLE", f"the key server did not reserve a range: {err}") from err
        if start < 0 or end <= start:
            raise SmqttError("ERR_SEQUENCE_EXHAUSTED", "the sequence source returned an empty or invalid range")
        if start < self.reserved_until:
            raise SmqttError("ERR_SEQUENCE_EXHAUSTED", "the sequence source returned a range below one already held")
        if end > MAX_SEQUENCE:
            raise SmqttError("ERR_SEQUENCE_EXHAUSTED")
        return start, end

    def _use(self, reserved: tuple[int, int]) -> None:
        self._next, self._end = reserved
        self._half = reserved[0] + (reserved[1] - reserved[0]) // 2

    def _take_serialized(self) -> tuple[int, int]:
        with self._reserving:
            return self._take()

    def prepare(self) -> None:
        """Reserves the first range now (so the first publish does not wait)."""
        with self._lock:
            if self._end == 0 and self._pending is None:
                self._use(self._take_serialized())

    def _reserve_ahead(self) -> None:
        try:
            reserved = self._take_serialized()
        except (SmqttError, OSError) as err:
            self._failed_at = time.monotonic()
            log.warning("reserving the next sequence range failed (retried later): %s", err)
            return
        with self._lock:
            if self._pending is None and reserved[0] >= self.reserved_until:
                self._pending = reserved

    def next(self) -> int:
        with self._lock:
            if self._next >= self._end:
                ahead = self._ahead
                if self._pending is None and ahead is not None and ahead.is_alive():
                    self._lock.release()  # let the reservation under way finish
                    try:
                        ahead.join()
                    finally:
                        self._lock.acquire()
                if self._pending is not None:
                    self._use(self._pending)
                    self._pending = None
                elif self._next >= self._end:
                    self._use(self._take_serialized())
            seq = self._next
            self._next += 1
            ahead = self._ahead
            if (
                self._next >= self._half
                and self._pending is None
                and (ahead is None or not ahead.is_alive())
                and time.monotonic() - self._failed_at >= RETRY_AHEAD_SECONDS
            ):
                self._ahead = threading.Thread(target=self._reserve_ahead, name="smqtt-sequence", daemon=True)
                self._ahead.start()
            return seq


def key_server_sequence_source(
    storage: Storage, principal_id: str, key_server: KeyServerClient
) -> Callable[[], tuple[int, int]]:
    """Ranges from the key server, the first 4,096 numbers, each next twice the last (≤ 65,536)."""
    key = sequence_key(principal_id)
    size = FIRST_RANGE

    def reserve() -> tuple[int, int]:
        nonlocal size
        saved = storage.get(key)
        try:
            at_least = int(saved) if saved is not None else 0
        except ValueError:
            at_least = 0  # a corrupt floor costs nothing: the key server's own floor still holds
        at_least = max(0, min(at_least, MAX_SEQUENCE))
        start, end = key_server.reserve_sequence(at_least, size)
        storage.set(key, str(end))
        log.debug("reserved sequence numbers [%d, %d)", start, end)
        size = min(size * 2, LARGEST_RANGE)
        return start, end

    return reserve

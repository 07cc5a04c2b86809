"""Envelopes held while keys are fetched, off paho's network thread.

An envelope under an epoch or from a sender the keys held do not know may be genuine (a rotation,
a writer enrolled since, a group too large for a bundle to list its writers). It is held while a
worker thread asks the key server, then opened again, in arrival order. Anyone who can publish on
a plain broker can write any ids into a header, so the fetches are bounded, not the ids: at most
one refresh per ``interval`` (every envelope held shares it), an id still unknown after a
refresh that answered is refused at once for ``quiet`` seconds, and what is held is bounded in
count and bytes (beyond it an envelope is refused at once). The TypeScript client does the same
(packages/client/src/_unknown-senders.ts); docs/envelope.md, "Opening: order of checks".

The key-server I/O runs on the worker thread only, never under ``lock``; the paho thread only
appends to the queue. Held envelopes are released (opened and delivered) on the worker thread
while it holds ``lock``, the lock the client's receive path holds too, so a sender's later
envelopes wait behind its held ones and each sender's order is kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger("smqtt.keys")

T = TypeVar("T")

#: ids remembered as still unknown after a refresh; past it the oldest is forgotten
MAX_QUIET = 4_096


@dataclass(frozen=True)
class Wanted:
    """What one held envelope waits for: keys of (group, epoch), writer ``sender`` of ``group``."""

    group: int
    epoch: int
    sender: int
    #: the code it would be refused with now: ERR_UNKNOWN_SENDER, ERR_UNKNOWN_EPOCH, ERR_BUNDLE_EXPIRED
    code: str


@dataclass
class _Held(Generic[T]):
    wanted: Wanted
    size: int
    item: T
    #: part of the refresh in flight (arrived before it started)
    in_flight: bool = False


class HeldEnvelopes(Generic[T]):
    """A bounded queue of envelopes waiting for one coalesced, rate-limited key refresh."""

    def __init__(
        self,
        *,
        lock: threading.RLock,
        refresh: Callable[[Sequence[Wanted]], None],
        is_known: Callable[[Wanted], bool],
        release: Callable[[T], None],
        interval: float = 5.0,
        quiet: float = 60.0,
        max_held: int = 256,
        max_held_bytes: int = 16 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval > 0:
            raise ValueError("interval must be > 0")
        if not quiet >= interval:
            raise ValueError("quiet must be >= interval")
        if not 0 <= max_held <= 65_536:
            raise ValueError("max_held must be in [0, 65536]")
        self._lock = lock
        self._changed = threading.Condition(lock)
        self._refresh = refresh
        self._is_known = is_known
        self._release = release
        self._interval = interval
        self._quiet_seconds = quiet
        self._max_held = max_held
        self._max_held_bytes = max_held_bytes
        self._clock = clock
        self._held: list[_Held[T]] = []
        self._held_bytes = 0
        self._per_sender: dict[tuple[int, int], int] = {}
        self._quiet: OrderedDict[tuple[int, int, int], float] = OrderedDict()
        self._last_refresh = float("-inf")
        self._running = False
        self._stopped = False
        self._worker: threading.Thread | None = None
        #: refreshes started, for tests and statistics
        self.refreshes = 0

    def holding(self, group: int, sender: int) -> bool:
        """Whether envelopes of (group, sender) are held: a later one must wait behind them."""
        with self._lock:
            return (group, sender) in self._per_sender

    def hold(self, wanted: Wanted, size: int, item: T) -> bool:
        """Holds ``item`` until the next refresh; False when it must be refused now (the id stayed
        unknown after a recent refresh, too much is held, or the client is stopping)."""
        with self._lock:
            if self._stopped:
                return False
            quiet_key = (wanted.group, wanted.epoch, wanted.sender)
            until = self._quiet.get(quiet_key)
            if until is not None:
                if until > self._clock():
                    return False
                del self._quiet[quiet_key]
            if len(self._held) >= self._max_held or self._held_bytes + size > self._max_held_bytes:
                return False
            self._held.append(_Held(wanted, size, item))
            self._held_bytes += size
            key = (wanted.group, wanted.sender)
            self._per_sender[key] = self._per_sender.get(key, 0) + 1
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="smqtt-keys", daemon=True)
                self._worker.start()
            self._changed.notify_all()
            return True

    def wait_until_settled(self, timeout: float | None = None) -> bool:
        """Blocks until nothing is held and no refresh runs; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._held and not self._running, timeout)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stops refreshing; what is held is released (to be refused) once a refresh in flight ends."""
        with self._lock:
            self._stopped = True
            self._changed.notify_all()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
        elif worker is None:
            with self._lock:
                self._release_all()

    # --- the worker thread ---

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._stopped:
                    wait = self._last_refresh + self._interval - self._clock()
                    if self._held and wait <= 0:
                        break
                    self._changed.wait(wait if self._held else None)
                if self._stopped:
                    self._release_all()
                    self._changed.notify_all()
                    return
                self._last_refresh = self._clock()
                self.refreshes += 1
                self._running = True
                wanted: dict[Wanted, None] = {}
                for held in self._held:
                    held.in_flight = True
                    wanted[held.wanted] = None
            answered = True
            try:
                self._refresh(list(wanted))  # key-server I/O: outside the lock
            except Exception as err:  # noqa: BLE001 - a failed refresh releases what it held, refused
                log.warning("key refresh for held envelopes failed: %s", err)
                answered = False
            with self._changed:
                self._settle(answered)
                self._running = False
                self._changed.notify_all()

    def _settle(self, answered: bool) -> None:
        """Releases, in arrival order, what the refresh was for and whatever is known now. An id
        still unknown after a refresh that answered goes quiet; after a failed one it does not (the
        key server was down, not the sender forged), and the interval alone bounds the retries."""
        now = self._clock()
        if answered:
            for held in self._held:
                if held.in_flight and not self._is_known(held.wanted):
                    self._quieten(held.wanted, now)
        release: list[_Held[T]] = []
        keep: list[_Held[T]] = []
        for held in self._held:
            w = held.wanted
            done = held.in_flight or (w.group, w.epoch, w.sender) in self._quiet or self._is_known(w)
            (release if done else keep).append(held)
        self._held = keep
        self._count()
        self._release_items(release)

    def _quieten(self, wanted: Wanted, now: float) -> None:
        key = (wanted.group, wanted.epoch, wanted.sender)
        self._quiet.pop(key, None)
        if len(self._quiet) >= MAX_QUIET:
            self._quiet.popitem(last=False)
        self._quiet[key] = now + self._quiet_seconds

    def _release_all(self) -> None:
        release = self._held
        self._held = []
        self._count()
        self._release_items(release)

    def _count(self) -> None:
        self._held_bytes = sum(h.size for h in self._held)
        self._per_sender = {}
        for h in self._held:
            key = (h.wanted.group, h.wanted.sender)
            self._per_sender[key] = self._per_sender.get(key, 0) + 1

    def _release_items(self, items: list[_Held[T]]) -> None:
        for held in items:
            try:
                self._release(held.item)
            except Exception:  # noqa: BLE001 - a throwing callback must not keep the rest held
                log.exception("a callback raised while releasing a held envelope")

"""Replay protection for subscribers: a sliding window per (group, epoch, sender) plus a
freshness limit on the send time, with the rules of packages/core/src/replay-window.ts.

The window remembers the highest sequence number seen and a bitmap of the ``window_size``
numbers below it. Memory is bounded by ``max_senders`` windows (least recently used evicted);
an evicted window leaves a floor (its highest number), so eviction never opens a replay hole.
The saved state (:meth:`ReplayWindow.export_state`) has the TypeScript client's JSON shape.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import SmqttError

DAY = 86_400
MAX_WINDOW_SIZE = 4096
_NEG_INF = -math.inf


@dataclass
class _Window:
    highest: int
    seen: int  # bit k set: highest - k was seen
    not_before: float


@dataclass
class _Floor:
    highest: int
    not_before: float
    evicted_at: float


def _replay(reason: str) -> SmqttError:
    return SmqttError("ERR_REPLAY", f"replayed or too old sequence number: {reason}")


def _invalid(reason: str) -> SmqttError:
    return SmqttError("ERR_REPLAY_STATE_INVALID", f"invalid saved replay state: {reason}")


Key = tuple[int, int, int]


class ReplayWindow:
    """Per-sender sliding windows and freshness.

    Example::

        window = ReplayWindow(max_age_seconds=120)
        window.accept(group, epoch, sender, seq, sent_at, now)
    """

    def __init__(
        self,
        *,
        window_size: int = 128,
        max_age_seconds: float = 300,
        max_future_skew_seconds: float = 30,
        retained_max_age_seconds: float = 7 * DAY,
        max_senders: int = 100_000,
    ) -> None:
        if not 1 <= window_size <= MAX_WINDOW_SIZE:
            raise ValueError(f"window_size must be in [1, {MAX_WINDOW_SIZE}]")
        if max_age_seconds <= 0 or max_future_skew_seconds < 0 or retained_max_age_seconds <= 0 or max_senders < 1:
            raise ValueError("invalid replay window limits")
        self._size = window_size
        self._words = (window_size + 31) // 32
        self._max_age = max_age_seconds
        self._max_skew = max_future_skew_seconds
        self._retained_max_age = retained_max_age_seconds
        self._max_senders = max_senders
        self._windows: OrderedDict[Key, _Window] = OrderedDict()
        self._floors: OrderedDict[Key, _Floor] = OrderedDict()
        self._not_before: float = _NEG_INF
        self._latest_now: float = _NEG_INF

    def _judge(
        self, group: int, epoch: int, sender: int, seq: int, sent_at: int, now: float, retained: bool
    ) -> tuple[Key, _Window | None, _Floor | None] | None:
        max_age = self._retained_max_age if retained else self._max_age
        if sent_at < now - max_age:
            raise SmqttError("ERR_STALE", "the message was sent too long ago")
        if sent_at > now + self._max_skew:
            raise SmqttError("ERR_STALE", "the message was sent in the future")
        if retained:
            return None  # retained deliveries: freshness only, neither checked nor recorded
        key = (group, epoch, sender)
        window = self._windows.get(key)
        if window is not None:
            if sent_at <= window.not_before:
                raise _replay("sent before this window could remember")
            if seq > window.highest:
                return key, window, None
            age = window.highest - seq
            if age >= self._size:
                raise _replay("older than the replay window")
            if (window.seen >> age) & 1:
                raise _replay("already seen")
            return key, window, None
        floor = self._floors.get(key)
        if floor is not None:
            if sent_at <= floor.not_before:
                raise _replay("sent before this window could remember")
            if seq <= floor.highest:
                raise _replay("at or below the floor of an evicted window")
            return key, None, floor
        if sent_at <= self._not_before:
            raise _replay("sent before an evicted window was forgotten")
        return key, None, None

    def check(
        self, group: int, epoch: int, sender: int, seq: int, sent_at: int, now: float, retained: bool = False
    ) -> None:
        """Raises ``ERR_STALE`` / ``ERR_REPLAY`` without recording anything."""
        self._judge(group, epoch, sender, seq, sent_at, now, retained)

    def accept(
        self, group: int, epoch: int, sender: int, seq: int, sent_at: int, now: float, retained: bool = False
    ) -> None:
        """:meth:`check`, then records ``seq``; nothing is recorded when it raises."""
        verdict = self._judge(group, epoch, sender, seq, sent_at, now, retained)
        if verdict is None:
            return
        self._latest_now = max(self._latest_now, now)
        key, window, floor = verdict
        if window is None:
            if floor is not None:  # everything at or below the evicted window's highest counts as seen
                window = _Window(floor.highest, (1 << (self._words * 32)) - 1, floor.not_before)
            else:
                window = _Window(-1, 0, self._not_before)
            self._floors.pop(key, None)
            self._windows[key] = window
            if len(self._windows) > self._max_senders:
                self._evict()
        else:
            self._windows.move_to_end(key)
        self._record(window, seq)

    def _record(self, window: _Window, seq: int) -> None:
        mask = (1 << (self._words * 32)) - 1
        if seq <= window.highest:
            window.seen |= 1 << (window.highest - seq)
            return
        shift = seq - window.highest
        window.highest = seq
        window.seen = 0 if shift >= self._size else (window.seen << shift) & mask
        window.seen |= 1

    def _evict(self) -> None:
        key, window = self._windows.popitem(last=False)
        self._floors[key] = _Floor(window.highest, window.not_before, self._latest_now)
        if len(self._floors) > self._max_senders:
            self._drop_oldest_floor()

    def _drop_oldest_floor(self) -> None:
        _key, floor = self._floors.popitem(last=False)
        self._not_before = max(self._not_before, floor.evicted_at + self._max_skew)

    def reset_after_loss(self, now: float) -> None:
        """After the saved state was lost: refuse everything that could have been accepted before."""
        self._windows.clear()
        self._floors.clear()
        self._not_before = max(self._not_before, now + self._max_skew)

    def export_state(self, keep: Callable[[int, int], bool] = lambda g, e: True) -> dict[str, Any]:
        """JSON-safe state, the TypeScript ``ReplayWindowState`` shape."""
        def time(value: float) -> float | None:
            return None if math.isinf(value) else value

        windows = [
            [g, e, s, w.highest, time(w.not_before), [(w.seen >> (32 * i)) & 0xFFFF_FFFF for i in range(self._words)]]
            for (g, e, s), w in self._windows.items()
            if keep(g, e)
        ]
        floors = [
            [g, e, s, f.highest, time(f.not_before), time(f.evicted_at)]
            for (g, e, s), f in self._floors.items()
            if keep(g, e)
        ]
        return {"v": 1, "notBefore": time(self._not_before), "windows": windows, "floors": floors}

    def restore_state(self, state: object, now: float) -> None:
        """Replaces the memory with a saved state; raises ``ERR_REPLAY_STATE_INVALID`` (unchanged)."""
        if (
            not isinstance(state, dict)
            or state.get("v") != 1
            or not isinstance(state.get("windows"), list)
            or not isinstance(state.get("floors"), list)
        ):
            raise _invalid("not a version 1 replay window state")

        def uint(entry: list[Any], i: int) -> int:
            value = entry[i]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 2**53 - 1:
                raise _invalid(f"element {i} is not a uint")
            return value

        def time(entry: list[Any], i: int) -> float:
            value = entry[i]
            if value is None:
                return _NEG_INF
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise _invalid(f"element {i} is not a time")
            return float(value)

        seen_keys: set[Key] = set()

        def key_of(entry: list[Any]) -> Key:
            key = (uint(entry, 0), uint(entry, 1), uint(entry, 2))
            if key in seen_keys:
                raise _invalid(f"{key} appears twice")
            seen_keys.add(key)
            return key

        windows: list[tuple[Key, _Window]] = []
        floors: list[tuple[Key, _Floor]] = []
        resized: list[tuple[Key, _Floor]] = []  # saved under another window_size: back as floors
        for entry in state["windows"]:
            if not isinstance(entry, list) or len(entry) != 6:
                raise _invalid("a window is not a 6-element array")
            key = key_of(entry)
            highest = uint(entry, 3)
            not_before = time(entry, 4)
            words = entry[5]
            if not isinstance(words, list) or not 1 <= len(words) <= MAX_WINDOW_SIZE // 32:
                raise _invalid("bad window bitmap")
            bits = 0
            for i, word in enumerate(words):
                if not isinstance(word, int) or isinstance(word, bool) or not 0 <= word <= 0xFFFF_FFFF:
                    raise _invalid("bad window bitmap word")
                bits |= word << (32 * i)
            if len(words) == self._words:
                windows.append((key, _Window(highest, bits, not_before)))
            else:
                resized.append((key, _Floor(highest, not_before, now)))
        for entry in state["floors"]:
            if not isinstance(entry, list) or len(entry) != 6:
                raise _invalid("a floor is not a 6-element array")
            floors.append((key_of(entry), _Floor(uint(entry, 3), time(entry, 4), time(entry, 5))))
        not_before = time([state.get("notBefore")], 0)

        self._windows.clear()
        self._floors.clear()
        self._not_before = not_before
        self._latest_now = max(self._latest_now, now)
        for key, floor in floors + resized:
            self._floors[key] = floor
        for key, window in windows:
            self._windows[key] = window
            if len(self._windows) > self._max_senders:
                self._evict()
        while len(self._floors) > self._max_senders:
            self._drop_oldest_floor()

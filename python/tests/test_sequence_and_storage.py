from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from smqtt.errors import SmqttError
from smqtt.sequence import SequenceCounter, key_server_sequence_source, sequence_key
from smqtt.storage import FileStorage, MemoryStorage


class FakeKeyServer:
    """The key server's rule: each range above atLeast and above every range it gave before."""

    def __init__(self) -> None:
        self.floor = 0
        self.lock = threading.Lock()
        self.calls: list[tuple[int, int]] = []

    def reserve_sequence(self, at_least: int, size: int) -> tuple[int, int]:
        with self.lock:
            self.calls.append((at_least, size))
            start = max(self.floor, at_least)
            self.floor = start + size
            return start, start + size


def test_two_processes_on_one_identity_never_share_a_number() -> None:
    ks = FakeKeyServer()
    a = SequenceCounter(key_server_sequence_source(MemoryStorage(), "t-1", ks))  # type: ignore[arg-type]
    b = SequenceCounter(key_server_sequence_source(MemoryStorage(), "t-1", ks))  # type: ignore[arg-type]
    seen = [a.next() for _ in range(5000)] + [b.next() for _ in range(5000)] + [a.next() for _ in range(5000)]
    assert len(set(seen)) == len(seen)
    sizes = [size for _, size in ks.calls]
    assert ks.calls[0] == (0, 4096) and max(sizes) > 4096 and max(sizes) <= 65_536  # ranges grow per run


def test_restart_and_restored_backup_stay_above_what_was_used() -> None:
    ks = FakeKeyServer()
    storage = MemoryStorage()
    first = SequenceCounter(key_server_sequence_source(storage, "t-1", ks))  # type: ignore[arg-type]
    used = {first.next() for _ in range(10)}
    backup = storage.get(sequence_key("t-1"))
    restarted = SequenceCounter(key_server_sequence_source(storage, "t-1", ks))  # type: ignore[arg-type]
    assert restarted.next() >= 4096
    restored = MemoryStorage()
    if backup is not None:
        restored.set(sequence_key("t-1"), backup)
    after_restore = SequenceCounter(key_server_sequence_source(restored, "t-1", ks))  # type: ignore[arg-type]
    assert after_restore.next() not in used and after_restore.next() >= 8192
    # a key server restored from an old backup: the storage floor still holds
    ks.floor = 0
    floor = int(storage.get(sequence_key("t-1")) or 0)
    again = SequenceCounter(key_server_sequence_source(storage, "t-1", ks))  # type: ignore[arg-type]
    assert floor > 0 and again.next() >= floor


def test_the_next_range_is_reserved_ahead() -> None:
    ks = FakeKeyServer()
    counter = SequenceCounter(key_server_sequence_source(MemoryStorage(), "t-1", ks))  # type: ignore[arg-type]
    for _ in range(2049):
        counter.next()
    deadline = time.monotonic() + 5
    while len(ks.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(ks.calls) == 2  # reserved at half of the first range, before it ran out
    assert [counter.next() for _ in range(2047)][-1] == 4095
    assert counter.next() == 4096  # straight into the range reserved ahead


def test_unreachable_key_server_is_sequence_unavailable() -> None:
    def down() -> tuple[int, int]:
        raise OSError("connection refused")

    with pytest.raises(SmqttError) as err:
        SequenceCounter(down).next()
    assert err.value.code == "ERR_SEQUENCE_UNAVAILABLE"


def test_a_range_below_one_held_is_refused() -> None:
    ranges = iter([(100, 101)])
    counter = SequenceCounter(lambda: next(ranges, (0, 10)))
    assert counter.next() == 100
    with pytest.raises(SmqttError) as err:
        counter.next()
    assert err.value.code == "ERR_SEQUENCE_EXHAUSTED"


def test_file_storage_is_atomic_private_and_locked(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "state")
    storage.set("seq:t-1", "4096")
    assert storage.get("seq:t-1") == "4096"
    assert FileStorage(tmp_path / "state").get("seq:t-1") == "4096"
    files = list((tmp_path / "state").glob("*.json"))
    assert files and all(f.stat().st_mode & 0o077 == 0 for f in files)
    storage.lock()
    other = FileStorage(tmp_path / "state")
    with pytest.raises(SmqttError) as err:
        other.lock()
    assert err.value.code == "ERR_IDENTITY_IN_USE"
    storage.unlock()
    other.lock()
    other.unlock()

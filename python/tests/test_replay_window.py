from __future__ import annotations

import json

import pytest

from smqtt.errors import SmqttError
from smqtt.replay import ReplayWindow

NOW = 1_790_000_000


def refused(window: ReplayWindow, seq: int, sent_at: int = NOW, sender: int = 1) -> str | None:
    try:
        window.accept(1, 1, sender, seq, sent_at, NOW)
    except SmqttError as err:
        return err.code
    return None


def test_sliding_window() -> None:
    w = ReplayWindow(window_size=64)
    assert refused(w, 100) is None
    assert refused(w, 100) == "ERR_REPLAY"
    assert refused(w, 90) is None  # reordered inside the window: once
    assert refused(w, 90) == "ERR_REPLAY"
    assert refused(w, 36) == "ERR_REPLAY"  # age 64: out of a 64-number window
    assert refused(w, 37) is None  # age 63: the oldest still remembered
    assert refused(w, 200) is None
    assert refused(w, 136) == "ERR_REPLAY"  # age 64: older than the window
    assert refused(w, 137) is None


def test_freshness() -> None:
    w = ReplayWindow(max_age_seconds=300, max_future_skew_seconds=30)
    assert refused(w, 1, NOW - 301) == "ERR_STALE"
    assert refused(w, 1, NOW + 31) == "ERR_STALE"
    assert refused(w, 1, NOW - 300) is None


def test_state_survives_a_restart_as_json() -> None:
    w = ReplayWindow()
    for seq in (5, 7, 100):
        w.accept(3, 4, 9, seq, NOW, NOW)
    restored = ReplayWindow()
    restored.restore_state(json.loads(json.dumps(w.export_state())), NOW)
    for seq in (5, 7, 100):
        with pytest.raises(SmqttError):
            restored.accept(3, 4, 9, seq, NOW, NOW)
    restored.accept(3, 4, 9, 6, NOW, NOW)


def test_eviction_leaves_a_floor() -> None:
    w = ReplayWindow(max_senders=2)
    for sender in (1, 2, 3):
        w.accept(1, 1, sender, 50, NOW, NOW)
    assert refused(w, 50, sender=1) == "ERR_REPLAY"
    assert refused(w, 49, sender=1) == "ERR_REPLAY"
    assert refused(w, 51, sender=1) is None


def test_corrupt_state_is_refused_and_nothing_changes() -> None:
    w = ReplayWindow()
    w.accept(1, 1, 1, 10, NOW, NOW)
    for bad in ({"v": 2}, {"v": 1, "windows": [[1, 1, 1]], "floors": []}, {"v": 1, "windows": [], "floors": [[-1, 0, 0, 0, None, None]]}):
        with pytest.raises(SmqttError) as err:
            w.restore_state(bad, NOW)
        assert err.value.code == "ERR_REPLAY_STATE_INVALID"
    assert refused(w, 10) == "ERR_REPLAY"


def test_reset_after_loss_refuses_what_could_have_been_seen() -> None:
    w = ReplayWindow()
    w.reset_after_loss(NOW)
    assert refused(w, 1, NOW) == "ERR_REPLAY"
    later = ReplayWindow()
    later.reset_after_loss(NOW - 100)
    assert refused(later, 1, NOW) is None

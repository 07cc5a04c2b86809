"""Envelopes of an unknown sender or epoch: held while a worker thread fetches keys, never on the
thread that delivered them, one refresh for many, opened in each sender's order, and bounded."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from fixtures import EPOCH, NOW, bundle, identity, writer_record
from test_secure_client import KS, ME, TOPIC, WRITER, WRITERS, deliver, from_writer, started

from smqtt.documents import open_key_bundle
from smqtt.envelope import EnvelopeSigner, parse_envelope, seal_envelope
from smqtt.errors import SmqttError
from smqtt.keyring import Keyring

STRANGER = identity("thermostat-9")
STRANGER_TOPIC = "home/h1/thermostat/thermostat-9/temp"


def from_stranger(seq: int) -> bytes:
    ring = Keyring(lambda: NOW)
    ring.apply(open_key_bundle(bundle(WRITER, WRITERS), key_server_public_key=KS, recipient=WRITER, now=NOW))
    return seal_envelope(
        topic=STRANGER_TOPIC, payload=f"m{seq}".encode(), epoch_key=ring.sealing_key(TOPIC, 1000),
        signer=EnvelopeSigner(kid=1009, seed=STRANGER.signing_seed), seq=seq, sent_at=NOW,
    )


class GatedWriters:
    """POST /v1/writers that blocks until released, recording the thread that called it."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.gate = threading.Event()
        self.calls: list[tuple[int, list[int], int]] = []

    def __call__(self, group: int, kids: list[int]) -> Any:
        self.calls.append((group, list(kids), threading.get_ident()))
        assert self.gate.wait(5)
        return self.answer


def test_held_envelopes_keep_each_senders_order_and_share_one_refresh_off_the_delivering_thread() -> None:
    sc, paho, _, messages, errors = started()
    writers = GatedWriters(writer_record([(1009, STRANGER, "home/+/thermostat/thermostat-9/#")]))
    sc._key_server.writers = writers  # type: ignore[method-assign]
    for seq in (1, 2, 3):
        deliver(paho, STRANGER_TOPIC, from_stranger(seq))  # returns at once: the refresh waits at the gate
    deliver(paho, TOPIC, from_writer(5))  # a known sender is not held back
    assert [m.payload for m in messages] == [b"21.5"]
    deliver(paho, STRANGER_TOPIC, from_stranger(4))  # arrives during the refresh: waits behind 1-3
    writers.gate.set()
    assert sc.wait_until_settled(5)
    assert [(m.sender, m.payload) for m in messages[1:]] == [("thermostat-9", b"m1"), ("thermostat-9", b"m2"),
                                                             ("thermostat-9", b"m3"), ("thermostat-9", b"m4")]
    assert errors == []
    assert [(g, kids) for g, kids, _ in writers.calls] == [(7, [1009])]  # one refresh for all of them
    assert all(thread != threading.get_ident() for _, _, thread in writers.calls)
    assert sc._held.refreshes == 1
    # learned: later envelopes open at once, without another call
    deliver(paho, STRANGER_TOPIC, from_stranger(5))
    assert messages[-1].payload == b"m5" and len(writers.calls) == 1
    sc.stop()


def test_beyond_the_bound_an_unknown_sender_is_refused_at_once() -> None:
    sc, paho, _, messages, errors = started()
    sc._held._max_held = 2
    writers = GatedWriters(writer_record([(1009, STRANGER, "home/+/thermostat/thermostat-9/#")]))
    sc._key_server.writers = writers  # type: ignore[method-assign]
    for seq in (1, 2, 3, 4):
        deliver(paho, STRANGER_TOPIC, from_stranger(seq))
    assert [e.code for e in errors] == ["ERR_UNKNOWN_SENDER", "ERR_UNKNOWN_SENDER"]  # 3 and 4, at once
    writers.gate.set()
    assert sc.wait_until_settled(5)
    assert [m.payload for m in messages] == [b"m1", b"m2"]
    sc.stop()


def test_a_sender_still_unknown_after_a_refresh_is_refused_and_goes_quiet() -> None:
    sc, paho, _, messages, errors = started()
    calls: list[int] = []

    def no_such_writer(group: int, kids: list[int]) -> Any:
        calls.append(threading.get_ident())
        return writer_record([])  # the key server answers: not a writer

    sc._key_server.writers = no_such_writer  # type: ignore[method-assign]
    deliver(paho, STRANGER_TOPIC, from_stranger(1))
    assert sc.wait_until_settled(5)
    assert [e.code for e in errors] == ["ERR_UNKNOWN_SENDER"] and messages == []
    deliver(paho, STRANGER_TOPIC, from_stranger(2))  # quiet: refused at once, no second call
    assert [e.code for e in errors] == ["ERR_UNKNOWN_SENDER"] * 2 and len(calls) == 1
    assert sc._held.refreshes == 1
    sc.stop()


def test_an_unknown_epoch_is_held_while_the_bundle_is_fetched_on_the_worker_thread() -> None:
    sc, paho, _, messages, errors = started()
    new_epoch = EPOCH + 1
    gate = threading.Event()
    threads: list[int] = []

    def next_bundle() -> tuple[Any, str | None]:
        threads.append(threading.get_ident())
        assert gate.wait(5)
        return bundle(ME, WRITERS, epoch=new_epoch, issued_at=NOW + 10), "tag-2"

    sc._key_server.bundle = next_bundle  # type: ignore[method-assign]
    ring = Keyring(lambda: NOW)
    ring.apply(open_key_bundle(bundle(WRITER, WRITERS, epoch=new_epoch), key_server_public_key=KS,
                               recipient=WRITER, now=NOW))
    key = ring.sealing_key(TOPIC, 1000)
    signer = EnvelopeSigner(kid=1000, seed=WRITER.signing_seed)
    for seq in (10, 11):
        deliver(paho, TOPIC, seal_envelope(topic=TOPIC, payload=b"e%d" % seq, epoch_key=key, signer=signer,
                                           seq=seq, sent_at=NOW))
    assert messages == [] and errors == []
    gate.set()
    assert sc.wait_until_settled(5)
    assert [(m.epoch, m.payload) for m in messages] == [(new_epoch, b"e10"), (new_epoch, b"e11")]
    assert threads and threading.get_ident() not in threads
    sc.stop()


def test_stopping_refuses_what_is_held() -> None:
    sc, paho, _, messages, errors = started()
    sc._held._interval = 3600.0
    sc._held._last_refresh = sc._held._clock()  # the next refresh is an hour away
    deliver(paho, STRANGER_TOPIC, from_stranger(1))
    assert errors == []
    sc.stop()
    assert [e.code for e in errors] == ["ERR_UNKNOWN_SENDER"] and messages == []


def test_a_retired_sealing_epoch_is_refreshed_in_the_callers_thread_never_in_a_callback() -> None:
    clock = [NOW]
    sc, paho, *_ = started(now=lambda: clock[0])
    later = NOW + 7300  # epoch 300 retired at NOW + 7200
    fetched: list[int] = []

    def next_bundle() -> tuple[Any, str | None]:
        fetched.append(threading.get_ident())
        return bundle(ME, WRITERS, epoch=EPOCH + 1, issued_at=later, retires_at=later + 7200), "tag-2"

    sc._key_server.bundle = next_bundle  # type: ignore[method-assign]
    clock[0] = later
    own_topic = "home/h1/thermostat/app-1/temp"

    # On paho's network thread (what loop_start() runs callbacks on): refused at once, no call.
    paho._thread = threading.current_thread()  # type: ignore[attr-defined]
    with pytest.raises(SmqttError) as refused:
        sc.publish(own_topic, b"from a callback")
    assert refused.value.code == "ERR_UNKNOWN_EPOCH" and fetched == []
    paho._thread = None  # type: ignore[attr-defined]

    # From the application's thread: one refresh, then sealed under the new epoch.
    sc.publish(own_topic, b"x")
    assert fetched == [threading.get_ident()]
    topic, envelope, *_ = paho.published[-1]
    assert topic == own_topic and parse_envelope(envelope).header.epoch == EPOCH + 1
    sc.stop()

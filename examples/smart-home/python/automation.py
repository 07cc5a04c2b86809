"""The house's automation, in Python on paho-mqtt: reads the thermostats and, when the hall gets
warm (the heating is on, so somebody is home for the evening), locks the back door.

It is an ordinary SMQTT principal (role ``app``): it enrolls with a one-time token, makes its
own keys, logs in to the broker with its CONNECT password and sees only verified plaintext; its
lock command is sealed and signed, so the lock knows who sent it. Started by
``src/python-automation.ts``; needs Python >= 3.11, PyNaCl, paho-mqtt and ``python/src`` of this
repository on ``PYTHONPATH``.

Usage: automation.py '<config JSON>' (keys below). Prints one JSON line per event on stdout:
``enrolled``, ``connected``, ``subscribed``, ``reading`` (verified sender and value),
``command`` (a lock command sent), ``securityError`` (a refused message), ``error``, ``done``.
Runs until its standard input closes.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as paho

from smqtt import FileStorage, SecureClient, SecureMessage, SecurityErrorEvent, enroll, load_enrollment, secure


def emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def celsius_of(message: SecureMessage) -> float | None:
    """A verified sender can still send nonsense: anything but {"celsius": number} is ignored."""
    try:
        value = json.loads(message.payload.decode("utf-8"))["celsius"]
    except (ValueError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def main(config: dict[str, Any]) -> int:
    storage = FileStorage(config["storage"])
    enrollment = load_enrollment(storage) or enroll(
        key_server_url=config["keyServerUrl"],
        ca_file=config["ca"],
        token=config["token"],
        principal_id=config["id"],
        storage=storage,
        key_server_public_key=bytes.fromhex(config["keyServerPublicKey"]),  # the operator's, not first use
    )
    emit(event="enrolled", id=enrollment.principal_id, kid=enrollment.kid)

    client_class: Any = paho.Client
    if hasattr(paho, "CallbackAPIVersion"):  # paho-mqtt 2.x
        client = client_class(getattr(paho, "CallbackAPIVersion").VERSION2, client_id=enrollment.principal_id)
    else:
        client = client_class(client_id=enrollment.principal_id)
    client.tls_set(ca_certs=config["ca"])
    sc = secure(client, enrollment, storage=storage, ca_file=config["ca"])

    lock_topic: str = config["lockCommandTopic"]
    threshold = float(config["warmAbove"])
    state = {"warm": False}
    connected = threading.Event()
    subscribed = threading.Event()
    result = {"rc": -1}

    def on_connect(c: Any, userdata: Any, *args: Any) -> None:
        rc = args[1] if len(args) > 1 else 0
        result["rc"] = int(getattr(rc, "value", rc))
        connected.set()

    def on_message(_: SecureClient, message: SecureMessage) -> None:
        celsius = celsius_of(message) if message.encrypted else None
        if celsius is None:
            return
        emit(event="reading", topic=message.topic, sender=message.sender, celsius=celsius, group=message.group,
             epoch=message.epoch)
        warm = celsius > threshold
        if warm and not state["warm"]:
            sc.publish(lock_topic, json.dumps({"command": "lock"}), qos=1)
            emit(event="command", topic=lock_topic, command="lock", because=f"{celsius} °C > {threshold} °C")
        state["warm"] = warm

    def on_security_error(_: SecureClient, event: SecurityErrorEvent) -> None:
        emit(event="securityError", code=event.code, topic=event.topic)

    sc.on_connect = on_connect
    sc.on_message = on_message
    sc.on_security_error = on_security_error
    client.on_subscribe = lambda *args: subscribed.set()

    # The broker learns of a principal enrolled a moment ago with its next snapshot: retry.
    for _ in range(40):
        connected.clear()
        client.connect(config["brokerHost"], int(config["brokerPort"]), keepalive=30)
        client.loop_start()
        connected.wait(10)
        if result["rc"] == 0:
            break
        client.loop_stop()
        client.disconnect()
        time.sleep(0.25)
    if result["rc"] != 0:
        emit(event="error", message=f"CONNECT refused: {result['rc']}")
        return 1
    emit(event="connected")
    client.subscribe([(f, 1) for f in config["subscribe"]])
    if not subscribed.wait(10):
        emit(event="error", message="SUBACK not received")
        return 1
    emit(event="subscribed")

    sys.stdin.read()  # until the scenario closes our standard input
    client.disconnect()
    client.loop_stop()
    sc.stop()
    emit(event="done")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.exit(main(json.loads(sys.argv[1])))

"""A Python SMQTT device driven by test/interop/python-client.test.ts.

Usage: device.py '<plan JSON>'. Enrolls with a one-time token, connects to the broker with its
CONNECT password (paho-mqtt, TLS with the deployment CA), then subscribes and/or publishes as
the plan says, printing one JSON line per event on stdout:

  {"event": "enrolled", "kid": 7}            {"event": "connected"}
  {"event": "subscribed"}                    {"event": "published", "topic": ..., "mid": 1}
  {"event": "message", "topic", "payload", "sender", "kid", "group", "epoch", "seq", "sentAt"}
  {"event": "securityError", "code", "topic"}
  {"event": "done"}
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as paho

from smqtt import FileStorage, SecureClient, SecureMessage, SecurityErrorEvent, enroll, load_enrollment, secure

# test/interop/_python.ts runs this file by path (runpy), which does not put its folder on sys.path.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from properties_json import properties_from_json, properties_to_json  # noqa: E402


def emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def main(plan: dict[str, Any]) -> int:
    storage = FileStorage(plan["storage"])
    enrollment = load_enrollment(storage)
    if enrollment is None:
        enrollment = enroll(
            key_server_url=plan["keyServerUrl"],
            ca_file=plan["ca"],
            token=plan["token"],
            principal_id=plan["id"],
            storage=storage,
            client_certificate=plan.get("clientCertificate", False),
            post_quantum=plan.get("postQuantum", False),
        )
    emit(event="enrolled", kid=enrollment.kid, certificate=enrollment.certificate_pem is not None,
         kem=enrollment.identity.kem)

    protocol = paho.MQTTv5 if plan.get("mqtt") == 5 else paho.MQTTv311
    client_class: Any = paho.Client
    if hasattr(paho, "CallbackAPIVersion"):  # paho-mqtt 2.x
        api = getattr(paho, "CallbackAPIVersion").VERSION2
        client = client_class(api, client_id=enrollment.principal_id, protocol=protocol)
    else:
        client = client_class(client_id=enrollment.principal_id, protocol=protocol)
    if plan.get("clientCertificate"):  # mutual TLS with the certificate issued at enrollment
        cert, key = enrollment.write_client_certificate(plan["storage"] + "-tls")
        client.tls_set(ca_certs=plan["ca"], certfile=cert, keyfile=key)
    elif plan.get("tls", True):
        client.tls_set(ca_certs=plan["ca"])
    sc = secure(
        client, enrollment, storage=storage, ca_file=plan["ca"], connect_password=plan.get("connectPassword", True)
    )

    connected = threading.Event()
    subscribed = threading.Event()
    results: dict[str, int] = {"rc": -1}
    received: list[SecureMessage] = []
    errors: list[SecurityErrorEvent] = []

    def on_connect(c: Any, userdata: Any, *args: Any) -> None:
        rc = args[1] if len(args) > 1 else 0
        results["rc"] = int(getattr(rc, "value", rc))
        connected.set()

    def on_subscribe(c: Any, userdata: Any, mid: int, *args: Any) -> None:
        subscribed.set()

    def on_message(_: SecureClient, message: SecureMessage) -> None:
        received.append(message)
        emit(
            event="message", topic=message.topic, payload=message.payload.decode("utf-8", "replace"),
            sender=message.sender, kid=message.kid, group=message.group, epoch=message.epoch,
            seq=message.seq, sentAt=message.sent_at,
            verified=properties_to_json(message.properties.verified),
            unsigned=properties_to_json(message.properties.unsigned),
        )

    def on_security_error(_: SecureClient, event: SecurityErrorEvent) -> None:
        errors.append(event)
        emit(event="securityError", code=event.code, topic=event.topic)

    sc.on_connect = on_connect
    sc.on_message = on_message
    sc.on_security_error = on_security_error
    client.on_subscribe = on_subscribe

    # A principal enrolled a moment ago reaches the broker with its next snapshot pull: retry.
    for _ in range(40):
        connected.clear()
        client.connect(plan["host"], plan["port"], keepalive=30)
        client.loop_start()
        connected.wait(10)
        if results["rc"] == 0:
            break
        client.loop_stop()
        client.disconnect()
        time.sleep(0.25)
    if results["rc"] != 0:
        emit(event="error", message=f"CONNECT refused: {results['rc']}")
        return 1
    emit(event="connected")

    filters = plan.get("subscribe", [])
    if filters:
        client.subscribe([(f, 1) for f in filters])
        subscribed.wait(10)
        emit(event="subscribed")
    # With "publishAfter": n, publish only once n messages arrived (a peer that starts later).
    publish_after = plan.get("publishAfter", 0)
    wait_until = time.time() + plan.get("seconds", 10)
    while len(received) < publish_after and time.time() < wait_until:
        time.sleep(0.02)
    for item in plan.get("publish", []):
        info = sc.publish(
            item["topic"],
            item["payload"].encode("utf-8"),
            qos=item.get("qos", 1),
            properties=properties_from_json(item.get("properties")),
        )
        info.wait_for_publish(10)
        emit(event="published", topic=item["topic"], mid=info.mid)

    deadline = time.time() + plan.get("seconds", 10)
    want_messages = plan.get("receive", 0)
    want_errors = plan.get("errors", 0)
    while time.time() < deadline and (len(received) < want_messages or len(errors) < want_errors):
        time.sleep(0.02)
    client.disconnect()
    client.loop_stop()
    sc.stop()
    emit(event="done", heldRefreshes=sc.held_refreshes)
    return 0 if len(received) >= want_messages and len(errors) >= want_errors else 1


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))

"""A small Eclipse Paho (paho-mqtt 1.6.1, MQTT 3.1.1) client for the interop tests.

Usage: /usr/bin/python3 paho_client.py '<plan as JSON>'

The plan: {"host", "port", "ca", "clientId", optional "cert"/"key" (mutual TLS), optional
"username"/"password", "steps": [...], "seconds": overall limit}. Steps, run in order once
connected:
  {"subscribe": ["filter", ...]}            waits for the SUBACK
  {"publish": "topic", "qos": 0|1, "payload": "text" | "payloadFile": "path"}   QoS 1 waits for the PUBACK
  {"receive": n}                            waits for n messages

Prints one JSON object per line on stdout, flushed at once, so a test can react to each:
  {"event": "connack", "rc": 0}
  {"event": "suback", "codes": [0, 128]}
  {"event": "puback", "mid": 1}
  {"event": "message", "topic": "...", "payloadHex": "..."}
  {"event": "disconnect", "rc": 7}           rc 0 only when this script disconnected
  {"event": "error", "message": "..."}       e.g. TLS failure, a step that timed out
  {"event": "done"}
Exits 0 when every step completed, 1 otherwise. Never reconnects.
"""

import json
import sys
import time

import paho.mqtt.client as mqtt


def emit(**event):
    print(json.dumps(event), flush=True)


def main(plan):
    deadline = time.monotonic() + plan.get("seconds", 10)
    state = {"connack": None, "subacks": 0, "pubacks": set(), "messages": 0, "connected": False}

    client = mqtt.Client(client_id=plan["clientId"], clean_session=True, protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=plan["ca"], certfile=plan.get("cert"), keyfile=plan.get("key"))
    if "username" in plan:
        client.username_pw_set(plan["username"], plan.get("password"))

    def on_connect(_client, _userdata, _flags, rc):
        state["connack"] = rc
        state["connected"] = rc == 0
        emit(event="connack", rc=rc)

    def on_subscribe(_client, _userdata, _mid, granted_qos):
        state["subacks"] += 1
        emit(event="suback", codes=list(granted_qos))

    def on_publish(_client, _userdata, mid):
        state["pubacks"].add(mid)

    def on_message(_client, _userdata, message):
        state["messages"] += 1
        emit(event="message", topic=message.topic, payloadHex=message.payload.hex())

    def on_disconnect(_client, _userdata, rc):
        state["connected"] = False
        emit(event="disconnect", rc=rc)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_publish = on_publish
    client.on_message = on_message
    client.on_disconnect = on_disconnect

    def run_until(done, what):
        """Runs the network loop until done() or the connection closes; False on timeout or close."""
        while not done():
            if time.monotonic() > deadline:
                emit(event="error", message="timed out waiting for " + what)
                return False
            # Paho reports a lost connection through on_disconnect and returns its error here.
            if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS and not done():
                return False
        return True

    try:
        client.connect(plan["host"], plan["port"], keepalive=30)
    except Exception as err:  # TLS or socket failure: report it like the other events
        emit(event="error", message=str(err))
        return 1
    if not run_until(lambda: state["connack"] is not None, "CONNACK") or state["connack"] != 0:
        return 1

    for step in plan.get("steps", []):
        if "subscribe" in step:
            wanted = state["subacks"] + 1
            client.subscribe([(topic, 1) for topic in step["subscribe"]])
            ok = run_until(lambda: state["subacks"] >= wanted, "SUBACK")
        elif "publish" in step:
            if "payloadFile" in step:
                with open(step["payloadFile"], "rb") as file:
                    payload = file.read()
            else:
                payload = step.get("payload", "").encode()
            qos = step.get("qos", 1)
            info = client.publish(step["publish"], payload, qos=qos)
            if qos == 0:
                ok = run_until(lambda: info.is_published(), "the PUBLISH to be written")
            else:
                ok = run_until(lambda: info.mid in state["pubacks"], "PUBACK")
                if ok:
                    emit(event="puback", mid=info.mid)
        elif "receive" in step:
            wanted = state["messages"] + step["receive"]
            ok = run_until(lambda: state["messages"] >= wanted, "messages")
        else:
            emit(event="error", message="unknown step " + json.dumps(step))
            ok = False
        if not ok:
            return 1

    client.disconnect()
    run_until(lambda: not state["connected"], "the DISCONNECT to be sent")
    emit(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))

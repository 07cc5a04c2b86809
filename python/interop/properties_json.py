"""MQTT 5 properties (:class:`smqtt.EnvelopeProperties`) as JSON, in the form the frozen vectors
(packages/core/vectors/envelope-v1-bound-properties.json) and the interop tests' plans and events
write them: ``contentType``, ``responseTopic``, ``correlationData`` (hex), ``userProperties``
(``[[key, value], ...]``); an absent property is an absent field."""

from __future__ import annotations

from typing import Any

from smqtt import EnvelopeProperties


def properties_from_json(json_: dict[str, Any] | None) -> EnvelopeProperties | None:
    if json_ is None:
        return None
    correlation = json_.get("correlationData")
    return EnvelopeProperties(
        content_type=json_.get("contentType"),
        response_topic=json_.get("responseTopic"),
        correlation_data=None if correlation is None else bytes.fromhex(correlation),
        user_properties=tuple((k, v) for k, v in json_.get("userProperties", [])),
    )


def properties_to_json(p: EnvelopeProperties) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if p.content_type is not None:
        out["contentType"] = p.content_type
    if p.response_topic is not None:
        out["responseTopic"] = p.response_topic
    if p.correlation_data is not None:
        out["correlationData"] = p.correlation_data.hex()
    if p.user_properties:
        out["userProperties"] = [list(pair) for pair in p.user_properties]
    return out

"""MQTT topic names and filters: validation and matching with exact MQTT semantics."""

from __future__ import annotations

from .errors import SmqttError

MAX_TOPIC_BYTES = 65_535
MAX_TOPIC_LEVELS = 128


def _problem(text: object, is_filter: bool) -> str | None:
    if not isinstance(text, str):
        return "must be a string"
    if text == "":
        return "must not be empty"
    if "\x00" in text:
        return "contains U+0000"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "has a lone surrogate"
    levels = text.split("/")
    for level in levels:
        if "+" in level or "#" in level:
            if not is_filter:
                return "contains a wildcard (wildcards are only allowed in filters)"
            if level not in ("+", "#"):
                return "has a wildcard inside a level"
    if is_filter and "#" in levels[:-1]:
        return "has '#' before the last level"
    if size > MAX_TOPIC_BYTES:
        return f"is {size} UTF-8 bytes, more than {MAX_TOPIC_BYTES}"
    if len(levels) > MAX_TOPIC_LEVELS:
        return f"has {len(levels)} levels, more than {MAX_TOPIC_LEVELS}"
    return None


def validate_topic(topic: str) -> None:
    """Raises ``SmqttError('ERR_TOPIC_INVALID')`` for a topic name MQTT does not allow."""
    problem = _problem(topic, False)
    if problem is not None:
        raise SmqttError("ERR_TOPIC_INVALID", f"topic {problem}")


def is_valid_filter(topic_filter: str) -> bool:
    return _problem(topic_filter, True) is None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when ``topic`` is matched by ``topic_filter`` (both valid), as MQTT §4.7 says."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return True  # also matches the parent: 'a/#' matches 'a'
        if i >= len(t_levels):
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)

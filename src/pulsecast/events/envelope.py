"""The event envelope every stream shares, and the reasons an event is rejected.

On the wire (Kafka value of ``<stream>.events``) an event is one JSON object::

    {"event_id": "...", "stream": "telemetry", "key": "m-0007",
     "event_time": "2026-11-28T05:00:00.250Z", "ingest_time": "2026-11-28T05:00:00.251Z",
     "payload": {"entity_id": "m-0007", "temperature_c": 61.2, ...}}

Times are RFC 3339 in UTC. The key is the value of the stream's ``key_field``
and is also the Kafka message key, so one entity's events keep their order.
A rejected event becomes a :class:`Rejection`: data, not an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DLQ_HEADER_ERROR",
    "DLQ_HEADER_FIELD",
    "DLQ_HEADER_REASON",
    "DLQ_HEADER_SOURCE",
    "DLQ_HEADER_STREAM",
    "ENVELOPE_FIELDS",
    "REASONS",
    "Rejection",
    "rejection_from_msgspec",
]

ENVELOPE_FIELDS: Final = ("event_id", "stream", "key", "event_time", "ingest_time", "payload")

# Reason codes carried by rejections and dead letters. Stable: dashboards count by them.
REASONS: Final = frozenset(
    {
        "malformed_json",  # not JSON at all, or truncated
        "not_an_object",  # JSON, but not an object
        "missing_field",  # a required field is absent
        "unknown_field",  # a field the schema does not declare
        "wrong_type",  # e.g. a string where a float belongs
        "out_of_range",  # outside the declared min/max
        "not_allowed",  # not one of the declared choices
        "invalid_timestamp",  # not RFC 3339, or without a time zone
        "key_mismatch",  # the given key differs from the payload's key field
        "stream_mismatch",  # the event names another stream
        "late",  # arrived after its window closed (set by the stream job)
        "delivery_failed",  # Kafka did not acknowledge it
        "invalid",  # anything else the validator refused
    }
)

DLQ_HEADER_REASON: Final = "pulsecast.reason"
DLQ_HEADER_FIELD: Final = "pulsecast.field"
DLQ_HEADER_ERROR: Final = "pulsecast.error"
DLQ_HEADER_STREAM: Final = "pulsecast.stream"
DLQ_HEADER_SOURCE: Final = "pulsecast.source"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one event was refused.

    Attributes:
        reason: A code from :data:`REASONS`.
        field: Dotted path of the offending field (``payload.cpu_util``), if any.
        message: One human sentence, e.g. ``payload.cpu_util: expected float <= 100.0``.
    """

    reason: str
    field: str | None
    message: str

    def as_dict(self) -> dict[str, str | None]:
        """The rejection as a plain mapping (for JSON answers)."""
        return {"reason": self.reason, "field": self.field, "message": self.message}


_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`")


def _classify(text: str) -> str:
    if text.startswith("Object missing required field"):
        return "missing_field"
    if text.startswith("Object contains unknown field"):
        return "unknown_field"
    if text.startswith("Invalid enum value"):
        return "not_allowed"
    if "datetime" in text or "RFC3339" in text:
        return "invalid_timestamp"
    if re.match(r"^Expected `\w+` [<>]=? ", text) or "of length" in text:
        return "out_of_range"
    if text.startswith("Expected `object`") and " - at " not in text:
        return "not_an_object"
    if text.startswith("Expected `"):
        return "wrong_type"
    return "invalid"


def rejection_from_msgspec(text: str) -> Rejection:
    """Translate a msgspec validation message into a :class:`Rejection`.

    >>> r = rejection_from_msgspec("Expected `float` <= 100.0 - at `$.payload.cpu_util`")
    >>> r.reason, r.field, r.message
    ('out_of_range', 'payload.cpu_util', 'payload.cpu_util: expected float <= 100.0')
    """
    match = _PATH.search(text)
    path = match.group("path") if match else ""
    body = text[: match.start()] if match else text
    reason = _classify(body)
    named = _MISSING.match(body) or _UNKNOWN.match(body)
    if named:
        path = f"{path}.{named.group('name')}" if path else named.group("name")
    if reason == "missing_field":
        detail = "required field is missing"
    elif reason == "unknown_field":
        detail = "field is not declared in the stream's schema"
    else:
        detail = body[0].lower() + body[1:] if body else "invalid"
        detail = detail.replace("`", "")
    field = path or None
    message = f"{field}: {detail}" if field else detail
    return Rejection(reason=reason, field=field, message=message)

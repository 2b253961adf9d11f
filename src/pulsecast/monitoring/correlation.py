"""The correlation id: one request's id, from the HTTP ingest to the micro-batch that read it.

The HTTP ingest takes the client's ``X-Request-ID`` (or makes one), answers
with it in the same header, and puts it on every Kafka record of the request
as the header :data:`CORRELATION_HEADER`. The streaming job reads the headers
with its Kafka source and lists the distinct ids of each micro-batch in the
batch's log record (at most :data:`MAX_LOGGED_IDS`, plus their count), so a
request can be followed from the client's log to the batch that processed it:
``pulsecast logs pulsecast | grep <id>``.

Pure Python; cross-cutting, importable by every stage.
"""

from __future__ import annotations

import re
import uuid

__all__ = [
    "CORRELATION_HEADER",
    "MAX_LOGGED_IDS",
    "REQUEST_ID_HEADER",
    "request_id",
]

#: The Kafka record header carrying the correlation id.
CORRELATION_HEADER = "pulsecast-correlation-id"
#: The HTTP header a client may send and the ingest always answers with.
REQUEST_ID_HEADER = "X-Request-ID"
#: Distinct ids a batch's log record lists at most (the count says how many there were).
MAX_LOGGED_IDS = 20

# Printable, no spaces or quotes, bounded: an id may be logged and put in headers as is.
_VALID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def request_id(given: str | None) -> str:
    """The request's correlation id: the client's when usable, else a new one.

    A client's id is kept when it is 1 to 128 characters of letters, digits
    and ``._:@/+=-`` (a UUID, a trace id); anything else (empty, too long,
    spaces, control characters) is replaced, so an id is always safe to log.

    >>> request_id("req-42")
    'req-42'
    >>> len(request_id("two words"))
    32
    """
    if given is not None and _VALID.fullmatch(given):
        return given
    return uuid.uuid4().hex

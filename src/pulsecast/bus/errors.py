"""Errors of the Kafka bus."""

from __future__ import annotations

from pulsecast.errors import PulsecastError

__all__ = ["BusError", "BusUnavailableError", "ProduceError", "TopicNotFoundError"]


class BusError(PulsecastError):
    """Kafka refused or failed an operation."""


class BusUnavailableError(BusError):
    """No broker answered at the configured bootstrap servers.

    Attributes:
        bootstrap: The servers tried.
    """

    def __init__(self, bootstrap: str, detail: str = "") -> None:
        self.bootstrap = bootstrap
        extra = f": {detail}" if detail else ""
        msg = f"Kafka is not reachable at {bootstrap}{extra} (is it up? try `pulsecast up`)"
        super().__init__(msg)


class TopicNotFoundError(BusError):
    """A topic pulsecast needs does not exist.

    Attributes:
        topic: The missing topic.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        super().__init__(f"topic {topic!r} does not exist (run `pulsecast up` to create topics)")


class ProduceError(BusError):
    """Some events were not acknowledged by Kafka.

    Attributes:
        undelivered: How many events Kafka did not acknowledge.
        first_error: The first delivery error reported.
    """

    def __init__(self, undelivered: int, first_error: str | None) -> None:
        self.undelivered = undelivered
        self.first_error = first_error
        why = f": {first_error}" if first_error else ""
        super().__init__(f"{undelivered} events were not acknowledged by Kafka{why}")

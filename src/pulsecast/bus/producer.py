"""The event producer: validate, serialise, produce; dead-letter what is invalid.

One idempotent confluent-kafka producer (acks=all, batching, compression) per
:class:`EventProducer`. Each event is validated against its stream's compiled
schema; a valid one goes to ``<stream>.events`` keyed by its entity, an invalid
one goes to ``<stream>.dlq`` as received, with the reason in headers. Bad input
never raises: it is counted and dead-lettered. Only infrastructure failures
(Kafka unreachable, events not acknowledged) raise.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from confluent_kafka import KafkaError, Message, Producer

from pulsecast.bus.clients import producer_config
from pulsecast.bus.errors import ProduceError
from pulsecast.bus.topics import topic_name
from pulsecast.config import Settings
from pulsecast.events.envelope import (
    DLQ_HEADER_ERROR,
    DLQ_HEADER_FIELD,
    DLQ_HEADER_REASON,
    DLQ_HEADER_SOURCE,
    DLQ_HEADER_STREAM,
    Rejection,
)
from pulsecast.events.schema import SchemaRegistry, StreamSchema
from pulsecast.security.kafka_acl import Principal

__all__ = ["DeliveryCallback", "EventProducer", "SendReport"]

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]

_POLL_EVERY = 1000  # serve delivery callbacks every this many produce calls
_CHUNK = 5000  # events validated and serialised per msgspec call


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    if isinstance(items, list):
        for start in range(0, len(items), size):
            yield items[start : start + size]
        return
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_encode_any = msgspec.json.Encoder(decimal_format="number").encode


@dataclass
class SendReport:
    """What happened to a batch handed to :meth:`EventProducer.send`.

    Attributes:
        accepted: Valid events handed to Kafka.
        rejected: Invalid events sent to the dead-letter topic.
        reasons: Rejections counted by reason code.
        rejections: ``(index in the batch, rejection)`` for every invalid event.
    """

    accepted: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)


def _raw_of(obj: Any) -> bytes:
    """Best-effort bytes of an invalid input, for the dead-letter topic."""
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj)
    try:
        return _encode_any(obj)
    except (TypeError, msgspec.EncodeError):
        return repr(obj).encode()


class EventProducer:
    """Validates events and produces them to Kafka.

    Args:
        settings: The platform's settings.
        source: Name of what produces (``simulator``, ``file``, ``http``...),
            written into dead-letter headers.
        registry: Compiled schemas; default: compiled from ``settings.streams``.
        report_all: Deliver a report for every message (needed by callers that
            pass ``on_delivery``); by default only failures are reported, which
            keeps Python out of the per-message acknowledgement path.
        principal: Who it authenticates as in secure mode: ``producer`` writes
            events (and their dead letters), ``stream`` the derived topics.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        source: str = "api",
        registry: SchemaRegistry | None = None,
        report_all: bool = False,
        principal: Principal = "producer",
    ) -> None:
        self.settings = settings
        self.source = source
        self.registry = registry or SchemaRegistry(settings.streams)
        self.delivery_errors = 0
        self.first_error: str | None = None
        self._producer = Producer(
            {
                **producer_config(settings, principal=principal),
                "on_delivery": self._count,
                "delivery.report.only.error": not report_all,
            }
        )
        self._calls = 0
        self._closed = False

    def _count(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.delivery_errors += 1
            if self.first_error is None:
                self.first_error = err.str()
                log.error("delivery failed: %s", self.first_error)

    def produce_raw(
        self,
        topic: str,
        value: bytes,
        key: str | None,
        headers: list[tuple[str, bytes]] | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Hand one already-serialised message to librdkafka, waiting while its queue is full."""
        kwargs: dict[str, Any] = {}
        if headers:
            kwargs["headers"] = headers
        if on_delivery is not None:
            kwargs["on_delivery"] = on_delivery
        while True:
            try:
                self._producer.produce(topic, value, key, **kwargs)
                break
            except BufferError:
                # The local queue is full: let librdkafka drain it (backpressure).
                self._producer.poll(0.05)
        self._calls += 1
        if self._calls % _POLL_EVERY == 0:
            self._producer.poll(0)

    def produce_event(
        self, schema: StreamSchema, event: Any, on_delivery: DeliveryCallback | None = None
    ) -> None:
        """Produce one validated event to ``<stream>.events``, keyed by its entity."""
        self.produce_raw(
            topic_name(schema.name, "events"),
            schema.encode(event),
            event.key,
            on_delivery=on_delivery,
        )

    def dead_letter(
        self,
        stream: str,
        raw: bytes,
        rejection: Rejection,
        *,
        key: str | None = None,
        on_delivery: DeliveryCallback | None = None,
        extra_headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Send an invalid input, as received, to ``<stream>.dlq`` with its reason.

        ``extra_headers`` are added after the reason's (e.g. the request's correlation id).
        """
        headers = [
            (DLQ_HEADER_REASON, rejection.reason.encode()),
            (DLQ_HEADER_ERROR, rejection.message.encode()),
            (DLQ_HEADER_STREAM, stream.encode()),
            (DLQ_HEADER_SOURCE, self.source.encode()),
            *(extra_headers or []),
        ]
        if rejection.field:
            headers.append((DLQ_HEADER_FIELD, rejection.field.encode()))
        self.produce_raw(topic_name(stream, "dlq"), raw, key, headers, on_delivery)

    def send(
        self, stream: str, events: Iterable[Mapping[str, Any]], *, strict: bool = True
    ) -> SendReport:
        """Validate and produce events given as Python mappings.

        Events are validated and serialised in bulk (chunks of a few thousand)
        by msgspec; only the hand-over to librdkafka is one call per event.

        Args:
            stream: Target stream.
            events: Mappings with ``event_time``, ``payload`` and optionally
                ``event_id`` and ``key``.
            strict: When False, numbers and times given as strings are converted.

        Returns:
            Counts of accepted and rejected events (not yet acknowledged: see
            :meth:`flush`).

        Raises:
            UnknownStreamError: ``stream`` is not configured.
        """
        schema = self.registry[stream]
        report = SendReport()
        offset = 0
        for chunk in _chunks(events, _CHUNK):
            results = schema.validate_many(chunk, strict=strict)
            self._produce_results(schema, chunk, results, offset, report)
            offset += len(chunk)
        return report

    def send_json(self, stream: str, raws: Iterable[bytes]) -> SendReport:
        """Validate and produce events given as JSON bytes (one event each)."""
        schema = self.registry[stream]
        report = SendReport()
        offset = 0
        for chunk in _chunks(raws, _CHUNK):
            results = schema.validate_json_many(chunk)
            self._produce_results(schema, chunk, results, offset, report)
            offset += len(chunk)
        return report

    def _produce_results(
        self,
        schema: StreamSchema,
        inputs: list[Any],
        results: list[Any],
        offset: int,
        report: SendReport,
    ) -> None:
        valid = [r for r in results if not isinstance(r, Rejection)]
        if len(valid) != len(results):
            for index, (obj, result) in enumerate(zip(inputs, results, strict=True)):
                if isinstance(result, Rejection):
                    self._reject(schema.name, _raw_of(obj), result, offset + index, report)
        topic = topic_name(schema.name, "events")
        produce = self._producer.produce
        for event, value in zip(valid, schema.encode_many(valid), strict=True):
            try:
                produce(topic, value, event.key)
            except BufferError:
                self.produce_raw(topic, value, event.key)
        self._producer.poll(0)
        report.accepted += len(valid)

    def _reject(
        self, stream: str, raw: bytes, rejection: Rejection, index: int, report: SendReport
    ) -> None:
        self.dead_letter(stream, raw, rejection)
        report.rejected += 1
        report.reasons[rejection.reason] += 1
        report.rejections.append((index, rejection))
        log.debug("rejected event %s of stream %s: %s", index, stream, rejection.message)

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery callbacks."""
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Block until every event handed over is acknowledged.

        Raises:
            ProduceError: Some events were not acknowledged in time or failed.
        """
        deadline = time.monotonic() + timeout_s
        remaining = self._producer.flush(timeout_s)
        while remaining and time.monotonic() < deadline:
            remaining = self._producer.flush(max(0.0, deadline - time.monotonic()))
        if remaining or self.delivery_errors:
            raise ProduceError(remaining + self.delivery_errors, self.first_error)

    def close(self, timeout_s: float = 60.0) -> None:
        """Flush, then shut the client down (its threads stop reconnecting); idempotent.

        Raises:
            ProduceError: Like :meth:`flush`; the client is shut down all the same.
        """
        if self._closed:
            return
        try:
            self.flush(timeout_s)
        finally:
            self._shut()

    def _shut(self) -> None:
        self._closed = True
        # Drops only what flush could not deliver (already reported), so close cannot block.
        self._producer.purge()
        self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        elif not self._closed:
            self._producer.flush(10)
            self._shut()

"""Reading topics back: for checks (`pulsecast consume`), the demo and tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from pulsecast.bus.clients import consumer_config
from pulsecast.bus.errors import BusError
from pulsecast.config import Settings
from pulsecast.security.kafka_acl import reader_of

__all__ = ["EventConsumer", "Record", "end_offsets", "read_since"]


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka message."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: dict[str, str]
    timestamp_ms: int


def _headers(msg: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    for header in msg.headers() or []:
        name, value = header[0], header[1]
        raw = value if isinstance(value, bytes) else str(value or "").encode()
        out[str(name)] = raw.decode(errors="replace")
    return out


def _record(msg: Message) -> Record:
    key = msg.key()
    return Record(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=key.decode(errors="replace") if key is not None else None,
        value=msg.value() or b"",
        headers=_headers(msg),
        timestamp_ms=msg.timestamp()[1],
    )


class EventConsumer:
    """A consumer of one or more topics.

    Args:
        settings: The platform's settings.
        topics: Topics to read.
        group_id: Consumer group; default: a fresh group that commits nothing.
        from_beginning: Start at the earliest offset when the group has none.
    """

    def __init__(
        self,
        settings: Settings,
        topics: list[str],
        *,
        group_id: str | None = None,
        from_beginning: bool = False,
    ) -> None:
        commit = group_id is not None
        group = group_id or f"pulsecast-reader-{uuid.uuid4().hex[:12]}"
        # In secure mode the topics' reader (stream for events, dashboard for derived topics).
        principal = reader_of(topics[0]) if topics else "stream"
        self._consumer = Consumer(
            consumer_config(
                settings, group, from_beginning=from_beginning, commit=commit, principal=principal
            )
        )
        if topics:
            self._consumer.subscribe(topics)

    def read(
        self, *, max_count: int | None = None, timeout_s: float = 30.0, idle_s: float | None = None
    ) -> Iterator[Record]:
        """Yield records until ``max_count``, ``timeout_s`` in all, or ``idle_s`` without any.

        Raises:
            BusError: Kafka reported an error for a subscribed topic.
        """
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        count = 0
        while max_count is None or count < max_count:
            now = time.monotonic()
            if now >= deadline or (idle_s is not None and now - last >= idle_s):
                return
            batch = self._consumer.consume(
                num_messages=min(1000, (max_count - count) if max_count else 1000),
                timeout=min(0.5, max(0.0, deadline - now)),
            )
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.retriable() or err.name() == "UNKNOWN_TOPIC_OR_PART":
                        continue
                    msg_text = f"consuming {msg.topic()}: {err.str()}"
                    raise BusError(msg_text)
                last = time.monotonic()
                count += 1
                yield _record(msg)

    def high_watermarks(self, topic: str, partitions: int) -> dict[int, int]:
        """The end offset of each partition of ``topic``."""
        out = {}
        for p in range(partitions):
            try:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            except KafkaException as exc:
                msg = f"cannot read offsets of {topic}[{p}]: {exc.args[0].str()}"
                raise BusError(msg) from exc
            out[p] = high
        return out

    def close(self) -> None:
        """Leave the group."""
        self._consumer.close()

    def __enter__(self) -> EventConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def end_offsets(settings: Settings, topic: str, partitions: int) -> dict[int, int]:
    """The current end offset of each partition of ``topic``."""
    with EventConsumer(settings, []) as consumer:
        return consumer.high_watermarks(topic, partitions)


def read_since(
    settings: Settings,
    topic: str,
    since: dict[int, int],
    *,
    timeout_s: float = 60.0,
) -> list[Record]:
    """Every record of ``topic`` from the offsets ``since`` up to the current end.

    Args:
        settings: The platform's settings.
        topic: The topic.
        since: Start offset per partition (e.g. :meth:`EventConsumer.high_watermarks`
            taken before producing).
        timeout_s: Give up after this long.

    Raises:
        BusError: The end was not reached in time.
    """
    group = f"pulsecast-reader-{uuid.uuid4().hex[:12]}"
    reader = Consumer(consumer_config(settings, group, commit=False, principal=reader_of(topic)))
    try:
        ends = {}
        for p in since:
            _, ends[p] = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        todo = {p for p in since if ends[p] > since[p]}
        reader.assign([TopicPartition(topic, p, since[p]) for p in todo])
        out: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                text = f"reading {topic} back timed out with partitions {sorted(todo)} unfinished"
                raise BusError(text)
            for msg in reader.consume(num_messages=1000, timeout=0.5):
                if msg.error() is not None:
                    continue
                record = _record(msg)
                out.append(record)
                if record.offset + 1 >= ends[record.partition]:
                    todo.discard(record.partition)
        return out
    finally:
        reader.close()

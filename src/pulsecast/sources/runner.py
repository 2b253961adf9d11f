"""Drive a source into Kafka at a chosen pace, and report what happened.

Pacing is by events per second (``rate``), by a multiple of event time
(``speed``: 1 = real time, 60 = a minute per second), or as fast as possible.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pulsecast.bus.producer import EventProducer, SendReport

__all__ = ["Pacer", "ProduceSummary", "produce_batches", "time_paced"]

log = logging.getLogger(__name__)

ProgressFn = Callable[["ProduceSummary"], None]


@dataclass
class ProduceSummary:
    """Totals of a produce run."""

    stream: str
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rate_eps(self) -> float:
        """Events handed over per second of wall time."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON output."""
        return {
            "stream": self.stream,
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "reasons": dict(self.reasons),
            "seconds": round(self.seconds, 3),
            "rate_eps": round(self.rate_eps, 1),
        }


class Pacer:
    """Sleeps so that ``n`` events take ``n / rate`` seconds (no sleeping when rate is 0)."""

    def __init__(self, rate_eps: float) -> None:
        self.rate_eps = rate_eps
        self.t0 = time.monotonic()

    def wait(self, sent: int) -> None:
        """Block until ``sent`` events are due."""
        if self.rate_eps <= 0:
            return
        delay = self.t0 + sent / self.rate_eps - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def time_paced(
    events: Iterable[tuple[datetime | None, dict[str, Any]]],
    *,
    speed: float | None,
    batch: int = 500,
) -> Iterator[list[dict[str, Any]]]:
    """Group events into batches, released when their event time is due.

    Args:
        events: ``(event time, event)`` in event-time order.
        speed: Event-time seconds per wall second (1 = real time); None = no pacing.
        batch: Largest batch.
    """
    t0: float | None = None
    first: datetime | None = None
    pending: list[dict[str, Any]] = []
    for when, event in events:
        if speed is not None and when is not None:
            if first is None:
                first, t0 = when, time.monotonic()
            assert t0 is not None  # noqa: S101 (set together with first)
            due = t0 + (when - first).total_seconds() / speed
            if due > time.monotonic() and pending:
                yield pending
                pending = []
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        pending.append(event)
        if len(pending) >= batch:
            yield pending
            pending = []
    if pending:
        yield pending


def produce_batches(
    producer: EventProducer,
    stream: str,
    batches: Iterable[list[dict[str, Any]]],
    *,
    count: int | None = None,
    seconds: float | None = None,
    rate_eps: float = 0.0,
    strict: bool = True,
    progress: ProgressFn | None = None,
    progress_every_s: float = 5.0,
) -> ProduceSummary:
    """Send batches of events until they run out, ``count`` are sent or ``seconds`` pass.

    Args:
        producer: The validating producer.
        stream: Target stream.
        batches: Lists of event mappings.
        count: Stop after this many events.
        seconds: Stop after this much wall time.
        rate_eps: Events per second (0 = as fast as possible).
        strict: Strict type checks (False for CSV input).
        progress: Called with the running totals every ``progress_every_s``.
        progress_every_s: Seconds between progress calls.

    Returns:
        The totals, after every event was acknowledged by Kafka.
    """
    summary = ProduceSummary(stream=stream)
    pacer = Pacer(rate_eps)
    start = time.monotonic()
    next_progress = start + progress_every_s
    for events in batches:
        if count is not None and summary.sent + len(events) > count:
            events = events[: count - summary.sent]
        report: SendReport = producer.send(stream, events, strict=strict)
        summary.sent += len(events)
        summary.accepted += report.accepted
        summary.rejected += report.rejected
        summary.reasons.update(report.reasons)
        now = time.monotonic()
        if progress is not None and now >= next_progress:
            summary.seconds = now - start
            progress(summary)
            next_progress = now + progress_every_s
        if count is not None and summary.sent >= count:
            break
        if seconds is not None and now - start >= seconds:
            break
        pacer.wait(summary.sent)
    producer.flush()
    summary.seconds = time.monotonic() - start
    return summary

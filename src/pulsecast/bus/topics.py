"""Topic names and specifications, derived from Settings.

Every stream ``S`` has four topics: ``S.events`` (what sources produce),
``S.dlq`` (dead letters with the reason in headers), ``S.predictions`` and
``S.alerts`` (written by the stream job's models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pulsecast.config import Settings

__all__ = ["TOPIC_KINDS", "TopicKind", "TopicSpec", "topic_name", "topic_specs"]

TopicKind = Literal["events", "dlq", "predictions", "alerts"]
TOPIC_KINDS: tuple[TopicKind, ...] = ("events", "dlq", "predictions", "alerts")


def topic_name(stream: str, kind: TopicKind = "events") -> str:
    """The topic of ``stream`` for ``kind`` (``telemetry.events``)."""
    return f"{stream}.{kind}"


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create: name, partitions and retention."""

    name: str
    partitions: int
    retention_ms: int

    def config(self) -> dict[str, str]:
        """Topic-level configuration for Kafka's admin API."""
        return {"retention.ms": str(self.retention_ms)}


def topic_specs(settings: Settings, streams: list[str] | None = None) -> list[TopicSpec]:
    """The topics of the given streams (default: every configured stream)."""
    specs = []
    for name in streams or list(settings.streams):
        stream = settings.streams[name]
        hours = stream.retention_hours or settings.kafka.retention_hours
        retention_ms = hours * 3_600_000
        for kind in TOPIC_KINDS:
            partitions = (
                stream.partitions or settings.kafka.partitions
                if kind == "events"
                else settings.kafka.derived_partitions
            )
            specs.append(TopicSpec(topic_name(name, kind), partitions, retention_ms))
    return specs

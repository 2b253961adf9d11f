"""Adapters from the ``kafka`` settings section to confluent-kafka's config dicts.

The one place where Settings become librdkafka's dotted keys.
"""

from __future__ import annotations

from typing import Any

from pulsecast.config import KafkaSettings

__all__ = ["admin_config", "consumer_config", "producer_config"]


def _common(kafka: KafkaSettings) -> dict[str, Any]:
    return {"bootstrap.servers": kafka.bootstrap, "client.id": "pulsecast"}


def producer_config(kafka: KafkaSettings) -> dict[str, Any]:
    """An idempotent, batching, compressing producer.

    Keys are hashed with murmur2 like Java clients and Spark do, so every client
    puts one key in the same partition.
    """
    return {
        **_common(kafka),
        "enable.idempotence": True,
        "acks": kafka.acks,
        "linger.ms": kafka.linger_ms,
        "batch.size": kafka.batch_size,
        "compression.type": kafka.compression,
        "partitioner": "murmur2_random",
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
    }


def consumer_config(
    kafka: KafkaSettings, group_id: str, *, from_beginning: bool = False, commit: bool = True
) -> dict[str, Any]:
    """A consumer in ``group_id``, starting at the earliest or latest offset."""
    return {
        **_common(kafka),
        "group.id": group_id,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": commit,
        "enable.partition.eof": False,
    }


def admin_config(kafka: KafkaSettings) -> dict[str, Any]:
    """An admin client."""
    return _common(kafka)

"""Adapters from Settings to confluent-kafka's and Spark's Kafka options.

The one place where Settings become librdkafka's dotted keys (and the
``kafka.``-prefixed options of Spark's Kafka source and sink). With
``security.enabled`` every client connects over SASL_SSL as one principal
(SCRAM-SHA-512, the local CA as trust anchor; see
:mod:`pulsecast.security.kafka_acl`); otherwise over plaintext.

Each function takes the whole :class:`~pulsecast.config.Settings`, so no
client can miss the security switch.
"""

from __future__ import annotations

from typing import Any

from pulsecast.config import Settings
from pulsecast.security.kafka_acl import (
    SCRAM_MECHANISM,
    Principal,
    read_password,
    truststore_file,
)

__all__ = [
    "admin_config",
    "consumer_config",
    "producer_config",
    "security_config",
    "spark_kafka_options",
]


def security_config(settings: Settings, principal: Principal) -> dict[str, Any]:
    """The librdkafka keys that authenticate ``principal`` and encrypt (none in plain mode).

    Raises:
        SecurityError: Secure mode, and ``principal`` has no password yet.
    """
    if not settings.security.enabled:
        return {}
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": SCRAM_MECHANISM,
        "sasl.username": principal,
        "sasl.password": read_password(settings, principal),
        "ssl.ca.location": str(truststore_file(settings)),
    }


def _common(settings: Settings, principal: Principal) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka.bootstrap,
        "client.id": "pulsecast",
        **security_config(settings, principal),
    }


def producer_config(settings: Settings, *, principal: Principal = "producer") -> dict[str, Any]:
    """An idempotent, batching, compressing producer.

    Keys are hashed with murmur2 like Java clients and Spark do, so every client
    puts one key in the same partition.

    Args:
        settings: The platform's settings.
        principal: Who the producer authenticates as in secure mode.
    """
    kafka = settings.kafka
    return {
        **_common(settings, principal),
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
    settings: Settings,
    group_id: str,
    *,
    from_beginning: bool = False,
    commit: bool = True,
    principal: Principal = "stream",
) -> dict[str, Any]:
    """A consumer in ``group_id``, starting at the earliest or latest offset.

    Args:
        settings: The platform's settings.
        group_id: The consumer group; in secure mode the principal needs a
            group ACL for it (see :data:`~pulsecast.security.kafka_acl.GROUP_PREFIXES`).
        from_beginning: Start at the earliest offset when the group has none.
        commit: Commit offsets automatically.
        principal: Who the consumer authenticates as in secure mode; ``stream``
            (the pipeline's reader) by default, ``dashboard`` for derived topics.
    """
    return {
        **_common(settings, principal),
        "group.id": group_id,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.auto.commit": commit,
        "enable.partition.eof": False,
    }


def admin_config(settings: Settings, *, principal: Principal = "admin") -> dict[str, Any]:
    """An admin client (in secure mode ``admin``, the one principal allowed to manage topics)."""
    return _common(settings, principal)


def _jaas_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def spark_kafka_options(settings: Settings, *, principal: Principal = "stream") -> dict[str, str]:
    """Options of Spark's Kafka source and sink: bootstrap servers and, when secure, SASL_SSL.

    The JAAS line holds the password: Spark redacts ``kafka.sasl.jaas.config``
    in its plans and UI.

    Raises:
        SecurityError: Secure mode, and ``principal`` has no password yet.
    """
    options = {"kafka.bootstrap.servers": settings.kafka.bootstrap}
    if not settings.security.enabled:
        return options
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f"username={_jaas_quote(principal)} "
        f"password={_jaas_quote(read_password(settings, principal))};"
    )
    return {
        **options,
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": SCRAM_MECHANISM,
        "kafka.sasl.jaas.config": jaas,
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": str(truststore_file(settings)),
    }

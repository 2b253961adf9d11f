"""Adapters from Settings to confluent-kafka's and Spark's Kafka options.

The one place where Settings become librdkafka's dotted keys (and the
``kafka.``-prefixed options of Spark's Kafka source and sink). With
``security.enabled`` every client connects over SASL_SSL as one principal
(SCRAM-SHA-512, the local CA as trust anchor; see
:mod:`pulsecast.security.kafka_acl`); otherwise over plaintext. With
``security.kafka_client_certs`` as well, each client also presents its
principal's certificate from ``pulsecast security init``
(``<security dir>/clients/<principal>/``; the broker's own ``kafka`` login uses
``servers/kafka``): PEM files for librdkafka, the PKCS#12 keystore for Spark's
Java clients.

Each function takes the whole :class:`~pulsecast.config.Settings`, so no
client can miss the security switch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pulsecast.config import Settings
from pulsecast.security import security_dir
from pulsecast.security.certs import LeafKind, leaf_dir, read_keystore_password
from pulsecast.security.errors import CertificateError
from pulsecast.security.kafka_acl import (
    BROKER_PRINCIPAL,
    SCRAM_MECHANISM,
    Principal,
    read_password,
    truststore_file,
)

__all__ = [
    "admin_config",
    "client_cert_dir",
    "consumer_config",
    "producer_config",
    "security_config",
    "spark_kafka_options",
    "spark_kafka_source_options",
]


def _client_certs(settings: Settings) -> bool:
    return settings.security.enabled and settings.security.kafka_client_certs


def client_cert_dir(settings: Settings, principal: Principal) -> Path:
    """The folder of the certificate ``principal`` presents to the broker.

    ``clients/<principal>`` for the four client principals, ``servers/kafka``
    for the broker's own login.

    Raises:
        CertificateError: The principal has no certificate and key yet.
    """
    kind: LeafKind = "server" if principal == BROKER_PRINCIPAL else "client"
    folder = leaf_dir(security_dir(settings), kind, principal)
    if not ((folder / "cert.pem").is_file() and (folder / "key.pem").is_file()):
        msg = f"no client certificate for {principal!r} in {folder}; run `pulsecast security init`"
        raise CertificateError(msg)
    return folder


def security_config(settings: Settings, principal: Principal) -> dict[str, Any]:
    """The librdkafka keys that authenticate ``principal`` and encrypt (none in plain mode).

    With ``security.kafka_client_certs`` they include the principal's
    certificate and key (PEM; the key is readable by its owner only).

    Raises:
        SecurityError: Secure mode, and ``principal`` has no password (or, with
            client certificates, no certificate) yet.
    """
    if not settings.security.enabled:
        return {}
    config = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": SCRAM_MECHANISM,
        "sasl.username": principal,
        "sasl.password": read_password(settings, principal),
        "ssl.ca.location": str(truststore_file(settings)),
    }
    if _client_certs(settings):
        folder = client_cert_dir(settings, principal)
        config["ssl.certificate.location"] = str(folder / "cert.pem")
        config["ssl.key.location"] = str(folder / "key.pem")
    return config


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

    With ``security.kafka_client_certs`` they add the principal's PKCS#12
    keystore (key, certificate and CA) and its password.

    The JAAS line and the keystore password are secrets: Spark redacts options
    whose name or value matches ``spark.redaction.regex`` (``password``) in its
    plans and UI, and Kafka's Java clients log them as ``[hidden]``.

    Raises:
        SecurityError: Secure mode, and ``principal`` has no password (or, with
            client certificates, no keystore) yet.
    """
    options = {"kafka.bootstrap.servers": settings.kafka.bootstrap}
    if not settings.security.enabled:
        return options
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f"username={_jaas_quote(principal)} "
        f"password={_jaas_quote(read_password(settings, principal))};"
    )
    options |= {
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": SCRAM_MECHANISM,
        "kafka.sasl.jaas.config": jaas,
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": str(truststore_file(settings)),
    }
    if _client_certs(settings):
        folder = client_cert_dir(settings, principal)
        options |= {
            "kafka.ssl.keystore.type": "PKCS12",
            "kafka.ssl.keystore.location": str(folder / "keystore.p12"),
            "kafka.ssl.keystore.password": read_keystore_password(folder),
        }
    return options


def spark_kafka_source_options(settings: Settings) -> dict[str, str]:
    """:func:`spark_kafka_options` for Spark's Kafka source, with the job's fetch wait.

    A read that ends at the newest records, when no newer ones arrive (a
    catch-up's last batch), leaves each of its tasks waiting for a fetch the
    broker holds ``fetch.max.wait.ms`` (500 ms by Kafka's default) for records
    that are not there; Spark runs the tasks in waves (3 partitions on 2
    cores: 2), so such a batch waited about a second. (The broker answers a
    held fetch as soon as records arrive, so a stream that keeps coming
    hardly waits.) ``stream.fetch_max_wait_ms`` bounds that wait
    (``benchmarks/kafka_fetch_wait.py`` measures it).
    """
    return spark_kafka_options(settings) | {
        "kafka.fetch.max.wait.ms": str(settings.stream.fetch_max_wait_ms)
    }

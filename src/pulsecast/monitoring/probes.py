"""Measurements taken from outside the components: health, disk and Kafka consumer lag.

:class:`Probes` is a Prometheus collector the monitor
(:mod:`pulsecast.monitoring.monitor`) registers; each scrape measures afresh:

- ``pulsecast_service_up``: whether Kafka and PostgreSQL accept TCP
  connections on their configured addresses (servers that export no metrics
  of their own; the others are scraped, and Prometheus's ``up`` says);
- ``pulsecast_disk_free_bytes`` / ``pulsecast_disk_size_bytes`` for the file
  system of the data directory;
- ``pulsecast_kafka_log_end_offset_total`` for each partition of the streams'
  ``events`` and ``dlq`` topics (what was written: the rate of events and of
  dead letters);
- ``pulsecast_kafka_consumer_lag_records``: per partition, the broker's end
  offset minus the offset of the streaming query's latest committed batch,
  read from the query's checkpoint. Measured from outside, it keeps growing
  while the job is stopped, which is when it matters most. Spark's Kafka
  source commits no consumer group offsets, so the checkpoint is the truth;
  checkpoints on ``file://`` are read (others are not, without a JVM).

Uses confluent-kafka's consumer for the broker's offsets (no group joins).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from pulsecast.bus.clients import consumer_config
from pulsecast.bus.topics import topic_name
from pulsecast.config import Settings
from pulsecast.monitoring import metrics as m

__all__ = ["Probes", "committed_offsets", "service_addresses"]

log = logging.getLogger(__name__)

_KAFKA_TIMEOUT_S = 2.0


def service_addresses(settings: Settings) -> dict[str, tuple[str, int]]:
    """The servers to probe (those without ``/metrics``) and their TCP addresses."""
    targets: dict[str, tuple[str, int]] = {}
    host, _, port = settings.kafka.bootstrap.split(",")[0].rpartition(":")
    targets["kafka"] = (host, int(port))
    if settings.postgres.is_local:
        targets["postgres"] = (settings.postgres.host, settings.postgres.port)
    return targets


def _answers(address: tuple[str, int]) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(address, timeout=1.0):
        return True
    return False


def committed_offsets(checkpoint: Path, topic: str) -> dict[int, int] | None:
    """Offsets of ``topic`` up to which a streaming query committed its batches.

    A query's checkpoint holds ``offsets/<batch>`` (the end offsets each batch
    reads up to, written when it is planned) and ``commits/<batch>`` (written
    once it is done). The latest committed batch's offsets are what the query
    has consumed for good.

    Args:
        checkpoint: The query's checkpoint folder.
        topic: The Kafka topic it reads.

    Returns:
        Offset per partition, or None when no batch was committed yet.
    """
    commits = checkpoint / "commits"
    try:
        done = [int(p.name) for p in commits.iterdir() if p.name.isdigit()]
    except OSError:
        return None
    if not done:
        return None
    try:
        lines = (checkpoint / "offsets" / str(max(done))).read_text().splitlines()
    except OSError:
        return None
    # Line 1 is the log's version, line 2 the batch's metadata, then one line per source.
    for line in lines[2:]:
        with contextlib.suppress(ValueError, AttributeError):
            offsets = json.loads(line)
            if isinstance(offsets, dict) and topic in offsets:
                return {int(p): int(o) for p, o in offsets[topic].items()}
    return None


class Probes(Collector):
    """The collector of the monitor's measurements (see the module's description).

    Args:
        settings: The platform's settings: addresses, data dir, streams, checkpoints.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.targets = service_addresses(settings)
        self._consumer: Consumer | None = None

    def collect(self) -> Iterator[Metric]:
        """Measure everything; a part that fails is left out (and logged), never raised."""
        up = {name: _answers(address) for name, address in self.targets.items()}
        yield m.SERVICE_UP.family(((name,), float(ok)) for name, ok in up.items())
        yield from self._disk()
        if up["kafka"]:  # else asking would only wait for the timeout
            yield from self._kafka()

    def _disk(self) -> Iterator[Metric]:
        folder = self.settings.data_dir
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        usage = shutil.disk_usage(folder)
        yield m.DISK_FREE_BYTES.family([((), float(usage.free))])
        yield m.DISK_SIZE_BYTES.family([((), float(usage.total))])

    def _kafka(self) -> Iterator[Metric]:
        try:
            ends = self._end_offsets()
        except KafkaException as exc:
            log.info("no Kafka offsets this scrape: %s", exc)
            return
        yield m.KAFKA_LOG_END_OFFSET.family(
            ((topic, str(partition)), float(offset))
            for (topic, partition), offset in sorted(ends.items())
        )
        yield m.KAFKA_CONSUMER_LAG.family(self._lag(ends))

    def _end_offsets(self) -> dict[tuple[str, int], int]:
        """The broker's end offset of every partition of the streams' events and dlq topics."""
        if self._consumer is None:
            # Offsets only (no group joined): the pipeline's reader may describe its topics.
            config = consumer_config(self.settings, "pulsecast-monitor", commit=False)
            self._consumer = Consumer({**config, "log_level": 0})
        topics = [topic_name(s, kind) for s in self.settings.streams for kind in ("events", "dlq")]
        metadata = self._consumer.list_topics(timeout=_KAFKA_TIMEOUT_S)
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                continue
            for partition in found.partitions:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=_KAFKA_TIMEOUT_S, cached=False
                )
                ends[(topic, partition)] = high
        return ends

    def _lag(self, ends: dict[tuple[str, int], int]) -> list[tuple[tuple[str, ...], float]]:
        """Lag per partition of each stream's query, from its checkpoint (file:// only)."""
        root = urlparse(self.settings.checkpoint_uri)
        if root.scheme != "file":
            return []
        samples: list[tuple[tuple[str, ...], float]] = []
        for stream in self.settings.streams:
            topic = topic_name(stream, "events")
            # The streaming job keeps each stream's checkpoint in <checkpoint_uri>/<stream>.
            committed = committed_offsets(Path(unquote(root.path)) / stream, topic)
            if committed is None:
                continue
            for (name, partition), end in sorted(ends.items()):
                if name == topic:
                    lag = max(end - committed.get(partition, 0), 0)
                    samples.append(((f"pulsecast-{stream}", topic, str(partition)), float(lag)))
        return samples

    def close(self) -> None:
        """Close the Kafka consumer."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

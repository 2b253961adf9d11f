"""History for training: days of simulated telemetry through the streaming job's transforms.

Models need history (days at one-minute resolution) that a live run takes days
to gather. :func:`backfill_simulated` runs the fleet simulator
(:class:`~pulsecast.sources.simulator.FleetSimulator`, deterministic, with
labelled anomalies) over ``days`` of event time ending now, encodes its events
exactly as the producer puts them on ``<stream>.events``, and sends them, a day
of event time at a time, through the streaming job's own transforms as if they
had been read from Kafka: :func:`~pulsecast.stream.transforms.parse_events`
validates them, :func:`~pulsecast.stream.transforms.silver_rows` types and
deduplicates them, :func:`~pulsecast.stream.transforms.pane_partials` and
:func:`~pulsecast.stream.transforms.windows_from_panes` aggregate them, into
the tables the job creates (:meth:`~pulsecast.stream.job.BatchWriter.ensure_tables`).
So bronze, silver, panes and gold hold what the live job would have written
had it run through those days, and no second implementation of the aggregates
exists; but each table is written in bulk by Spark (the job's per-batch
merges into gold take tens of seconds per simulated day). Nothing goes through
Kafka (the simulator makes no invalid events here) and the warehouse is not
written.

The rows carry batch id -1 and the commits no job tags, so the live job,
whose first batch is 0, continues the same tables: its watermark starts at
the history's end and its duplicate check sees the history's last events. A
stream that already holds events in silver is left alone (the result says
so). Ingest time and Kafka timestamp equal event time, as for events that
arrived live. Windows ending by the history's end are final. The
ground-truth labels go to a JSON Lines file like the producer's.

Needs pyspark (and the Delta jars).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyspark.sql import functions as F

from pulsecast.bus.topics import topic_name
from pulsecast.config import Settings, SimulatorSettings
from pulsecast.events.envelope import Rejection
from pulsecast.events.schema import SchemaRegistry
from pulsecast.lake.tables import LakeTables
from pulsecast.sources.simulator import METRICS, FleetSimulator, open_labels
from pulsecast.stream.errors import StreamJobError
from pulsecast.stream.job import BatchWriter
from pulsecast.stream.transforms import (
    bronze_rows,
    pane_partials,
    pane_seconds,
    parse_events,
    silver_rows,
    windows_from_panes,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["BackfillResult", "backfill_simulated"]

log = logging.getLogger(__name__)

# Below the live job's first micro-batch (0): its watermark and duplicate check read it.
_BATCH_ID = -1
_KAFKA_SCHEMA = pa.schema(
    [
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("topic", pa.string()),
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("timestampType", pa.int32()),
    ]
)


@dataclass(frozen=True)
class BackfillResult:
    """What a backfill wrote (or why it wrote nothing).

    Attributes:
        stream: The stream.
        events: Events written to silver (0 when skipped).
        entities: Machines simulated.
        start: Event time of the first reading.
        end: Event time after the last reading.
        batches: Chunks of event time sent through the transforms.
        seconds: Wall time.
        labels: The ground-truth labels file (None when skipped).
        skipped: Why nothing was written, if so (the stream had history).
    """

    stream: str
    events: int
    entities: int
    start: datetime
    end: datetime
    batches: int
    seconds: float
    labels: Path | None
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON output."""
        return {
            "stream": self.stream,
            "events": self.events,
            "entities": self.entities,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "batches": self.batches,
            "seconds": round(self.seconds, 1),
            "labels": str(self.labels) if self.labels else None,
            "skipped": self.skipped,
        }


def _kafka_rows(values: list[bytes], keys: list[str], times: list[datetime], topic: str) -> Any:
    n = len(values)
    return pa.table(
        {
            "key": pa.array([k.encode() for k in keys], pa.binary()),
            "value": pa.array(values, pa.binary()),
            "topic": pa.array([topic] * n, pa.string()),
            "partition": pa.array([0] * n, pa.int32()),
            "offset": pa.array(range(n), pa.int64()),
            "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
            "timestampType": pa.array([0] * n, pa.int32()),
        },
        schema=_KAFKA_SCHEMA,
    )


def _write_chunk(
    spark: SparkSession, settings: Settings, stream: str, records: pa.Table, pane_s: int
) -> int:
    """Bronze, silver and pane partials of one chunk of Kafka-shaped records; returns events."""
    tables = LakeTables.from_settings(settings)
    spec = settings.streams[stream]
    raw = spark.createDataFrame(records)
    parsed = parse_events(raw, stream, spec).persist()
    try:
        rejected = parsed.where(F.col("reason").isNotNull()).select("message").limit(1).collect()
        if rejected:
            msg = f"backfilled events were rejected: {rejected[0][0]}"
            raise StreamJobError(msg)
        silver = silver_rows(parsed, spec, _BATCH_ID).persist()
        try:
            silver.write.format("delta").mode("append").save(tables.silver(stream))
            panes = pane_partials(silver, spec, pane_s, _BATCH_ID)
            panes.write.format("delta").mode("append").save(tables.panes(stream))
            events = silver.count()
        finally:
            silver.unpersist()
        bronze_rows(raw).write.format("delta").mode("append").save(tables.bronze(stream))
    finally:
        parsed.unpersist()
    return events


def backfill_simulated(
    spark: SparkSession,
    settings: Settings,
    stream: str,
    *,
    days: float,
    entities: int | None = None,
    interval_s: float | None = None,
    end: datetime | None = None,
    batch_hours: float = 24.0,
    progress: Callable[[str], None] | None = None,
) -> BackfillResult:
    """Write ``days`` of simulated history into an empty stream's lake tables.

    Args:
        spark: The session.
        settings: The platform's settings (``simulator`` gives seed, fleet size
            and anomaly rate; invalid events are never simulated here).
        stream: A stream with the telemetry schema.
        days: Event-time span of the history.
        entities: Machines; default ``simulator.entities``.
        interval_s: Event time between one machine's readings; default
            ``ml.backfill_interval_s``.
        end: Event time the history ends at; default now (to the minute).
        batch_hours: Event time sent through the transforms at a time.
        progress: Called with a line of text after each batch.

    Returns:
        What was written, or why nothing was (``skipped``).

    Raises:
        UnknownStreamError: The stream is not configured.
        StreamJobError: The stream lacks the simulator's fields, or ``days``
            or ``batch_hours`` is not positive.
    """
    started = time.monotonic()
    schema = SchemaRegistry(settings.streams)[stream]
    spec = schema.spec
    missing = [m for m in METRICS if m not in spec.fields]
    if missing or spec.key_field != "entity_id":
        msg = (
            f"stream {stream!r} lacks the simulator's fields (entity_id and {', '.join(METRICS)}): "
            "backfill a stream with the telemetry schema"
        )
        raise StreamJobError(msg)
    if days <= 0 or batch_hours <= 0:
        msg = f"days and batch_hours must be positive, got {days} and {batch_hours}"
        raise StreamJobError(msg)
    sim: SimulatorSettings = settings.simulator.model_copy(
        update={"invalid_fraction": 0.0, **({"entities": entities} if entities else {})}
    )
    step = interval_s or settings.ml.backfill_interval_s
    finish = (end or datetime.now(UTC)).astimezone(UTC).replace(second=0, microsecond=0)
    start = finish - timedelta(days=days)
    writer = BatchWriter(spark, settings, stream, warehouse=None)
    writer.ensure_tables()
    tables = LakeTables.from_settings(settings)
    existing = spark.read.format("delta").load(tables.silver(stream)).agg(F.count(F.lit(1))).first()
    if existing is not None and existing[0]:
        reason = f"{stream} already holds {existing[0]:,} events in silver"
        log.info("backfill of %s skipped: %s", stream, reason)
        return BackfillResult(stream, 0, sim.entities, start, finish, 0, 0.0, None, reason)

    ticks = max(1, round(days * 86_400 / step))
    per_batch = max(1, round(batch_hours * 3600 / step))
    batches = -(-ticks // per_batch)
    stamp = start.strftime("%Y%m%dT%H%M%SZ")
    labels = settings.data_dir / "simulator" / f"backfill-{stream}-seed{sim.seed}-{stamp}.jsonl"
    labels.unlink(missing_ok=True)
    topic = topic_name(stream, "events")
    windows = list(settings.stream.windows)
    pane_s = pane_seconds(windows)
    total = 0
    with open_labels(labels) as labels_out:
        fleet = FleetSimulator(sim, start=start, interval_s=step, labels_out=labels_out)
        for index in range(batches):
            values: list[bytes] = []
            keys: list[str] = []
            times: list[datetime] = []
            for _ in range(min(per_batch, ticks - fleet.tick)):
                when, events = fleet.next_tick()
                results = schema.validate_many(events, ingest_time=when)
                valid: list[Any] = [r for r in results if not isinstance(r, Rejection)]
                if len(valid) != len(results):  # the simulator makes none here: a bug if so
                    msg = f"the simulator made {len(results) - len(valid)} invalid events"
                    raise StreamJobError(msg)
                values += schema.encode_many(valid)
                keys += [e.key for e in valid]
                times += [when] * len(valid)
            total += _write_chunk(
                spark, settings, stream, _kafka_rows(values, keys, times, topic), pane_s
            )
            if progress is not None:
                progress(
                    f"  history to {times[-1]:%Y-%m-%d %H:%M} UTC: {total:,} events "
                    f"({index + 1} of {batches}, {time.monotonic() - started:.0f} s)"
                )
    panes = spark.read.format("delta").load(tables.panes(stream))
    for window in windows:
        gold = BatchWriter._gold_shape(windows_from_panes(panes, window), window, finish)
        gold.write.format("delta").mode("append").save(tables.gold(stream, window.name))
    seconds = time.monotonic() - started
    log.info(
        "backfilled %s: %s events of %s machines from %s to %s in %.1f s",
        stream,
        total,
        sim.entities,
        start.isoformat(),
        finish.isoformat(),
        seconds,
    )
    return BackfillResult(stream, total, sim.entities, start, finish, batches, seconds, labels)

"""The streaming job: Kafka → bronze, silver, gold (Delta) and the warehouse, exactly once.

One Structured Streaming query per stream reads ``<stream>.events`` and hands
each micro-batch to :class:`BatchWriter`, which in order:

1. appends the batch as received to **bronze** (Delta, idempotent per batch id
   through ``txnAppId``/``txnVersion``);
2. parses and validates it in bulk (:func:`~pulsecast.stream.transforms.parse_events`),
   marks as ``late`` the valid events older than the watermark, and sends every
   invalid or late record to ``<stream>.dlq`` with its reason;
3. merges the valid events into **silver**, inserting only event ids not there
   yet (dedup within the lateness horizon; replaying a batch inserts nothing);
4. recomputes from silver every **gold** window the batch touched and merges
   the results (late-but-allowed events update their window; replays rewrite
   the same values);
5. upserts those windows into the **warehouse** (``INSERT ... ON CONFLICT``).

Every sink is idempotent per batch, and Spark's checkpoint replays an
unfinished batch after a crash, so silver holds each valid event once and the
warehouse equals a batch recomputation from silver. The watermark a batch uses
is the newest event time in silver from earlier batches minus the allowed
lateness; it is recomputed from silver on restart, so a replayed batch judges
lateness as the first run did. When a stream goes quiet for
``stream.idle_timeout_s`` its open windows are marked final.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from pulsecast.bus.topics import topic_name
from pulsecast.config import Settings, StreamSpec, WindowSpec
from pulsecast.events.errors import UnknownStreamError
from pulsecast.lake.tables import BRONZE_PARTITIONS, GOLD_PARTITIONS, SILVER_PARTITIONS, LakeTables
from pulsecast.stream.errors import StreamJobError
from pulsecast.stream.transforms import (
    bronze_rows,
    dead_letter_rows,
    parse_events,
    silver_rows,
    window_aggregates,
)
from pulsecast.warehouse.schema import WAREHOUSE_COLUMNS, Warehouse

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

__all__ = ["BatchWriter", "JobStats", "StreamJob"]

log = logging.getLogger(__name__)


@dataclass
class JobStats:
    """Running totals of one stream's job."""

    batches: int = 0
    records: int = 0
    valid: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    gold_rows: int = 0
    last_data_at: float = field(default_factory=time.monotonic)
    last_batch_s: float = 0.0
    open_windows: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON output."""
        return {
            "batches": self.batches,
            "records": self.records,
            "valid": self.valid,
            "rejected": dict(self.rejected),
            "gold_rows": self.gold_rows,
        }


class BatchWriter:
    """The ``foreachBatch`` function of one stream (see the module's description).

    Args:
        spark: The session.
        settings: The platform's settings.
        stream: The stream's name.
        warehouse: Where gold goes too; None to write the lake only.
    """

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        stream: str,
        *,
        warehouse: Warehouse | None,
    ) -> None:
        self.spark = spark
        self.settings = settings
        self.stream = stream
        self.spec: StreamSpec = settings.streams[stream]
        self.tables = LakeTables.from_settings(settings)
        self.warehouse = warehouse
        self.windows: list[WindowSpec] = list(settings.stream.windows)
        self.lateness = timedelta(seconds=settings.stream.allowed_lateness_s)
        self.stats = JobStats()
        self.lock = threading.Lock()
        self._max_event_time: datetime | None = None
        self._max_known_before: int | None = None  # batch id the max is valid for

    # -- tables ------------------------------------------------------------------------------

    def ensure_tables(self) -> None:
        """Create the stream's Delta tables if they do not exist (empty, with their schema)."""
        from delta.tables import DeltaTable

        empty = self.spark.createDataFrame(
            [],
            "key binary, value binary, topic string, partition int, offset long, "
            "timestamp timestamp, timestampType int",
        )
        targets = [
            (self.tables.bronze(self.stream), bronze_rows(empty), BRONZE_PARTITIONS),
            (
                self.tables.silver(self.stream),
                silver_rows(parse_events(empty, self.stream, self.spec), self.spec, 0),
                SILVER_PARTITIONS,
            ),
        ]
        for window in self.windows:
            gold = self._gold_shape(
                window_aggregates(targets[1][1], self.spec, window), window, final=False
            )
            targets.append((self.tables.gold(self.stream, window.name), gold, GOLD_PARTITIONS))
        for uri, frame, partitions in targets:
            if not DeltaTable.isDeltaTable(self.spark, uri):
                frame.limit(0).write.format("delta").partitionBy(*partitions).mode("ignore").save(
                    uri
                )

    @staticmethod
    def _gold_shape(aggregates: DataFrame, window: WindowSpec, *, final: Any) -> DataFrame:
        return aggregates.select(
            "*",
            F.lit(window.name).alias("window_name"),
            (final if not isinstance(final, bool) else F.lit(final)).alias("is_final"),
            F.to_date("window_start").alias("window_date"),
        )

    # -- the watermark -------------------------------------------------------------------------

    def watermark(self, batch_id: int) -> datetime | None:
        """The watermark batch ``batch_id`` judges lateness by.

        Newest event time in silver written by earlier batches, minus the
        allowed lateness; read from silver the first time (after a restart).
        """
        if self._max_known_before != batch_id:
            silver = self.spark.read.format("delta").load(self.tables.silver(self.stream))
            row = silver.where(F.col("batch_id") < batch_id).agg(F.max("event_time")).first()
            self._max_event_time = row[0] if row else None
            self._max_known_before = batch_id
        if self._max_event_time is None:
            return None
        return self._max_event_time - self.lateness

    # -- one micro-batch -----------------------------------------------------------------------

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """Process one micro-batch (called by Spark; see the module's description)."""
        started = time.monotonic()
        with self.lock:
            batch = batch.persist()
            parsed = None
            try:
                records = batch.count()
                if records == 0:
                    return
                marks = [("read", time.monotonic())]
                self._bronze(batch, batch_id)
                marks.append(("bronze", time.monotonic()))
                watermark = self.watermark(batch_id)
                parsed = self._judge(parse_events(batch, self.stream, self.spec), watermark)
                parsed = parsed.persist()
                counts = {
                    r["reason"]: r["count"] for r in parsed.groupBy("reason").count().collect()
                }
                valid_count = counts.pop(None, 0)
                marks.append(("parse", time.monotonic()))
                if counts:
                    self._dead_letters(parsed.where(F.col("reason").isNotNull()))
                    marks.append(("dlq", time.monotonic()))
                valid = parsed.where(F.col("reason").isNull())
                if valid_count:
                    row = valid.agg(F.min("event_time"), F.max("event_time")).first()
                    assert row is not None  # noqa: S101 (an aggregate has one row)
                    oldest: datetime = row[0]
                    newest: datetime = row[1]
                    self._silver(valid, batch_id, oldest)
                    marks.append(("silver", time.monotonic()))
                    if self._max_event_time is None or newest > self._max_event_time:
                        self._max_event_time = newest
                    self.stats.gold_rows += self._gold(valid, oldest, newest)
                    marks.append(("gold+warehouse", time.monotonic()))
                self._max_known_before = batch_id + 1
                self.stats.batches += 1
                self.stats.records += records
                self.stats.valid += valid_count
                self.stats.rejected.update(counts)
                self.stats.last_data_at = time.monotonic()
                self.stats.open_windows = self.stats.open_windows or valid_count > 0
                self.stats.last_batch_s = time.monotonic() - started
                steps = ", ".join(
                    f"{name} {end - begin:.1f}"
                    for (name, end), (_, begin) in zip(
                        marks, [("", started), *marks[:-1]], strict=True
                    )
                )
                log.info(
                    "stream %s batch %s: %s records, %s valid, rejected %s in %.2f s (%s)",
                    self.stream,
                    batch_id,
                    records,
                    valid_count,
                    dict(counts),
                    self.stats.last_batch_s,
                    steps,
                )
            finally:
                if parsed is not None:
                    parsed.unpersist()
                batch.unpersist()

    def _bronze(self, batch: DataFrame, batch_id: int) -> None:
        (
            bronze_rows(batch)
            .write.format("delta")
            .mode("append")
            .option("txnAppId", f"pulsecast-bronze-{self.stream}")
            .option("txnVersion", batch_id)
            .save(self.tables.bronze(self.stream))
        )

    def _judge(self, parsed: DataFrame, watermark: datetime | None) -> DataFrame:
        if watermark is None:
            return parsed
        late = F.col("reason").isNull() & (F.col("event_time") < F.lit(watermark))
        text = f"event_time: older than the watermark {watermark.isoformat()}Z"
        return parsed.select(
            *[c for c in parsed.columns if c not in ("reason", "field", "message")],
            F.when(late, F.lit("late")).otherwise(F.col("reason")).alias("reason"),
            F.when(late, F.lit("event_time")).otherwise(F.col("field")).alias("field"),
            F.when(late, F.lit(text)).otherwise(F.col("message")).alias("message"),
        )

    def _dead_letters(self, invalid: DataFrame) -> None:
        (
            dead_letter_rows(invalid, self.stream)
            .write.format("kafka")
            .option("kafka.bootstrap.servers", self.settings.kafka.bootstrap)
            .option("topic", topic_name(self.stream, "dlq"))
            .save()
        )

    def _silver(self, valid: DataFrame, batch_id: int, oldest: datetime) -> None:
        """Append the batch's events whose ids silver does not hold yet.

        Only silver rows at or after the batch's oldest event can clash, and
        Delta's file statistics skip the others. The append is idempotent per
        batch id (a replay of a committed batch writes nothing).
        """
        uri = self.tables.silver(self.stream)
        seen = (
            self.spark.read.format("delta")
            .load(uri)
            .where(
                (F.col("event_date") >= F.lit(oldest.date()))
                & (F.col("event_time") >= F.lit(oldest))
            )
            .select("event_id")
        )
        (
            silver_rows(valid, self.spec, batch_id)
            .join(seen, "event_id", "left_anti")
            .write.format("delta")
            .mode("append")
            .option("txnAppId", f"pulsecast-silver-{self.stream}")
            .option("txnVersion", batch_id)
            .save(uri)
        )

    def _gold(self, valid: DataFrame, lo: datetime, hi: datetime) -> int:
        """Recompute and merge every window the batch touched; returns the gold rows written."""
        from delta.tables import DeltaTable

        final_before = (
            self._max_event_time - self.lateness if self._max_event_time is not None else None
        )
        silver = self.spark.read.format("delta").load(self.tables.silver(self.stream))
        keys = valid.select("key").distinct()
        written = 0
        warehouse_rows: list[tuple[Any, ...]] = []
        for window in self.windows:
            size = timedelta(seconds=window.size_s)
            start, end = lo - size, hi + size
            touched = valid.select(
                "key",
                F.window(
                    "event_time",
                    f"{window.size_s} seconds",
                    f"{window.slide_s or window.size_s} seconds",
                ).start.alias("window_start"),
            ).distinct()
            slice_ = silver.where(
                (F.col("event_date") >= F.lit(start.date()))
                & (F.col("event_date") <= F.lit(end.date()))
                & (F.col("event_time") >= F.lit(start))
                & (F.col("event_time") < F.lit(end))
            ).join(keys, "key", "left_semi")
            aggregates = window_aggregates(slice_, self.spec, window).join(
                touched, ["key", "window_start"], "left_semi"
            )
            final = (
                F.col("window_end") <= F.lit(final_before)
                if final_before is not None
                else F.lit(False)
            )
            gold = self._gold_shape(aggregates, window, final=final).persist()
            try:
                target = DeltaTable.forPath(self.spark, self.tables.gold(self.stream, window.name))
                (
                    target.alias("t")
                    .merge(
                        gold.alias("s"),
                        "t.window_date = s.window_date AND t.key = s.key "
                        "AND t.window_start = s.window_start AND t.metric = s.metric",
                    )
                    .whenMatchedUpdateAll()
                    .whenNotMatchedInsertAll()
                    .execute()
                )
                rows = self._warehouse_tuples(gold)
                warehouse_rows.extend(rows)
                written += len(rows)
            finally:
                gold.unpersist()
        if final_before is not None:
            # Windows the batch did not touch may have closed too: the watermark moved.
            for window in self.windows:
                DeltaTable.forPath(self.spark, self.tables.gold(self.stream, window.name)).update(
                    condition=(F.col("window_date") >= F.lit(final_before.date() - timedelta(1)))
                    & ~F.col("is_final")
                    & (F.col("window_end") <= F.lit(final_before)),
                    set={"is_final": F.lit(True)},
                )
        if self.warehouse is not None:
            self.warehouse.upsert_gold(warehouse_rows)
            if final_before is not None:
                self.warehouse.finalize(self.stream, before=final_before)
        return written

    def _warehouse_tuples(self, gold: DataFrame) -> list[tuple[Any, ...]]:
        columns = [c for c in WAREHOUSE_COLUMNS if c != "stream"]
        return [(self.stream, *row) for row in gold.select(*columns).collect()]

    def finalize_open_windows(self) -> int:
        """Mark every open window of the stream final (the stream went quiet)."""
        from delta.tables import DeltaTable

        with self.lock:
            if not self.stats.open_windows:
                return 0
            for window in self.windows:
                DeltaTable.forPath(self.spark, self.tables.gold(self.stream, window.name)).update(
                    condition="NOT is_final", set={"is_final": "true"}
                )
            changed = self.warehouse.finalize(self.stream) if self.warehouse is not None else 0
            self.stats.open_windows = False
            log.info("stream %s idle: closed its open windows", self.stream)
            return changed


Progress = Callable[[dict[str, JobStats]], None]


class StreamJob:
    """Every stream's query, run together in one Spark application.

    Args:
        spark: The session.
        settings: The platform's settings.
        streams: Streams to process; default all configured.
        warehouse: Write gold to the warehouse too (default True).
    """

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        *,
        streams: list[str] | None = None,
        warehouse: bool = True,
    ) -> None:
        self.spark = spark
        self.settings = settings
        self.streams = streams or list(settings.streams)
        unknown = [s for s in self.streams if s not in settings.streams]
        if unknown:
            raise UnknownStreamError(unknown[0], list(settings.streams))
        self.warehouse = Warehouse(settings) if warehouse else None
        self.writers = {
            s: BatchWriter(spark, settings, s, warehouse=self.warehouse) for s in self.streams
        }
        self.queries: dict[str, StreamingQuery] = {}

    def start(self) -> None:
        """Create tables and the warehouse schema, then start one query per stream."""
        if self.warehouse is not None:
            self.warehouse.migrate()
        job = self.settings.stream
        for stream, writer in self.writers.items():
            writer.ensure_tables()
            source = (
                self.spark.readStream.format("kafka")
                .option("kafka.bootstrap.servers", self.settings.kafka.bootstrap)
                .option("subscribe", topic_name(stream, "events"))
                .option("startingOffsets", job.starting_offsets)
                .option("maxOffsetsPerTrigger", job.max_offsets_per_trigger)
                .option("failOnDataLoss", "false")
                .load()
            )
            self.queries[stream] = (
                source.writeStream.queryName(f"pulsecast-{stream}")
                .foreachBatch(writer)
                .option("checkpointLocation", f"{self.settings.checkpoint_uri}/{stream}")
                .trigger(processingTime=f"{job.trigger_interval_s} seconds")
                .start()
            )
            log.info("streaming %s", stream)

    def poll(self) -> None:
        """Raise a failed query's error; close windows of streams that went quiet."""
        idle_s = self.settings.stream.idle_timeout_s
        for stream, query in self.queries.items():
            error = query.exception()
            if error is not None:
                msg = f"the {stream} query failed: {str(error).splitlines()[0]}"
                raise StreamJobError(msg)
            writer = self.writers[stream]
            if writer.stats.open_windows and time.monotonic() - writer.stats.last_data_at > idle_s:
                writer.finalize_open_windows()

    def idle(self) -> bool:
        """No stream has had data for the idle timeout, none is busy, none holds open windows."""
        idle_s = self.settings.stream.idle_timeout_s
        now = time.monotonic()
        for stream, writer in self.writers.items():
            status = self.queries[stream].status if stream in self.queries else {}
            if status.get("isTriggerActive") or status.get("isDataAvailable"):
                return False
            if now - writer.stats.last_data_at <= idle_s or writer.stats.open_windows:
                return False
        return True

    def run(self, **wait_options: Any) -> dict[str, JobStats]:
        """:meth:`start`, then :meth:`wait` with ``wait_options``."""
        self.start()
        return self.wait(**wait_options)

    def wait(
        self,
        *,
        until_idle: bool = False,
        max_seconds: float | None = None,
        progress: Progress | None = None,
        progress_every_s: float = 10.0,
    ) -> dict[str, JobStats]:
        """Block (closing idle windows) until idle, ``max_seconds`` or interruption; then stop."""
        started = time.monotonic()
        next_progress = started + progress_every_s
        try:
            while True:
                time.sleep(0.5)
                self.poll()
                now = time.monotonic()
                if progress is not None and now >= next_progress:
                    progress(self.stats())
                    next_progress = now + progress_every_s
                if until_idle and self.idle():
                    break
                if max_seconds is not None and now - started >= max_seconds:
                    break
        finally:
            self.stop()
        return self.stats()

    def stats(self) -> dict[str, JobStats]:
        """Each stream's running totals."""
        return {s: w.stats for s, w in self.writers.items()}

    def stop(self) -> None:
        """Stop every query (a batch in progress completes first)."""
        for query in self.queries.values():
            if query.isActive:
                query.stop()
        self.queries.clear()

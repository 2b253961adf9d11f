"""The streaming job: Kafka → bronze, silver, gold (Delta) and the warehouse, exactly once.

One Structured Streaming query per stream reads ``<stream>.events`` and hands
each micro-batch to :class:`BatchWriter`, which in order (a second query per
stream scores silver live, :mod:`pulsecast.stream.scoring`):

1. parses and validates it in bulk: a batch the driver collects whole with
   Arrow (:mod:`pulsecast.stream.arrow_parse`, which leaves to Spark the
   records it cannot be trusted with), a larger one with Spark
   (:func:`~pulsecast.stream.transforms.parse_events`); marks as ``late`` the
   valid events older than the watermark, and sends every invalid or late
   record to ``<stream>.dlq`` with its reason;
2. appends to **silver** the valid events no earlier batch wrote (dedup by
   event id against the recent events' ids, kept in memory as Arrow), on a
   thread of its own while the next steps run;
3. aggregates those events into **panes** (epoch-aligned spans of event time
   that divide every window) as mergeable partials — count, mean, m2, min, max
   and a KLL quantile sketch — and appends them to the stream's pane state;
4. merges, for every window the batch touched and every key it touched, all
   partials of its panes into the window's aggregates and replaces those rows
   of **gold**, so late-but-allowed events update their window without
   rereading silver;
5. upserts those windows into the **warehouse** (``INSERT ... ON CONFLICT``);
6. appends the batch as received to **bronze** (on a thread of its own from
   the start of step 2), and waits for both appends before the batch ends.

Pane partials and gold rows (small, already in the driver as Arrow) are
committed through delta-rs (see :mod:`pulsecast.lake.small_tables`; in an
encrypted lake pyarrow writes their files encrypted,
:mod:`pulsecast.lake.encrypted`), which takes milliseconds where Delta on
Spark takes seconds; so are bronze and silver, shaped with Arrow
(:mod:`pulsecast.stream.arrow_rows`) from the batch's whole parse, made in
the driver from the records the batch's one Spark job collects, unless
batches may hold more than ``stream.driver_commit_rows`` records or this one
is too large for the driver (then Spark parses and appends them). Every
sink is idempotent per batch (bronze and silver by a commit tag, panes by a
Delta application transaction, gold by
recomputation, the warehouse by upsert), and Spark's checkpoint replays an
unfinished batch after a crash, so silver holds each valid event once and gold
and the warehouse equal an aggregation of silver. The watermark a batch uses
is the newest event time in silver from earlier batches minus the allowed
lateness; it is recomputed from silver on restart, so a replayed batch judges
lateness as the first run did, and everything else kept in memory between
batches is read back from the lake too. Windows that end before the watermark
are marked final (only when it crosses a pane boundary); when a stream goes
quiet for ``stream.idle_timeout_s`` its open windows are marked final too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import functions as F

from pulsecast.bus.clients import spark_kafka_options, spark_kafka_source_options
from pulsecast.bus.consumer import EventConsumer
from pulsecast.bus.topics import topic_name, topic_specs
from pulsecast.config import Settings, StreamSpec, WindowSpec
from pulsecast.events.errors import UnknownStreamError
from pulsecast.lake import small_tables
from pulsecast.lake.tables import (
    BRONZE_PARTITIONS,
    GOLD_PARTITIONS,
    PANE_PARTITIONS,
    SILVER_PARTITIONS,
    LakeTables,
)
from pulsecast.monitoring.correlation import CORRELATION_HEADER, MAX_LOGGED_IDS
from pulsecast.monitoring.stream_metrics import (
    PrometheusStreamListener,
    note_read_ahead,
    record_batch,
    serve_metrics,
)
from pulsecast.security.lake_crypto import LakeCrypto
from pulsecast.stream.arrow_gold import fold_panes_of, pane_partials_of, windows_of_panes
from pulsecast.stream.arrow_parse import RAW_COLUMNS, judge_late, parse_records
from pulsecast.stream.arrow_rows import bronze_of_parse, silver_of_parse
from pulsecast.stream.batch_stats import BatchStatsWriter, batch_stats_rows, first_occurrences
from pulsecast.stream.errors import StreamJobError
from pulsecast.stream.read_ahead import ReadAhead, offset_log_reader
from pulsecast.stream.retrain import Retrainer
from pulsecast.stream.scoring import (
    ScoreWriter,
    ensure_forecast_errors_table,
    ensure_scores_table,
    start_scoring,
)
from pulsecast.stream.transforms import (
    DEAD_LETTER_INPUT,
    bronze_rows,
    bronze_rows_of_parsed,
    dead_letter_rows,
    fold_panes,
    numeric_fields,
    pane_partials,
    pane_seconds,
    parse_events,
    silver_rows,
    window_starts,
    windows_from_panes,
)
from pulsecast.warehouse.schema import WAREHOUSE_COLUMNS, Warehouse

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery
    from pyspark.sql.types import StructType

__all__ = ["BatchTimes", "BatchWriter", "JobStats", "StreamJob", "gold_partitions"]

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1)
#: Up to this many events, a batch's pane partials are aggregated in one
#: partition: no shuffle (a Spark job and a stage less, hundreds of milliseconds
#: on 2 cores). Larger batches (a cluster's) keep Spark's parallel aggregation.
_ONE_PARTITION_EVENTS = 500_000
#: The panes of the keys a batch touched are folded (one partial per pane) once
#: they hold this many partials per pane on average over all their panes in
#: memory: the fold is a Spark job of its own, worth it only when it shrinks
#: the windows' merge several times.
_FOLD_AT = 4
_PANE_ID = ["key", "metric", "pane_start"]
#: The column of each record's correlation ids in the collected verdicts.
_CORRELATION = "_correlation"
#: Records gone from Kafka (retention) are skipped, not a failed query (the query's
#: reads and the read ahead's alike).
_FAIL_ON_DATA_LOSS = "false"
#: What Spark's errors say when a result does not fit the driver.
_TOO_LARGE_FOR_DRIVER = ("spark.driver.maxResultSize", "TaskResultLost", "OutOfMemoryError")


@dataclass(frozen=True)
class BatchTimes:
    """When one micro-batch's results became visible (wall clock, seconds since the epoch)."""

    batch_id: int
    records: int
    started_at: float
    gold_at: float
    warehouse_at: float

    @property
    def duration_s(self) -> float:
        """The batch's processing time."""
        return self.warehouse_at - self.started_at


@dataclass
class JobStats:
    """Running totals of one stream's job, and the timing of its latest batches."""

    batches: int = 0
    records: int = 0
    valid: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    #: Records Spark parsed: those of batches not parsed in the driver (too large for it,
    #: or with no topic column), and those Arrow refused.
    parsed_by_spark: int = 0
    #: Batches whose records were read ahead, while the batch before them was processed.
    read_ahead: int = 0
    gold_rows: int = 0
    scored: int = 0
    flagged: int = 0
    forecasts: int = 0
    model_version: int | None = None
    retrains: int = 0
    restarts: int = 0
    last_data_at: float = field(default_factory=time.monotonic)
    last_batch_s: float = 0.0
    open_windows: bool = False
    recent: deque[BatchTimes] = field(default_factory=lambda: deque(maxlen=10_000))

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON output."""
        return {
            "batches": self.batches,
            "records": self.records,
            "valid": self.valid,
            "rejected": dict(self.rejected),
            "parsed_by_spark": self.parsed_by_spark,
            "read_ahead": self.read_ahead,
            "gold_rows": self.gold_rows,
            "scored": self.scored,
            "flagged": self.flagged,
            "forecasts": self.forecasts,
            "model_version": self.model_version,
            "retrains": self.retrains,
            "restarts": self.restarts,
        }


class BatchWriter:
    """The ``foreachBatch`` function of one stream (see the module's description).

    Args:
        spark: The session.
        settings: The platform's settings.
        stream: The stream's name.
        warehouse: Where gold goes too; None to write the lake only.
        topic: The one Kafka topic every batch's records come from (the
            stream's ``<stream>.events`` by default): a batch collected in
            the driver is given its name rather than collecting it per record.
        checkpoint: The query's checkpoint location, when a streaming query
            calls it: while the stream is behind, each batch's successor is
            then read ahead (:mod:`pulsecast.stream.read_ahead`), when
            batches are parsed in the driver (``max_offsets_per_trigger``
            within ``driver_commit_rows``).
    """

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        stream: str,
        *,
        warehouse: Warehouse | None,
        topic: str | None = None,
        checkpoint: str | None = None,
    ) -> None:
        self.spark = spark
        self.settings = settings
        self.stream = stream
        self.topic = topic or topic_name(stream, "events")
        self.spec: StreamSpec = settings.streams[stream]
        self.tables = LakeTables.from_settings(settings)
        self.warehouse = warehouse
        self.windows: list[WindowSpec] = list(settings.stream.windows)
        self.pane_s = pane_seconds(self.windows)
        self.lateness = timedelta(seconds=settings.stream.allowed_lateness_s)
        self.stats = JobStats()
        self.lock = threading.Lock()
        self._max_event_time: datetime | None = None
        self._max_known_before: int | None = None  # batch id the max is valid for
        self._finalized_before: datetime | None = None  # windows ending by then are final
        self._written: dict[str, int] = {}  # newest batch id each sink holds, read once
        self._recent_panes: pa.Table | None = None  # partials later batches may need
        self._recent_ids: pa.Table | None = None  # events later duplicates may repeat
        self._parse_schemas: dict[tuple[str, ...], pa.Schema] = {}  # by the columns carried
        #: The lake's encryption (None: plaintext), for the tables committed from here.
        self.crypto = LakeCrypto.from_settings(settings)
        self.batch_stats = BatchStatsWriter(self.tables.batches(stream), stream, crypto=self.crypto)
        self.checkpoint = checkpoint
        job = settings.stream
        self._raw_columns: list[str] = []  # what a collect reads (set by the first batch)
        self._offsets: EventConsumer | None = None  # the read ahead's view of the newest offsets
        self.read_ahead = (
            ReadAhead(
                read_log=offset_log_reader(spark, checkpoint),
                topic=self.topic,
                limit=job.max_offsets_per_trigger,
                read=self._read_range,
                latest=self._latest_offsets,
                min_records=max(job.max_offsets_per_trigger // 4, 1),
            )
            if checkpoint is not None and job.max_offsets_per_trigger <= job.driver_commit_rows
            else None
        )

    # -- tables ------------------------------------------------------------------------------

    def ensure_tables(self) -> None:
        """Create the stream's Delta tables if they do not exist (empty, with their schema)."""
        from delta.tables import DeltaTable

        empty, silver, panes = self._empty_frames()
        targets = [
            (self.tables.bronze(self.stream), bronze_rows(empty), BRONZE_PARTITIONS),
            (self.tables.silver(self.stream), silver, SILVER_PARTITIONS),
            (self.tables.panes(self.stream), panes, PANE_PARTITIONS),
        ]
        for window in self.windows:
            gold = self._gold_shape(windows_from_panes(panes, window), window, None)
            targets.append((self.tables.gold(self.stream, window.name), gold, GOLD_PARTITIONS))
        for uri, frame, partitions in targets:
            if not DeltaTable.isDeltaTable(self.spark, uri):
                frame.limit(0).write.format("delta").partitionBy(*partitions).mode("ignore").save(
                    uri
                )
        self.batch_stats.ensure_table()

    @staticmethod
    def _gold_shape(
        aggregates: DataFrame, window: WindowSpec, final_before: datetime | None
    ) -> DataFrame:
        final = (
            F.col("window_end") <= F.lit(final_before) if final_before is not None else F.lit(False)
        )
        return aggregates.select(
            "*",
            F.lit(window.name).alias("window_name"),
            final.alias("is_final"),
            F.to_date("window_start").alias("window_date"),
            F.hour("window_start").alias("window_hour"),
        )

    # -- the watermark -------------------------------------------------------------------------

    def watermark(self, batch_id: int) -> datetime | None:
        """The watermark batch ``batch_id`` judges lateness by.

        Newest event time in silver written by earlier batches, minus the
        allowed lateness; read from silver the first time (after a restart).
        """
        if self._max_known_before != batch_id:
            newest = small_tables.newest_before(
                self.tables.silver(self.stream),
                "event_time",
                batch_column="batch_id",
                before=batch_id,
                crypto=self.crypto,
            )
            self._max_event_time = _local(newest)
            self._max_known_before = batch_id
        if self._max_event_time is None:
            return None
        return self._max_event_time - self.lateness

    # -- one micro-batch -----------------------------------------------------------------------

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """Process one micro-batch (called by Spark; see the module's description)."""
        started = time.monotonic()
        started_at = time.time()
        with self.lock:
            cached: list[DataFrame] = []
            appends: list[_Background] = []  # bronze's and silver's, joined before the end
            try:
                watermark = self.watermark(batch_id)
                marks = [("watermark", time.monotonic())]
                carry = tuple(c for c in ("topic", "headers") if c in batch.columns)
                # A small batch's records are collected and parsed in the driver (one
                # pass): every record's verdict, id and times, for the counts per reason,
                # the newest event time and silver's ids, and every column, which bronze
                # and silver are shaped of.
                whole, by_spark, parsed_by_spark = (
                    self._collect_whole(batch, batch_id, carry=carry, watermark=watermark)
                    if "topic" in carry
                    else (None, False, 0)
                )
                if whole is None:
                    # Later steps read the parse again: it is cached, before the
                    # watermark's judgement (a plan with no value that changes per batch).
                    # A batch collected whole that turned out too large for the driver
                    # reads its records from Kafka once more for it.
                    parsed = parse_events(batch, self.stream, self.spec, carry=carry).persist()
                    cached.append(parsed)
                    judged = self._judge(parsed, watermark)
                    verdict = judged.select(
                        "reason",
                        "partition",
                        "offset",
                        "event_id",
                        "event_time",
                        "ingest_time",
                        "kafka_timestamp",
                        *_correlation_column(parsed),
                    ).toArrow()
                else:
                    verdict = whole
                records = verdict.num_rows
                if records == 0:
                    return
                if whole is None:
                    parsed_by_spark = records
                is_valid = pc.is_null(verdict["reason"])
                # Usually every record is valid: then nothing is filtered (copied).
                all_valid = verdict["reason"].null_count == records
                accepted = verdict if all_valid else verdict.filter(is_valid)
                valid_count = accepted.num_rows
                counts: dict[str, int] = {}
                if not all_valid:
                    rejected = pc.value_counts(verdict["reason"].filter(pc.invert(is_valid)))
                    counts = {r["values"]: r["counts"] for r in rejected.to_pylist()}
                marks.append(("parse", time.monotonic()))
                if counts:
                    invalid = (
                        judged.where(F.col("reason").isNotNull())
                        if whole is None
                        else self.spark.createDataFrame(
                            whole.filter(pc.invert(is_valid)).select(list(DEAD_LETTER_INPUT))
                        )
                    )
                    self._dead_letters(invalid)
                    marks.append(("dlq", time.monotonic()))
                # Bronze (for replay and audit) is appended while the rest goes on.
                bronze: DataFrame | pa.Table
                if whole is not None:
                    bronze = bronze_of_parse(whole)
                elif "topic" in carry:
                    bronze = bronze_rows_of_parsed(parsed)
                else:
                    bronze = bronze_rows(batch)
                bronze_uri = self.tables.bronze(self.stream)
                appends.append(
                    _Background(
                        self._append,
                        bronze,
                        "bronze",
                        bronze_uri,
                        batch_id,
                        rows=records,
                        driver=not by_spark,
                    )
                )
                ingested: list[datetime] = []
                newest_before = self._max_event_time
                fresh_ids = pa.array([], pa.string())
                entities = 0
                repeats = False  # an event id repeats within the batch
                if valid_count:
                    newest = _local(pc.max(accepted["event_time"]).as_py())
                    if newest is not None and (
                        self._max_event_time is None or newest > self._max_event_time
                    ):
                        self._max_event_time = newest
                    ingest = pc.min_max(accepted["ingest_time"]).as_py()
                    ingested = [t for t in (ingest["min"], ingest["max"]) if t is not None]
                    ids = accepted.select(["event_id", "event_time"])
                    if len(pc.unique(ids["event_id"])) < valid_count:
                        ids = None  # the batch repeats an event id: one copy is kept
                        repeats = True
                    valid: DataFrame | pa.Table = (
                        judged.where(F.col("reason").isNull()) if whole is None else accepted
                    )
                    fresh, fresh_ids = self._silver(
                        valid, batch_id, watermark=watermark, ids=ids, cached=cached
                    )
                    silver_uri = self.tables.silver(self.stream)
                    appends.append(
                        _Background(
                            self._append,
                            fresh,
                            "silver",
                            silver_uri,
                            batch_id,
                            rows=len(fresh_ids),
                            driver=not by_spark,
                        )
                    )
                    marks.append(("silver", time.monotonic()))
                    gold, entities = self._gold(fresh, batch_id, watermark, events=valid_count)
                    marks.append(("gold", time.monotonic()))
                    gold_at = time.time()
                    if self.warehouse is not None:
                        self.warehouse.upsert_gold(gold)
                        marks.append(("warehouse", time.monotonic()))
                    self.stats.gold_rows += len(gold)
                else:
                    gold_at = time.time()
                # The lags the batch statistics record end with silver's commit.
                ended = [step.result() for step in appends]
                written_at = ended[-1] if valid_count else datetime.now(UTC)
                marks.append(("appends", time.monotonic()))
                self._max_known_before = batch_id + 1
                self._finalize()
                marks.append(("final", time.monotonic()))
                fresh_mask = is_valid  # the usual case: every valid record was written
                if len(fresh_ids) < valid_count:
                    written = pc.fill_null(
                        pc.is_in(verdict["event_id"], value_set=fresh_ids), False
                    )
                    if repeats:  # of the copies of an event in the batch, one is written
                        valid_ids = pc.if_else(
                            is_valid, verdict["event_id"], pa.scalar(None, pa.string())
                        )
                        order = [verdict["partition"], verdict["offset"]]
                        written = pc.and_(written, first_occurrences(valid_ids, order))
                    fresh_mask = pc.and_(written, is_valid)
                stats_rows = batch_stats_rows(
                    verdict,
                    batch_id=batch_id,
                    fresh=fresh_mask,
                    written_at=written_at,
                    newest_before=newest_before,
                    entities=entities,
                )
                self.batch_stats.append(stats_rows, batch_id)
                marks.append(("stats", time.monotonic()))
                self.stats.recent.append(
                    BatchTimes(batch_id, records, started_at, gold_at, time.time())
                )
                self.stats.batches += 1
                self.stats.records += records
                self.stats.valid += valid_count
                self.stats.rejected.update(counts)
                self.stats.parsed_by_spark += parsed_by_spark
                record_batch(
                    self.stream,
                    records=records,
                    dead_letters=counts,
                    latencies_s=[gold_at - t.timestamp() for t in ingested],
                )
                self.stats.last_data_at = time.monotonic()
                self.stats.open_windows = self.stats.open_windows or valid_count > 0
                self.stats.last_batch_s = time.monotonic() - started
                steps = ", ".join(
                    f"{name} {end - begin:.2f}"
                    for (name, end), (_, begin) in zip(
                        marks, [("", started), *marks[:-1]], strict=True
                    )
                )
                correlation, id_count = _correlation_ids(verdict)
                log.info(
                    "stream %s batch %s: %s records, %s valid, rejected %s in %.2f s (%s), "
                    "%s correlation ids",
                    self.stream,
                    batch_id,
                    records,
                    valid_count,
                    dict(counts),
                    self.stats.last_batch_s,
                    steps,
                    id_count,
                    extra={
                        "stream": self.stream,
                        "batch_id": batch_id,
                        "records": records,
                        "correlation_ids": ",".join(correlation),
                        "correlation_id_count": id_count,
                    },
                )
            except Exception as exc:
                # The appends first: they may still update what each sink holds.
                for step in appends:
                    step.wait()
                    if step.error is not None and step.error is not exc:
                        log.error(
                            "stream %s batch %s: %s",
                            self.stream,
                            batch_id,
                            step.error,
                            exc_info=step.error,
                            extra={"stream": self.stream, "batch_id": batch_id},
                        )
                # The batch will be replayed: judge it by silver as the first run did,
                # and reread what each sink holds.
                self._max_known_before = None
                if self.read_ahead is not None:
                    self.read_ahead.drop()
                self._written.clear()
                self._recent_panes = None
                self._recent_ids = None
                raise
            finally:
                for step in appends:  # they read the cached frames
                    step.wait()
                for frame in reversed(cached):
                    frame.unpersist()

    def _append(
        self,
        frame: DataFrame | pa.Table,
        sink: str,
        uri: str,
        batch_id: int,
        *,
        rows: int,
        driver: bool = True,
    ) -> bool:
        """Append ``frame`` to a Delta table as batch ``batch_id``'s commit, once.

        Each commit carries ``<sink tag>:<batch id>`` as its user metadata. The
        newest batch id a table holds is read from its latest commits once
        (after a start or a failure, through delta-rs: no Spark job) and then
        followed in memory, so a replayed batch is not appended twice and
        other batches pay no lookup.

        A batch of up to ``stream.driver_commit_rows`` rows comes as Arrow
        (shaped from the collected parse, or collected from the cached
        parse; see :meth:`_collect_whole` and :meth:`_collect`) and is
        committed by delta-rs, as the pane partials are: the batch id is a
        Delta application transaction of the commit too (read before it,
        conflict-checked by it), and pyarrow encrypts the files in an
        encrypted lake. That takes less time and JVM CPU than Spark's Delta
        append (docs/streaming.md, "Performance"). Larger batches (a
        cluster's) are written by Spark in parallel. (Spark's own
        ``txnAppId``/``txnVersion`` rebuilds the table's state on every
        write: about 2 s more per commit on 2 cores, see
        ``benchmarks/delta_commit_costs.py``.)

        Args:
            frame: The rows (already in the driver as Arrow: committed from here).
            sink: Which table (``silver``, ``bronze``): names the tag.
            uri: The table.
            batch_id: The micro-batch.
            rows: At most how many rows ``frame`` has (picks the writer).
            driver: False when the batch is known to be too large for the
                driver: Spark appends it, with no try to collect it first.

        Returns:
            Whether it appended (False: the table already holds the batch).
        """
        tag = f"pulsecast-{sink}-{self.stream}"
        if tag not in self._written:
            newest = small_tables.newest_tagged(uri, f"{tag}:")
            self._written[tag] = -1 if newest is None else newest
        if batch_id <= self._written[tag]:
            log.info("stream %s batch %s: %s holds it already", self.stream, batch_id, sink)
            return False
        if isinstance(frame, pa.Table):
            arrow: pa.Table | None = frame
        else:
            arrow = self._collect(frame, sink, batch_id, rows=rows) if driver else None
        if arrow is not None:
            small_tables.append_once(uri, _nullable(arrow), tag, batch_id, crypto=self.crypto)
        elif not isinstance(frame, pa.Table):
            frame.write.format("delta").mode("append").option(
                "userMetadata", f"{tag}:{batch_id}"
            ).save(uri)
        self._written[tag] = batch_id
        return True

    def _collect_whole(
        self,
        batch: DataFrame,
        batch_id: int,
        *,
        carry: tuple[str, ...],
        watermark: datetime | None,
    ) -> tuple[pa.Table | None, bool, int]:
        """A small batch's records collected, parsed and judged in the driver, or None.

        One Spark job reads the records, as Spark's pass-through would (or
        they were read and parsed ahead, while the batch before was
        processed: :mod:`pulsecast.stream.read_ahead`; such a batch is
        Spark's planned one, of about ``max_offsets_per_trigger`` records,
        shared among partitions), and they are parsed with Arrow
        (:mod:`pulsecast.stream.arrow_parse`; records Arrow is not trusted
        with are parsed by Spark, from the collected records):
        the columns of :func:`parse_events`, judged by the watermark.

        None when batches may hold more than ``stream.driver_commit_rows``
        records (``stream.max_offsets_per_trigger`` is larger): the caller
        then parses with Spark and collects the verdicts alone, and bronze
        and silver are collected or left to Spark by their size (see
        :meth:`_collect`). None too when this batch turns out larger than
        that (one planned before the setting was lowered) or too large for
        the driver's memory; then the second value is True, and Spark appends
        bronze and silver. The third is how many records Spark parsed.
        """
        limit = self.settings.stream.driver_commit_rows
        if self.settings.stream.max_offsets_per_trigger > limit:
            return None, False, 0
        records = batch.select(*RAW_COLUMNS, *(["headers"] if "headers" in carry else []))
        # The records come from one topic: its name is added here rather than collected
        # with every record (about 0.06 s of a 200,000-record collect).
        read = [c for c in records.columns if c != "topic"]
        self._raw_columns = read
        prepare = functools.partial(
            self._parse_collected,
            schema=records.schema,
            carry=carry,
            topic_at=records.columns.index("topic"),
        )
        self._parse_schema(records.schema, carry)  # before a read ahead's thread needs it
        taken = self.read_ahead.take(batch_id) if self.read_ahead is not None else None
        if taken is not None:
            self.stats.read_ahead += 1
            note_read_ahead(query_name(self.stream), batch_id, taken[0].num_rows)
            if self.read_ahead is not None:
                self.read_ahead.start_after(batch_id, prepare)
            parsed, spark_parsed = taken
        else:
            raw = self._collect(records.select(*read), "bronze and silver", batch_id, rows=limit)
            if raw is None or raw.num_rows > limit:
                if raw is not None:
                    log.info(
                        "stream %s batch %s: %s records, more than stream.driver_commit_rows "
                        "(%s): bronze and silver appended by Spark",
                        self.stream,
                        batch_id,
                        raw.num_rows,
                        limit,
                        extra={"stream": self.stream, "batch_id": batch_id},
                    )
                return None, True, 0
            if self.read_ahead is not None:
                self.read_ahead.start_after(batch_id, prepare)
            parsed, spark_rows = prepare(raw)
            spark_parsed = len(spark_rows)
        if spark_parsed:
            log.info(
                "stream %s batch %s: %s of %s records parsed by Spark (not trusted to Arrow)",
                self.stream,
                batch_id,
                spark_parsed,
                parsed.num_rows,
                extra={"stream": self.stream, "batch_id": batch_id},
            )
        if watermark is not None:
            parsed = judge_late(parsed, _instant(watermark), _late_message(watermark))
        return parsed, False, spark_parsed

    def _parse_collected(
        self, raw: pa.Table, *, schema: StructType, carry: tuple[str, ...], topic_at: int
    ) -> tuple[pa.Table, np.ndarray]:
        """Collected records (no ``topic`` column) parsed: the parse, and which Spark parsed."""
        raw = raw.add_column(topic_at, "topic", pa.repeat(pa.scalar(self.topic), raw.num_rows))
        return parse_records(
            raw,
            stream=self.stream,
            spec=self.spec,
            spark_parse=lambda span: self._parse_by_spark(span, schema, carry),
            schema=self._parse_schema(schema, carry),
        )

    def _read_range(self, start: dict[int, int], end: dict[int, int]) -> pa.Table:
        """The topic's records from ``start`` up to ``end``, read and collected as a batch's are."""
        partitions = sorted(p for p in end if end[p] > start[p])
        frame = (
            self.spark.read.format("kafka")
            .options(**spark_kafka_source_options(self.settings))
            .option("assign", json.dumps({self.topic: partitions}))
            .option(
                "startingOffsets", json.dumps({self.topic: {str(p): start[p] for p in partitions}})
            )
            .option("endingOffsets", json.dumps({self.topic: {str(p): end[p] for p in partitions}}))
            .option("includeHeaders", str("headers" in self._raw_columns).lower())
            .option("failOnDataLoss", _FAIL_ON_DATA_LOSS)  # as the query reads
            # One group for every read ahead of the stream: its tasks reuse Spark's pooled
            # consumers (the reads never overlap; they assign partitions, no group joins).
            .option("kafka.group.id", self._read_ahead_group)
            .load()
        )
        return _nullable(frame.select(*self._raw_columns).toArrow())

    def _latest_offsets(self, partitions: list[int]) -> dict[int, int]:
        """The topic's newest offsets (Kafka's high watermarks) of ``partitions``."""
        if self._offsets is None:
            self._offsets = EventConsumer(self.settings, [])
        ends = self._offsets.high_watermarks(self.topic, max(partitions) + 1)
        return {p: ends[p] for p in partitions}

    @property
    def _read_ahead_group(self) -> str:
        """The read ahead's Spark consumer group (of the ``stream`` principal's prefixes)."""
        return f"pulsecast-stream-{self.stream}-read-ahead"

    def close(self) -> None:
        """Let go of the read ahead (its Spark read, its Kafka client), after any batch."""
        with self.lock:
            if self.read_ahead is not None:
                self.read_ahead.drop()
            if self._offsets is not None:
                self._offsets.close()
                self._offsets = None

    def _parse_by_spark(
        self, raw: pa.Table, schema: StructType, carry: tuple[str, ...]
    ) -> pa.Table:
        """:func:`parse_events` of collected records (those Arrow refused), collected."""
        frame = self.spark.createDataFrame(raw, schema=schema)
        return parse_events(frame, self.stream, self.spec, carry=carry).toArrow()

    def _parse_schema(self, schema: StructType, carry: tuple[str, ...]) -> pa.Schema:
        """The Arrow schema of the parse of records of ``schema`` (once per carry)."""
        if carry not in self._parse_schemas:
            empty = self.spark.createDataFrame([], schema)
            parse = parse_events(empty, self.stream, self.spec, carry=carry)
            self._parse_schemas[carry] = _nullable(parse.limit(0).toArrow()).schema
        return self._parse_schemas[carry]

    def _collect(self, frame: DataFrame, sink: str, batch_id: int, *, rows: int) -> pa.Table | None:
        """``frame`` as Arrow in the driver, or None to leave the append to Spark.

        None when the batch has more than ``stream.driver_commit_rows`` rows,
        or when its rows turn out too large for the driver (its memory or
        ``spark.driver.maxResultSize``): nothing is committed yet, so Spark
        can still write them, and a batch of large records is not failed and
        replayed for ever. Any other failure fails the batch.
        """
        if rows > self.settings.stream.driver_commit_rows:
            return None
        try:
            collected = frame.toArrow()
        except Exception as exc:
            if not isinstance(exc, MemoryError) and not any(
                marker in str(exc) for marker in _TOO_LARGE_FOR_DRIVER
            ):
                raise
            log.warning(
                "stream %s batch %s: %s rows too large for the driver (%s), appended by Spark",
                self.stream,
                batch_id,
                sink,
                next(iter(str(exc).strip().splitlines()), type(exc).__name__),
                extra={"stream": self.stream, "batch_id": batch_id},
            )
            return None
        return _nullable(collected)

    def _judge(self, parsed: DataFrame, watermark: datetime | None) -> DataFrame:
        if watermark is None:
            return parsed
        late = F.col("reason").isNull() & (F.col("event_time") < F.lit(watermark))
        text = _late_message(watermark)
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
            .options(**spark_kafka_options(self.settings))
            .option("topic", topic_name(self.stream, "dlq"))
            .save()
        )

    def _silver(
        self,
        valid: DataFrame | pa.Table,
        batch_id: int,
        *,
        watermark: datetime | None,
        ids: pa.Table | None,
        cached: list[DataFrame],
    ) -> tuple[DataFrame | pa.Table, pa.Array]:
        """The batch's events that no earlier batch wrote, for silver.

        A valid event is not older than the watermark, so only an event of
        an earlier batch that is not older either can be its duplicate. The
        ids and event times of those stay in memory as Arrow between batches
        (read from silver only after a start or a failure): the batch's ids
        are checked against them in bulk, and the duplicates are dropped in
        Arrow (a collected batch) or by Spark. Judging against earlier batches only makes a
        replayed batch select the same events; the caller's append is
        idempotent per batch id.

        Args:
            valid: The batch's valid rows: collected (a small batch), then
                silver's rows are shaped in Arrow.
            batch_id: The batch.
            watermark: The watermark it is judged by.
            ids: The valid rows' ``event_id`` and ``event_time`` when no id
                repeats among them (the usual case: no deduplication within
                the batch); None to deduplicate (keeping each id's copy of the
                lowest Kafka partition and offset, in Arrow or in Spark).
            cached: The batch's cached frames (unpersisted when it ends): the
                deduplicated rows join them when persisted.

        Returns:
            The batch's silver rows that are fresh, for the append and gold:
            Arrow when ``valid`` is, else a DataFrame (the append collects or
            writes it); and their event ids.
        """
        uri = self.tables.silver(self.stream)
        rows: DataFrame | None = None
        valid_rows: pa.Table | None = None
        if isinstance(valid, pa.Table):
            valid_rows = valid
            if ids is None:
                order = [valid_rows["partition"], valid_rows["offset"]]
                valid_rows = valid_rows.filter(first_occurrences(valid_rows["event_id"], order))
            ids = valid_rows.select(["event_id", "event_time"])
        elif ids is None:
            rows = silver_rows(valid, self.spec, batch_id).persist()
            cached.append(rows)
            ids = rows.select("event_id", "event_time").toArrow()
        else:
            rows = silver_rows(valid, self.spec, batch_id, unique=True)
        seen = self._ids_in_memory(uri, batch_id, watermark, ids.schema)
        # The batch's ids are hashed, not the (many more) remembered ones: the few
        # remembered ids the batch repeats are found first.
        again = seen["event_id"].filter(pc.is_in(seen["event_id"], value_set=ids["event_id"]))
        if len(again):
            repeated = pc.is_in(ids["event_id"], value_set=again)
            if rows is not None:
                duplicates = self.spark.createDataFrame(ids.filter(repeated).select(["event_id"]))
                rows = rows.join(F.broadcast(duplicates), "event_id", "left_anti")
            elif valid_rows is not None:
                valid_rows = valid_rows.filter(pc.invert(repeated))
            ids = ids.filter(pc.invert(repeated))
        seen = pa.concat_tables([seen, ids.cast(seen.schema)])
        horizon = self._final_before()
        if horizon is not None:
            seen = _not_older(seen, "event_time", _instant(horizon))
        self._recent_ids = seen
        fresh = silver_of_parse(valid_rows, self.spec, batch_id) if rows is None else rows
        return fresh, ids["event_id"]

    def _ids_in_memory(
        self, uri: str, batch_id: int, after: datetime | None, schema: pa.Schema
    ) -> pa.Table:
        """Ids and times of earlier batches' events not older than ``after``."""
        if self._recent_ids is None:
            silver = small_tables.read_since(
                uri,
                "event_time",
                after,
                date_column="event_date",
                crypto=self.crypto,
                columns=[*schema.names, "batch_id"],
                inclusive=True,
            )
            earlier = silver.filter(pc.less(silver["batch_id"], batch_id))
            self._recent_ids = earlier.select(schema.names).cast(schema)
        return self._recent_ids

    def _gold(
        self, fresh: DataFrame | pa.Table, batch_id: int, watermark: datetime | None, *, events: int
    ) -> tuple[list[tuple[Any, ...]], int]:
        """Append the batch's pane partials, then remerge every window they touch.

        A batch collected in the driver (``fresh``, its fresh silver rows, is
        Arrow) is aggregated into pane partials and its windows merged in Arrow
        (:mod:`pulsecast.stream.arrow_gold`). A larger one is aggregated by
        Spark (one job), which merges the partials of every touched window,
        all windows at once (one job); both results are small and come back
        as Arrow. The partials later batches may still need (panes of windows
        that can still change) stay in memory between batches, read from the
        pane table only after a start or a failure. The pane append and the
        gold merges are committed from here through delta-rs (see
        :mod:`pulsecast.lake.small_tables`).

        Returns the gold rows written (over all windows) as warehouse rows,
        and the number of keys the batch's events have.
        """
        pane_schema, gold_schema = self._arrow_schemas
        in_driver = isinstance(fresh, pa.Table)
        if in_driver:
            new = pane_partials_of(
                fresh, numeric_fields(self.spec), self.pane_s, batch_id, pane_schema
            )
        else:
            # At most ``events`` rows: in one partition when few (_ONE_PARTITION_EVENTS).
            source = fresh.coalesce(1) if events <= _ONE_PARTITION_EVENTS else fresh
            new = _nullable(pane_partials(source, self.spec, self.pane_s, batch_id).toArrow())
        if new.num_rows == 0:
            return [], 0
        # A window may hold panes up to its size before a valid event's pane,
        # which itself may start up to a pane before the watermark.
        reach = timedelta(seconds=max(w.size_s for w in self.windows) + self.pane_s)
        recent = self._panes_in_memory(None if watermark is None else watermark - reach, new.schema)
        app_id = f"pulsecast-panes-{self.stream}"
        if small_tables.append_once(
            self.tables.panes(self.stream), new, app_id, batch_id, crypto=self.crypto
        ):
            recent = pa.concat_tables([recent, new])
        keys = pc.unique(new["key"])
        pane_starts: list[datetime] = pc.unique(new["pane_start"]).to_pylist()  # UTC
        touched_keys = pc.is_in(recent["key"], value_set=keys)
        needed = recent.filter(touched_keys)
        if needed.num_rows >= _FOLD_AT * len(needed.group_by(_PANE_ID).aggregate([])):
            # Each pane holds a partial per batch that had its events: fold them into
            # one, kept in memory instead, so what the windows' merge reads stops
            # growing with the batches a pane spans (the pane table keeps them all).
            if in_driver:
                needed = _nullable(fold_panes_of(needed, pane_schema))
            else:
                panes = self.spark.createDataFrame(needed, schema=self._pane_frame_schema)
                needed = _nullable(fold_panes(panes.coalesce(1)).toArrow())
            needed = needed.cast(recent.schema)
            recent = pa.concat_tables([recent.filter(pc.invert(touched_keys)), needed])
        final_before = self._final_before()
        # Every window the batch touched is rebuilt for every key it touched
        # (a rectangle: each window's rows are then replaced by predicate).
        touched = {w.name: window_starts(pane_starts, w) for w in self.windows}
        if in_driver:
            gold = pa.concat_tables(
                [
                    self._gold_of_panes(needed, w, touched[w.name], final_before)
                    for w in self.windows
                ]
            ).cast(gold_schema)
        else:
            gold = self._gold_by_spark(needed, touched, final_before)
        in_keys = ", ".join(small_tables.quote(k) for k in keys.to_pylist())
        for window in self.windows:
            starts = touched[window.name]
            predicate = (
                gold_partitions(starts[0], starts[-1]) + f" AND key IN ({in_keys})"
                f" AND window_start IN ({', '.join(small_tables.literal(s) for s in starts)})"
            )
            small_tables.replace(
                self.tables.gold(self.stream, window.name),
                gold.filter(pc.equal(gold["window_name"], window.name)),
                predicate,
                crypto=self.crypto,
            )
        # Later batches judge by a watermark at least this one's.
        horizon = self._final_before()
        if horizon is not None:
            recent = recent.filter(pc.greater(recent["pane_start"], _instant(horizon - reach)))
        self._recent_panes = recent
        columns = [c for c in WAREHOUSE_COLUMNS if c != "stream"]
        rows = [(self.stream, *row.values()) for row in gold.select(columns).to_pylist()]
        return rows, len(keys)

    def _gold_of_panes(
        self,
        panes: pa.Table,
        window: WindowSpec,
        starts: list[datetime],
        final_before: datetime | None,
    ) -> pa.Table:
        """Gold's rows of ``window`` starting at ``starts``, merged in Arrow."""
        rows = windows_of_panes(panes, window, starts)
        final = (
            pc.less_equal(rows["window_end"], _instant(final_before))
            if final_before is not None
            else pa.repeat(pa.scalar(False), rows.num_rows)
        )
        return (
            rows.append_column("window_name", pa.repeat(pa.scalar(window.name), rows.num_rows))
            .append_column("is_final", final)
            .append_column("window_date", pc.cast(rows["window_start"], pa.date32()))
            .append_column("window_hour", pc.cast(pc.hour(rows["window_start"]), pa.int32()))
        )

    def _gold_by_spark(
        self,
        panes: pa.Table,
        touched: dict[str, list[datetime]],
        final_before: datetime | None,
    ) -> pa.Table:
        """Gold's rows of every window in ``touched``, merged by Spark in one job."""
        # One partition: the merges then need no shuffle either.
        frame = self.spark.createDataFrame(panes, schema=self._pane_frame_schema).coalesce(1)
        frames = []
        for window in self.windows:
            starts = touched[window.name]
            size = timedelta(seconds=window.size_s)
            slice_ = frame.where(
                (F.col("pane_start") >= F.lit(starts[0]))
                & (F.col("pane_start") < F.lit(starts[-1] + size))
            )
            aggregates = windows_from_panes(slice_, window, one_partition=True).where(
                F.col("window_start").isin(starts)
            )
            frames.append(self._gold_shape(aggregates, window, final_before))
        return _nullable(functools.reduce(lambda a, b: a.unionByName(b), frames).toArrow())

    @functools.cached_property
    def _pane_frame_schema(self) -> StructType:
        """The pane table's Spark schema (as :func:`pane_partials` gives it)."""
        return self._empty_frames()[2].schema

    @functools.cached_property
    def _arrow_schemas(self) -> tuple[pa.Schema, pa.Schema]:
        """The pane partials' and gold rows' Arrow schemas, as Spark's collects give them."""
        panes = self._empty_frames()[2]
        window = self.windows[0]
        gold = self._gold_shape(windows_from_panes(panes, window), window, None)
        return (
            _nullable(panes.limit(0).toArrow()).schema,
            _nullable(gold.limit(0).toArrow()).schema,
        )

    def _empty_frames(self) -> tuple[DataFrame, DataFrame, DataFrame]:
        """Empty frames of Kafka's records, of silver's rows and of pane partials."""
        empty = self.spark.createDataFrame(
            [],
            "key binary, value binary, topic string, partition int, offset long, "
            "timestamp timestamp, timestampType int",
        )
        silver = silver_rows(parse_events(empty, self.stream, self.spec), self.spec, 0)
        return empty, silver, pane_partials(silver, self.spec, self.pane_s, 0)

    def _panes_in_memory(self, after: datetime | None, schema: pa.Schema) -> pa.Table:
        """The recent pane partials (read from the pane table the first time)."""
        if self._recent_panes is None:
            panes = small_tables.read_since(
                self.tables.panes(self.stream),
                "pane_start",
                after,
                date_column="pane_date",
                crypto=self.crypto,
            )
            self._recent_panes = panes.select(schema.names).cast(schema)
        return self._recent_panes

    def _final_before(self) -> datetime | None:
        """Windows ending at or before this instant are final (the watermark)."""
        if self._max_event_time is None:
            return None
        return self._max_event_time - self.lateness

    def _finalize(self) -> None:
        """Mark final the windows the watermark passed since the last call.

        Window ends are multiples of the pane, so nothing new is final until
        the watermark crosses a pane boundary: most batches skip the update.
        """
        final_before = self._final_before()
        if final_before is None:
            return
        previous = self._finalized_before
        pane = timedelta(seconds=self.pane_s)
        if previous is not None and (final_before - _EPOCH) // pane == (previous - _EPOCH) // pane:
            return
        for window in self.windows:
            predicate = f"window_end <= {small_tables.literal(final_before)}"
            if previous is not None:
                # Windows ending after ``previous`` start after this.
                since = previous - timedelta(seconds=window.size_s)
                predicate += (
                    f" AND {gold_partitions(since, final_before)}"
                    f" AND window_end > {small_tables.literal(previous)}"
                )
            small_tables.mark_final(
                self.tables.gold(self.stream, window.name), predicate, crypto=self.crypto
            )
        if self.warehouse is not None:
            self.warehouse.finalize(self.stream, before=final_before)
        self._finalized_before = final_before

    def finalize_open_windows(self) -> int:
        """Mark every open window of the stream final (the stream went quiet)."""
        with self.lock:
            if not self.stats.open_windows:
                return 0
            for window in self.windows:
                small_tables.mark_final(
                    self.tables.gold(self.stream, window.name), "TRUE", crypto=self.crypto
                )
            changed = self.warehouse.finalize(self.stream) if self.warehouse is not None else 0
            self.stats.open_windows = False
            log.info("stream %s idle: closed its open windows", self.stream)
            return changed


def _late_message(watermark: datetime) -> str:
    """What a record older than ``watermark`` (as silver's rows give it) is told."""
    return f"event_time: older than the watermark {watermark.isoformat()}Z"


def _correlation_column(parsed: DataFrame) -> list[Column]:
    """Each record's correlation ids (a list, usually of none or one), as ``_correlation``.

    Underscored: the verdicts are collected with it, next to payload
    fields of any other name. (A batch parsed in the driver keeps its
    headers instead, see :func:`_correlation_ids`.)

    Read from the Kafka header ``pulsecast-correlation-id`` (the source reads
    headers, and :func:`parse_events` carries them as ``kafka_headers``); a
    source without headers (tests, replays) gives no column.
    """
    if "kafka_headers" not in parsed.columns:
        return []
    ids = F.transform(
        F.filter("kafka_headers", lambda h: h["key"] == F.lit(CORRELATION_HEADER)),
        lambda h: h["value"].cast("string"),
    )
    return [ids.alias(_CORRELATION)]


def _correlation_ids(verdict: pa.Table) -> tuple[list[str], int]:
    """The distinct correlation ids among a batch's verdicts or collected parse.

    Read from the parse's ``kafka_headers``, or from the verdicts' correlation
    column (see :func:`_correlation_column`).

    Returns:
        The first :data:`MAX_LOGGED_IDS` ids in sorted order, and how many there are.
    """
    if "kafka_headers" in verdict.column_names:  # the records' headers, parsed by Arrow
        headers = pc.list_flatten(verdict["kafka_headers"])
        named = pc.equal(pc.struct_field(headers, "key"), pa.scalar(CORRELATION_HEADER))
        values = pc.drop_null(pc.unique(pc.struct_field(headers, "value").filter(named)))
        ids = pc.unique(
            pa.array([v.decode(errors="replace") for v in values.to_pylist()], pa.string())
        )
    elif _CORRELATION in verdict.column_names:
        ids = pc.unique(pc.drop_null(pc.list_flatten(verdict[_CORRELATION])))
    else:
        return [], 0
    return sorted(ids.to_pylist())[:MAX_LOGGED_IDS], len(ids)


class _Background:
    """A step of a micro-batch run on a thread of its own, joined before the batch ends.

    The thread inherits the batch's Spark job group (:class:`pyspark.InheritableThread`).
    """

    def __init__(self, step: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        from pyspark import InheritableThread

        self._error: BaseException | None = None
        self._ended_at = datetime.now(UTC)

        def run() -> None:
            try:
                step(*args, **kwargs)
            except BaseException as exc:  # re-raised by result(), in the batch's thread
                self._error = exc
            finally:
                self._ended_at = datetime.now(UTC)

        self._thread = InheritableThread(target=run, daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Until the step ends, however it ends."""
        self._thread.join()

    @property
    def error(self) -> BaseException | None:
        """What the step raised (None: nothing, or not ended yet)."""
        return self._error

    def result(self) -> datetime:
        """When the step ended; raises what it raised."""
        self.wait()
        if self._error is not None:
            raise self._error
        return self._ended_at


def query_name(stream: str) -> str:
    """The name of ``stream``'s query into the lake and the warehouse."""
    return f"pulsecast-{stream}"


def gold_partitions(first: datetime, last: datetime) -> str:
    """Gold's partition terms for windows starting from ``first`` to ``last``.

    Gold is partitioned by the UTC date and hour of ``window_start``: naming
    the hours lets a replace or ``mark_final`` read (and, in an encrypted
    lake, decrypt) only those hours' files instead of whole days. A naive
    time is local, as Spark's rows give it.
    """
    first, last = first.astimezone(UTC), last.astimezone(UTC)
    terms = f"window_date BETWEEN '{first.date()}' AND '{last.date()}'"
    hour = first.replace(minute=0, second=0, microsecond=0)
    hours: set[int] = set()
    while hour <= last and len(hours) < 24:
        hours.add(hour.hour)
        hour += timedelta(hours=1)
    if len(hours) < 24:
        terms += f" AND window_hour IN ({', '.join(str(h) for h in sorted(hours))})"
    return terms


def _trigger_time(query: StreamingQuery) -> float:
    """When the query's latest trigger started (epoch seconds; 0 before its first)."""
    progress = query.lastProgress
    if not progress:
        return 0.0
    return datetime.fromisoformat(str(progress["timestamp"])).timestamp()


def _not_older(table: pa.Table, column: str, moment: pa.Scalar) -> pa.Table:
    """The rows of ``table`` whose ``column`` is not older than ``moment``.

    Filtered chunk by chunk (a chunk per batch), so that only chunks that
    straddle ``moment`` are copied: chunks wholly older are dropped, wholly
    newer ones kept as they are.
    """
    kept = []
    for chunk in table.to_batches():
        times = chunk.column(column)
        bounds = pc.min_max(times).as_py()
        if bounds["max"] is None or bounds["max"] < moment.as_py():
            continue
        if times.null_count or bounds["min"] < moment.as_py():
            chunk = chunk.filter(pc.greater_equal(times, moment))
        kept.append(chunk)
    return pa.Table.from_batches(kept, table.schema)


def _nullable(rows: pa.Table) -> pa.Table:
    """``rows`` with every column nullable, as Delta tables made by Spark declare them."""
    return rows.cast(pa.schema([f.with_nullable(True) for f in rows.schema]))


def _local(moment: datetime | None) -> datetime | None:
    """An instant (as Arrow gives it) as a naive local time, as Spark's Python rows give it."""
    return None if moment is None else moment.astimezone().replace(tzinfo=None)


def _instant(moment: datetime) -> pa.Scalar:
    """A naive local time (as Spark's Python rows give it) as an Arrow instant."""
    return pa.scalar(moment.astimezone(UTC), pa.timestamp("us", tz="UTC"))


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
            s: BatchWriter(
                spark,
                settings,
                s,
                warehouse=self.warehouse,
                checkpoint=f"{settings.checkpoint_uri}/{s}",
            )
            for s in self.streams
        }
        self.queries: dict[str, StreamingQuery] = {}
        self._failures: dict[str, tuple[int, int]] = {}  # failures in a row, batches then
        self.scorers: dict[str, ScoreWriter] = {}
        if settings.ml.detector.enabled:
            self.scorers = {s: ScoreWriter(settings, s, self.warehouse) for s in self.streams}
        self.score_queries: dict[str, StreamingQuery] = {}
        self.retrainers = {
            s: Retrainer(spark, settings, s, scorer)
            for s, scorer in self.scorers.items()
            if scorer.forecaster is not None
        }
        self._listener: PrometheusStreamListener | None = None
        self._metrics_server: WSGIServer | None = None

    def start(self) -> None:
        """Create tables and the warehouse schema, then start each stream's queries.

        Per stream: the query into the lake and the warehouse, and, when
        ``ml.detector.enabled``, the scoring query behind it
        (:mod:`pulsecast.stream.scoring`).
        """
        if self._listener is None:
            self._listener = PrometheusStreamListener(self.settings)
            self.spark.streams.addListener(self._listener)
            self._metrics_server = serve_metrics(self.settings)
        if self.warehouse is not None:
            self.warehouse.migrate()
        if self.scorers:
            self._prepare_scoring()
        for stream, writer in self.writers.items():
            writer.ensure_tables()
            self._start_query(stream)
            if stream in self.scorers:
                self._start_scoring(stream)
            log.info("streaming %s", stream)

    def _start_scoring(self, stream: str) -> None:
        self.score_queries[stream] = start_scoring(
            self.spark, self.settings, stream, self.scorers[stream]
        )

    def _prepare_scoring(self) -> None:
        """The scores tables and the predictions and alerts topics, before any query starts."""
        from pulsecast.bus.admin import TopicAdmin

        specs = [
            s
            for s in topic_specs(self.settings, list(self.scorers))
            if s.name.rsplit(".", 1)[-1] in ("predictions", "alerts")
        ]
        TopicAdmin(self.settings).ensure(specs)
        for scorer in self.scorers.values():
            ensure_scores_table(scorer.uri)
            ensure_forecast_errors_table(scorer.errors_uri)

    def _start_query(self, stream: str) -> None:
        job = self.settings.stream
        source = (
            self.spark.readStream.format("kafka")
            .options(**spark_kafka_source_options(self.settings))
            .option("subscribe", topic_name(stream, "events"))
            .option("startingOffsets", job.starting_offsets)
            .option("maxOffsetsPerTrigger", job.max_offsets_per_trigger)
            .option("failOnDataLoss", _FAIL_ON_DATA_LOSS)
            .option("includeHeaders", "true")  # the correlation ids of the batch log
            .load()
        )
        self.queries[stream] = (
            source.writeStream.queryName(query_name(stream))
            .foreachBatch(self.writers[stream])
            .option("checkpointLocation", self.writers[stream].checkpoint)
            .trigger(processingTime=f"{job.trigger_interval_s:g} seconds")
            .start()
        )

    def poll(self) -> None:
        """Restart failed queries from their checkpoints; close windows of quiet streams.

        A query that fails (Kafka unreachable, a storage error) is restarted
        after a growing pause; its unfinished batch is replayed, and every sink
        is idempotent per batch. After ``stream.max_restarts`` failures with no
        batch completed in between, the job gives up.

        Raises:
            StreamJobError: A query failed more times in a row than allowed.
        """
        idle_s = self.settings.stream.idle_timeout_s
        for stream, query in list(self.queries.items()):
            error = query.exception()
            if error is not None:
                self._restart(stream, str(error).splitlines()[0])
            writer = self.writers[stream]
            if writer.stats.open_windows and time.monotonic() - writer.stats.last_data_at > idle_s:
                writer.finalize_open_windows()
        for stream, query in list(self.score_queries.items()):
            error = query.exception()
            if error is not None:
                self._restart_scoring(stream, str(error).splitlines()[0])
        for stream, retrainer in self.retrainers.items():
            if stream in self.score_queries:
                retrainer.poll()

    def _restart(self, stream: str, error: str) -> None:
        writer = self.writers[stream]
        self._restart_query(
            f"the {stream} query",
            stream,
            writer.stats.batches,
            error,
            self.queries[stream],
            lambda: self._start_query(stream),
        )
        writer.stats.restarts += 1

    def _restart_scoring(self, stream: str, error: str) -> None:
        """Restart a failed scoring query; if it keeps failing, stop scoring, not ingesting."""
        try:
            self._restart_query(
                f"the {stream} scoring query",
                f"{stream}-scores",
                self.scorers[stream].stats.batches,
                error,
                self.score_queries[stream],
                lambda: self._start_scoring(stream),
            )
        except StreamJobError as exc:
            log.error("%s; %s goes on without live scoring", exc, stream)
            del self.score_queries[stream]
            self.scorers[stream].close()

    def _restart_query(
        self,
        what: str,
        key: str,
        batches_done: int,
        error: str,
        query: StreamingQuery,
        start: Callable[[], None],
    ) -> None:
        """Restart a failed query after a growing pause; give up after too many in a row."""
        failures, batches = self._failures.get(key, (0, -1))
        if batches_done != batches:
            failures = 0  # a batch completed since the last failure
        failures += 1
        limit = self.settings.stream.max_restarts
        if failures > limit:
            msg = f"{what} failed {failures} times in a row: {error}"
            raise StreamJobError(msg)
        pause = min(2.0 ** (failures - 1), 30.0)
        log.warning(
            "%s failed (%s); restarting it from its checkpoint in %.0f s (%d of %d)",
            what,
            error,
            pause,
            failures,
            limit,
        )
        self._failures[key] = (failures, batches_done)
        with contextlib.suppress(Exception):
            query.stop()
        time.sleep(pause)
        start()

    def idle(self) -> bool:
        """Nothing left to do.

        No stream has had data for the idle timeout, none is busy, none holds
        open windows, and every scoring query is idle after a trigger that
        started once its stream's last batch was written (a scoring query
        learns of new silver data only when it triggers).
        """
        idle_s = self.settings.stream.idle_timeout_s
        now = time.monotonic()
        for stream, writer in self.writers.items():
            status = self.queries[stream].status if stream in self.queries else {}
            if status.get("isTriggerActive") or status.get("isDataAvailable"):
                return False
            if now - writer.stats.last_data_at <= idle_s or writer.stats.open_windows:
                return False
        for stream, query in self.score_queries.items():
            status = query.status
            if status.get("isTriggerActive") or status.get("isDataAvailable"):
                return False
            recent = self.writers[stream].stats.recent
            if recent and _trigger_time(query) <= recent[-1].warehouse_at:
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
        for stream, scorer in self.scorers.items():
            stats = self.writers[stream].stats
            stats.scored, stats.flagged = scorer.stats.scored, scorer.stats.flagged
            stats.forecasts, stats.model_version = (
                scorer.stats.forecasts,
                scorer.stats.model_version,
            )
            if stream in self.retrainers:
                stats.retrains = len(self.retrainers[stream].outcomes)
        return {s: w.stats for s, w in self.writers.items()}

    def stop(self) -> None:
        """Stop every query (a batch in progress completes first)."""
        try:
            for query in [*self.queries.values(), *self.score_queries.values()]:
                if query.isActive:
                    query.stop()
        finally:
            for scorer in self.scorers.values():
                scorer.close()
            for writer in self.writers.values():
                writer.close()
        self.queries.clear()
        self.score_queries.clear()
        if self._listener is not None:
            self.spark.streams.removeListener(self._listener)
            self._listener = None
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None

"""Live anomaly scoring: the online detector inside the streaming job, in Spark's state.

Per stream, a second streaming query reads silver (append-only Delta, so the
events are already validated, typed and deduplicated), summarises each
entity's events over event-time windows (``ml.detector.window_s``, closed
``ml.detector.delay_s`` after their end by the watermark) into series (each
numeric field's mean and the log of its standard deviation, and the event
count; see
:func:`scored_windows`), and feeds each (entity, series), in window order, to
its own :class:`~pulsecast.ml.detector.NoveltyDetector`. The detectors' states live in
Spark's per-key state (``transformWithState`` on the RocksDB state store), so
they are checkpointed with the query and survive a restart; no side channel
holds them.

Every scoring micro-batch is a few rows per entity and metric. Its sink:

* the lake table ``gold_<stream>_scores`` (an idempotent delta-rs append per
  batch, so a replayed batch is not written twice);
* with live forecasts, the lake table ``gold_<stream>_forecast_errors``: the
  forecasts whose horizon the batch closed, resolved by
  :class:`~pulsecast.ml.live_error.ForecastCheck` (an idempotent append per
  batch, before the scores', and compacted every ``compact_every`` appends, so
  a day is a few files, not one per batch; see :class:`ScoreWriter`);
* the warehouse tables ``pulsecast.anomaly_scores`` and ``pulsecast.alerts``
  (upserts keyed on stream, key, metric and window start);
* the topics ``<stream>.predictions`` (every score) and ``<stream>.alerts``
  (flags only), as JSON keyed by entity; a batch replayed after a crash may
  publish its messages again, and consumers recognise them by that key.

The time-of-day slots of the detector are UTC (the session time zone).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle
from pyspark.sql.types import BinaryType, StructField, StructType

from pulsecast.bus.topics import topic_name
from pulsecast.config import DetectorSettings, Settings
from pulsecast.lake.small_tables import CompactedAppends
from pulsecast.lake.tables import LakeTables
from pulsecast.ml.detector import DetectorParams, DetectorState, NoveltyDetector
from pulsecast.ml.live_error import (
    ERRORS_SCHEMA,
    ROWS_SCHEMA,
    DriftMonitor,
    DriftStatus,
    ForecastCheck,
    error_rows,
)
from pulsecast.monitoring.metrics import record_forecast_errors, record_scores
from pulsecast.security.lake_crypto import LakeCrypto
from pulsecast.stream.forecasting import FORECAST_SCHEMA, LiveForecaster
from pulsecast.stream.transforms import numeric_fields

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

    from pulsecast.bus.producer import EventProducer
    from pulsecast.warehouse.schema import Warehouse

__all__ = [
    "DETECTOR_NAME",
    "EVENTS_SERIES",
    "SCORE_COLUMNS",
    "STDDEV_SUFFIX",
    "DetectorProcessor",
    "ScoreWriter",
    "ensure_forecast_errors_table",
    "ensure_scores_table",
    "scored_windows",
    "scores_schema",
    "start_scoring",
    "window_series",
]

log = logging.getLogger(__name__)

#: Name and version of the detector written with every score.
DETECTOR_NAME = "novelty-1"

#: The series of each entity's event count per window.
EVENTS_SERIES = "events"
#: Suffix of the series of the log of a metric's standard deviation per window.
STDDEV_SUFFIX = ".log_stddev"
#: Added to a standard deviation before its log (a stuck sensor's is 0).
_LOG_FLOOR = 1e-12

#: What the stateful operator emits, one row per entity, metric and window.
SCORE_COLUMNS = (
    "key string, metric string, window_start timestamp, window_end timestamp, "
    "value double, count long, score double, flagged boolean"
)

_FILES_PER_TRIGGER = 200

#: How far before the scores table's newest window a restart looks for pending forecasts
#: (a horizon is at most an hour: ``ml.horizon_min``; a day leaves room for any model's).
SEED_LOOKBACK_S = 86_400
#: The forecast errors table's compaction packs small files into files of about this size;
#: larger ones are left alone, so a compaction rewrites at most one such file and the new ones.
ERRORS_FILE_BYTES = 8 << 20

_STATE = StructType([StructField("detector", BinaryType(), nullable=False)])


class DetectorProcessor(StatefulProcessor):
    """One detector per (entity, metric), its state in Spark's keyed state.

    Args:
        params: The detector's parameters.
    """

    def __init__(self, params: DetectorParams) -> None:
        self.params = params

    def init(self, handle: StatefulProcessorHandle) -> None:
        """Open the per-key state (called by Spark once per task)."""
        self.state = handle.getValueState("detector", _STATE)

    def handleInputRows(self, key: Any, rows: Iterator[Row], timerValues: Any) -> Iterator[Row]:
        """Score this batch's closed windows of one series, oldest first."""
        detector = self._detector(key)
        for row in sorted(rows, key=lambda r: r.window_s):
            if row.window_s <= detector.state.last_time_s:
                continue  # scored in an earlier batch: never score a window twice
            score = detector.score(float(row.window_s), float(row.value))
            yield Row(
                key=key[0],
                metric=key[1],
                window_start=row.window_start,
                window_end=row.window_end,
                value=float(row.value),
                count=int(row["observations"]),
                score=score,
                flagged=score >= 0.5,
            )
        self.state.update((detector.state.to_bytes(),))

    def _detector(self, key: Any) -> NoveltyDetector:
        """The series' detector from its saved state; a new one if that state does not fit."""
        saved = self.state.get() if self.state.exists() else None
        if not saved:
            return NoveltyDetector(self.params)
        try:
            return NoveltyDetector(self.params, DetectorState.from_bytes(bytes(saved[0])))
        except (ValueError, msgspec.DecodeError) as exc:
            # Parameters changed since the state was saved (slots, say): learn anew.
            log.warning("detector state of %s does not fit (%s); starting it afresh", key, exc)
            return NoveltyDetector(self.params)

    def close(self) -> None:
        """Nothing to release."""


def _stddev(metric: str) -> Column:
    """A window's standard deviation, 0 when within floating-point noise of its mean.

    Equal readings give 0 or a few 1e-16 depending on rounding; their log would
    differ by far more than that, so noise is flattened to 0 before the log.
    """
    std = F.stddev_samp(metric).cast("double")
    noise = F.abs(F.avg(metric)) * 1e-9 + _LOG_FLOOR
    return F.when(std <= noise, F.lit(0.0)).otherwise(std)


def window_series(silver: DataFrame, metrics: list[str], detector: DetectorSettings) -> DataFrame:
    """Silver rows → one row per entity, window and series, as live scoring sees them.

    The series of each window: ``events`` (its count), every metric's mean, and
    every metric's log standard deviation (``<metric>.log_stddev``).

    Returns:
        ``key``, ``metric``, ``window_start``, ``window_end``, ``window_s`` (epoch
        seconds of the start), ``value`` (may be null or NaN) and ``observations``.
    """
    window = F.window("event_time", f"{detector.window_s} seconds")
    stats = silver.groupBy("key", window.alias("w")).agg(
        F.count(F.lit(1)).alias("n_events"),
        *[F.avg(m).cast("double").alias(f"mean_{i}") for i, m in enumerate(metrics)],
        *[F.log(_stddev(m) + _LOG_FLOOR).alias(f"std_{i}") for i, m in enumerate(metrics)],
        *[F.count(m).alias(f"n_{i}") for i, m in enumerate(metrics)],
    )
    series = [(EVENTS_SERIES, F.col("n_events").cast("double"), F.col("n_events"))]
    for i, m in enumerate(metrics):
        series.append((m, F.col(f"mean_{i}"), F.col(f"n_{i}")))
        series.append((f"{m}{STDDEV_SUFFIX}", F.col(f"std_{i}"), F.col(f"n_{i}")))
    per_metric = F.explode(
        F.array(
            *[
                F.struct(
                    F.lit(name).alias("metric"),
                    value.alias("value"),
                    count.alias("observations"),
                )
                for name, value, count in series
            ]
        )
    )
    stats = stats.select(
        "key",
        F.col("w.start").alias("window_start"),
        F.col("w.end").alias("window_end"),
        F.unix_seconds(F.col("w.start")).alias("window_s"),
        per_metric.alias("m"),
    )
    columns = ["key", "m.metric", "window_start", "window_end", "window_s", "m.value"]
    return stats.select(*columns, "m.observations")


def scored_windows(
    silver: DataFrame, metrics: list[str], detector: DetectorSettings, *, delay_s: int
) -> DataFrame:
    """The streaming plan: silver rows → window statistics → one detector per series.

    Each entity's windows give several series, each with its own detector: the
    mean of every numeric field (named after the field: level shifts, drifts),
    the log of its standard deviation (``<field>.log_stddev``: spikes raise it,
    a stuck sensor drops it to 0, which the log turns into a far outlier; the
    log also evens out the skew of a standard deviation of a few readings, so
    chance highs are not mistaken for news) and the count of events
    (``events``: a machine that goes quiet).

    Args:
        silver: Silver rows (``key``, ``event_time`` and the numeric fields), streaming.
        metrics: The numeric fields to watch.
        detector: The detector's settings (window and parameters).
        delay_s: Event-time lateness a window waits for before it closes.

    Returns:
        A streaming DataFrame of :data:`SCORE_COLUMNS`.
    """
    rows = (
        window_series(silver.withWatermark("event_time", f"{delay_s} seconds"), metrics, detector)
        .where(F.col("value").isNotNull() & ~F.isnan("value"))
        .where(F.abs("value") < F.lit(float("inf")))
    )
    return rows.groupBy("key", "metric").transformWithState(
        DetectorProcessor(DetectorParams.from_settings(detector)), SCORE_COLUMNS, "Append", "None"
    )


@dataclass
class ScoreStats:
    """Running totals of one stream's scoring and forecasting."""

    batches: int = 0
    scored: int = 0
    flagged: int = 0
    forecasts: int = 0
    resolved: int = 0
    model_version: int | None = None
    drift: DriftStatus | None = None


@dataclass
class ScoreWriter:
    """The ``foreachBatch`` sink of one stream's scores (lake, warehouse, topics).

    With ``ml.live_forecasts`` it also forecasts each window mean with the
    registry's champion (:mod:`pulsecast.stream.forecasting`), checks earlier
    forecasts against the windows that followed them, appends the resolved
    ones to ``gold_<stream>_forecast_errors`` and watches the live error for
    drift (:mod:`pulsecast.ml.live_error`).

    The check lives in memory. On its first batch, and whenever a batch is not
    the one after the last it wrote in full (the query restarted and replays
    one, or the last batch failed), the writer takes the pending forecasts back
    from the scores table
    (:meth:`ForecastCheck.seed <pulsecast.ml.live_error.ForecastCheck.seed>`).
    The errors are appended before the scores, so the scores table never holds
    a window whose resolutions the errors table lacks: a batch replayed after
    a crash resolves what it resolved before, and its append is skipped if it
    was done.

    Args:
        compact_every: Compact the recent partitions of the errors table after
            this many appends (each append adds a file).
    """

    settings: Settings
    stream: str
    warehouse: Warehouse | None
    stats: ScoreStats = field(default_factory=ScoreStats)
    forecaster: LiveForecaster | None = None
    check: ForecastCheck | None = None
    drift: DriftMonitor | None = None
    compact_every: int = 50
    #: The lake's encryption (None: plaintext); taken from the settings.
    crypto: LakeCrypto | None = field(default=None, init=False, repr=False)
    #: The batch id that continues the check's state (None: take it from the scores table).
    _next_batch: int | None = field(default=None, init=False, repr=False)
    #: The errors table, appended once per batch and compacted every ``compact_every``.
    errors: CompactedAppends = field(init=False, repr=False)
    #: The producer of the predictions and alerts topics (made by the first publish).
    _producer: EventProducer | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.crypto = LakeCrypto.from_settings(self.settings)
        self.errors = CompactedAppends(
            self.errors_uri,
            f"pulsecast-forecast-errors-{self.stream}",
            "window_date",
            compact_every=self.compact_every,
            crypto=self.crypto,
            target_size=ERRORS_FILE_BYTES,
        )
        ml = self.settings.ml
        if ml.live_forecasts and self.forecaster is None:
            self.forecaster = LiveForecaster(self.settings, self.stream)
            self.check = ForecastCheck(step_s=ml.detector.window_s)
            self.drift = DriftMonitor(
                ratio=ml.drift_ratio,
                window_s=round(ml.drift_window_min * 60),
                min_errors=ml.drift_min_errors,
            )

    @property
    def uri(self) -> str:
        """The lake table of the scores."""
        return LakeTables.from_settings(self.settings).scores(self.stream)

    @property
    def errors_uri(self) -> str:
        """The lake table of the resolved forecasts."""
        return LakeTables.from_settings(self.settings).forecast_errors(self.stream)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """Write one scoring micro-batch everywhere (each sink idempotent or keyed)."""
        expected, self._next_batch = self._next_batch, None  # set again once all is written
        if self.check is not None and batch_id != expected:
            self.seed()
        rows = batch.toArrow()  # a few rows per entity and metric; computed once
        if rows.num_rows == 0:
            self._next_batch = batch_id + 1
            return
        rows, resolved = self._forecast(batch.sparkSession, rows)
        # The errors first: see the class's description.
        self.write_errors(resolved, batch_id)
        self._lake(rows, batch_id)
        records = rows.to_pylist()
        if self.warehouse is not None:
            self.warehouse.upsert_scores(self.stream, DETECTOR_NAME, records)
        self._publish(records)
        flagged = sum(1 for r in records if r["flagged"])
        record_scores(self.stream, scored=len(records), flagged=flagged)
        self.stats.batches += 1
        self.stats.scored += len(records)
        self.stats.flagged += flagged
        log.info(
            "scored %d windows of %s (batch %d), %d flagged",
            len(records),
            self.stream,
            batch_id,
            flagged,
        )
        self._next_batch = batch_id + 1

    def seed(self) -> None:
        """Take the check's pending forecasts back from the scores table (after a restart).

        Creates the errors table if it does not exist. The forecasts pending
        are those whose horizon has not passed as of the table's newest window
        (:meth:`ForecastCheck.seed <pulsecast.ml.live_error.ForecastCheck.seed>`),
        among its windows of the last :data:`SEED_LOOKBACK_S`.
        """
        from deltalake import DeltaTable

        from pulsecast.lake.small_tables import read_since

        if self.check is None:
            return
        ensure_forecast_errors_table(self.errors_uri)
        if not DeltaTable.is_deltatable(self.uri):
            return
        newest = _newest_window(self.uri, self.crypto)
        if newest is None:
            return
        after = newest - timedelta(seconds=SEED_LOOKBACK_S)
        written = read_since(
            self.uri, "window_start", after, date_column="window_date", crypto=self.crypto
        )
        newest_s = int(newest.timestamp())
        self.check.seed(_check_rows(written), newest_s=newest_s)
        log.info(
            "%s: %d forecasts pending as of %s taken back from the scores table",
            self.stream,
            self.check.pending,
            newest.isoformat(),
        )

    def write_errors(self, resolved: pa.Table, batch_id: int) -> None:
        """Append resolved forecasts to the errors table as ``batch_id`` (once); compact it.

        Args:
            resolved: Rows of :data:`~pulsecast.ml.live_error.RESOLVED_SCHEMA`.
            batch_id: The scoring batch that resolved them (an append of a
                batch id the table holds already is skipped).
        """
        if resolved.num_rows:
            self.errors.append(error_rows(resolved), batch_id)

    def _forecast(self, spark: SparkSession, rows: pa.Table) -> tuple[pa.Table, pa.Table]:
        """``rows`` with ``forecast``, ``horizon_min`` and ``model_version`` (null if none).

        Returns:
            Those rows, and the forecasts they resolve (:data:`RESOLVED_SCHEMA
            <pulsecast.ml.live_error.RESOLVED_SCHEMA>`; none without a champion).
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        from pulsecast.ml.live_error import RESOLVED_SCHEMA

        seconds = pc.divide(
            pc.cast(pc.cast(rows["window_start"], pa.timestamp("us", tz="UTC")), pa.int64()),
            1_000_000,
        )
        rows = rows.append_column("window_s", seconds)
        made = None if self.forecaster is None else self.forecaster.forecast(spark, rows)
        if made is None:
            made = FORECAST_SCHEMA.empty_table()
        joined = rows.join(made, ["key", "metric", "window_s"], join_type="left outer")
        self.stats.forecasts += made.num_rows
        champion = None if self.forecaster is None else self.forecaster.champion
        resolved = RESOLVED_SCHEMA.empty_table()
        if champion is not None and self.check is not None and self.drift is not None:
            self.stats.model_version = champion.version
            self.drift.watch(champion.version, champion.holdout_mae)
            means = joined.filter(pc.is_in(joined["metric"], pa.array(champion.model.spec.metrics)))
            resolved = self.check.add(
                means.append_column("horizon_s", pc.multiply(means["horizon_min"], 60)),
                # Any series' newest window closes horizons, as in forecast_vs_actual.
                newest_s=pc.max(joined["window_s"]).as_py(),
            )
            self.drift.add(resolved)
            for group in resolved.group_by("metric").aggregate([("abs_error", "list")]).to_pylist():
                record_forecast_errors(self.stream, group["metric"], group["abs_error_list"])
            self.stats.resolved += resolved.num_rows
            self.stats.drift = self.drift.status()
        return joined.drop_columns(["window_s"]), resolved

    def _lake(self, rows: pa.Table, batch_id: int) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        from pulsecast.lake.small_tables import append_once

        schema = scores_schema()
        table = rows.append_column(
            "window_date", pc.cast(rows["window_start"], pa.date32())
        ).append_column("detector", pa.array([DETECTOR_NAME] * rows.num_rows))
        # The table exists with these columns: StreamJob created or extended it.
        table = table.select(schema.names).cast(schema)
        append_once(
            self.uri, table, f"pulsecast-scores-{self.stream}", batch_id, crypto=self.crypto
        )

    def _publish(self, records: list[dict[str, Any]]) -> None:
        """Publish the batch's scores and flags, and wait until Kafka has them all.

        One producer serves every batch: a new one spends about half a second
        connecting before its first flush returns. After a failure it is shut
        and the next batch makes a new one (a producer's error count stays).
        """
        from pulsecast.bus.producer import EventProducer

        predictions = topic_name(self.stream, "predictions")
        alerts = topic_name(self.stream, "alerts")
        if self._producer is None:
            self._producer = EventProducer(self.settings, source="stream", principal="stream")
        producer = self._producer
        try:
            for record in records:
                message = json.dumps(_message(self.stream, record), allow_nan=False).encode()
                producer.produce_raw(predictions, message, record["key"])
                if record["flagged"]:
                    producer.produce_raw(alerts, message, record["key"])
            producer.flush()  # raises if any message was not delivered
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Shut the producer down (the job stops, or a publish failed)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):  # what it failed to deliver was reported
                producer.close(timeout_s=10)


def _message(stream: str, record: dict[str, Any]) -> dict[str, Any]:
    def instant(moment: datetime) -> str:
        aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        return aware.isoformat()

    return {
        "stream": stream,
        "key": record["key"],
        "metric": record["metric"],
        "window_start": instant(record["window_start"]),
        "window_end": instant(record["window_end"]),
        "value": record["value"] if math.isfinite(record["value"]) else None,
        "count": record["count"],
        "anomaly_score": record["score"],
        "flagged": record["flagged"],
        "detector": DETECTOR_NAME,
        "forecast": record["forecast"],
        "horizon_min": record["horizon_min"],
        "model_version": record["model_version"],
    }


def scores_schema() -> pa.Schema:
    """The columns of ``gold_<stream>_scores``."""
    import pyarrow as pa

    utc = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("key", pa.string()),
            ("metric", pa.string()),
            ("window_start", utc),
            ("window_end", utc),
            ("value", pa.float64()),
            ("count", pa.int64()),
            ("score", pa.float64()),
            ("flagged", pa.bool_()),
            ("window_date", pa.date32()),
            ("detector", pa.string()),
            ("forecast", pa.float64()),
            ("horizon_min", pa.int32()),
            ("model_version", pa.int64()),
        ]
    )


#: How a stream's scores and forecast errors tables end (LakeTables.scores, .forecast_errors).


def _newest_window(uri: str, crypto: LakeCrypto | None = None) -> datetime | None:
    """The start of the newest window in a scores table (None when it is empty).

    From the files' statistics in the Delta log; from the rows (decrypted with
    ``crypto``) when a file has none, as encrypted files never have.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    table = DeltaTable(uri)
    files = pa.table(table.get_add_actions(flatten=True))
    if files.num_rows == 0:
        return None
    column = "max.window_start"
    if column in files.column_names and files[column].null_count == 0:
        newest = pc.max(files[column]).as_py()
    else:
        dataset = table.to_pyarrow_dataset()
        if crypto is not None:
            dataset = crypto.readable(dataset)
        newest = pc.max(dataset.to_table(columns=["window_start"])[0]).as_py()
    if newest is None:
        return None
    moment: datetime = newest
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _check_rows(scores: pa.Table) -> pa.Table:
    """Rows of the scores table as :data:`~pulsecast.ml.live_error.ROWS_SCHEMA`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    micros = pc.cast(pc.cast(scores["window_start"], pa.timestamp("us", tz="UTC")), pa.int64())
    columns = {
        "key": scores["key"],
        "metric": scores["metric"],
        "window_s": pc.divide(micros, 1_000_000),
        "value": scores["value"],
        "count": scores["count"],
        "forecast": scores["forecast"],
        "horizon_s": pc.multiply(pc.cast(scores["horizon_min"], pa.int64()), 60),
        "model_version": scores["model_version"],
    }
    return pa.table(columns).cast(ROWS_SCHEMA)


#: Columns added to the scores table after its first release, with their Delta types.
_ADDED_COLUMNS = {"forecast": "double", "horizon_min": "integer", "model_version": "long"}


def ensure_forecast_errors_table(uri: str) -> None:
    """Create the forecast errors table (empty, partitioned by window date) if it does not exist."""
    from deltalake import DeltaTable, write_deltalake

    if not DeltaTable.is_deltatable(uri):
        empty = ERRORS_SCHEMA.empty_table()
        write_deltalake(uri, empty, partition_by=["window_date"], mode="ignore")


def ensure_scores_table(uri: str) -> None:
    """Create the scores table (empty, partitioned by window date), or add missing columns."""
    from deltalake import DeltaTable, write_deltalake
    from deltalake.schema import Field, PrimitiveType

    if not DeltaTable.is_deltatable(uri):
        schema = scores_schema()
        write_deltalake(uri, schema.empty_table(), partition_by=["window_date"], mode="ignore")
        return
    table = DeltaTable(uri)
    have = {f.name for f in table.schema().fields}
    missing = [Field(n, PrimitiveType(t)) for n, t in _ADDED_COLUMNS.items() if n not in have]
    if missing:
        table.alter.add_columns(missing)


def start_scoring(
    spark: SparkSession, settings: Settings, stream: str, writer: ScoreWriter
) -> StreamingQuery:
    """Start the scoring query of one stream (its checkpoint: ``<checkpoints>/<stream>-scores``)."""
    spec = settings.streams[stream]
    detector = settings.ml.detector
    delay_s = detector.delay_s
    if delay_s is None:
        delay_s = settings.stream.allowed_lateness_s
    silver = (
        spark.readStream.format("delta")
        # A new checkpoint on a long history reads it in steps, not in one batch.
        .option("maxFilesPerTrigger", _FILES_PER_TRIGGER)
        .load(LakeTables.from_settings(settings).silver(stream))
    )
    return (
        scored_windows(silver, numeric_fields(spec), detector, delay_s=delay_s)
        .writeStream.queryName(f"pulsecast-{stream}-scores")
        .foreachBatch(writer)
        .option("checkpointLocation", f"{settings.checkpoint_uri}/{stream}-scores")
        .trigger(processingTime=f"{detector.trigger_interval_s} seconds")
        .start()
    )

"""`pulsecast bench query`: latency of the dashboard's queries and the named analyses.

A benchmark of query time, not of ingestion: the lake is written in bulk (Spark
computes the rows with the streaming job's own transforms, delta-rs writes the
Delta tables), never pushed through Kafka. One stream (``telemetry`` by
default) gets, under a lake root of its own:

- ``bronze``: the Kafka records, as :func:`~pulsecast.stream.transforms.bronze_rows`
  shapes them; the events are the simulator's wire JSON (a fleet of
  ``entities`` machines, one reading every ``interval_s``, levels with daily and
  weekly cycles and noise, as :mod:`pulsecast.sources.simulator` models them),
  one record in ``invalid_every`` is out of range (rejected);
- ``silver``: the accepted events, through
  :func:`~pulsecast.stream.transforms.parse_events` and
  :func:`~pulsecast.stream.transforms.silver_rows`, ``batch_id`` from the
  Kafka timestamp (``batch_s`` micro-batches);
- ``gold_<stream>_1m``: the tumbling window of gold, through
  :func:`~pulsecast.stream.transforms.pane_partials` and
  :func:`~pulsecast.stream.transforms.windows_from_panes`;
- ``gold_<stream>_scores``: one row per entity, series and detector window
  (:func:`~pulsecast.stream.scoring.scores_schema`), the series as live
  scoring computes them; the scores themselves are drawn (mostly low, about
  one in 200 flagged), and every metric's mean gets a forecast of the next
  ``ml.horizon_min`` minutes, since the benchmark times queries, not the
  detector;
- ``gold_<stream>_forecast_errors``: those forecasts resolved against the
  windows after them, as the streaming job appends them; computed once from
  the built scores by the analysis ``forecast_vs_actual`` (on DuckDB), whose
  rule the job's is.

File layout as a lake optimized daily (docs/lake.md) looks: the last
``streamed_hours`` of bronze and silver hold one file per micro-batch and
partition, each committed alone with its write time set to the end of its
batch (as the job leaves them; ``throughput`` and ``freshness`` read those
times), older hours one compacted file per partition. Gold and scores are
compacted, one commit per day, then optimized as ``pulsecast lake optimize``
does (:func:`pulsecast.lake.maintenance.optimize`: the scores Z-ordered by key
and series). The lake is reused when its marker file says it holds at least
the events asked for.

Then every dashboard panel's query (the analyses the panels of
:mod:`pulsecast.dashboard.panels` run, with their parameters) and every named
analysis (with its defaults) runs ``repeat`` times after one warm-up run, on
one :class:`~pulsecast.analytics.DuckDBEngine` kept open (as the dashboard
keeps it) and on Spark SQL; "now" is the lake's newest event. Needs Spark and
the JVM artifacts of ``pulsecast setup``; no server.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pulsecast.analytics import analyses, run_analysis
from pulsecast.config import Settings
from pulsecast.errors import PulsecastError
from pulsecast.lake.tables import (
    BRONZE_PARTITIONS,
    GOLD_PARTITIONS,
    SILVER_PARTITIONS,
    LakeTables,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession

    from pulsecast.analytics.sql import SqlEngine

__all__ = [
    "DEFAULT_ENGINES",
    "ENGINES",
    "MARKER",
    "BenchLake",
    "QuerySpec",
    "build_lake",
    "dashboard_queries",
    "ensure_lake",
    "named_queries",
    "percentile",
    "run_query_benchmark",
    "set_write_times",
    "time_queries",
]

Say = Callable[[str], None]

#: The engines compared, in the order they run: DuckDB, Spark SQL, and DuckDB
#: reading every table as a ``deltalake`` Arrow dataset (its reader before
#: 2026-11-29, for comparison; not run unless asked for).
ENGINES = ("duckdb", "spark", "duckdb-arrow")
#: The engines run by default.
DEFAULT_ENGINES = ("duckdb", "spark")
#: The file under the lake root that describes a finished build.
MARKER = "query-bench.json"
#: The simulated stream's payload: entity id and four metrics (the telemetry stream's).
_METRICS = ("temperature_c", "cpu_util", "vibration_mm_s", "power_kw")
#: Per metric: level range, daily amplitude range, and the bounds values are clipped to
#: (the simulator's; without the clip a low cpu_util would be rejected as out of range).
_MODEL = {
    "temperature_c": ((55.0, 70.0), (3.0, 8.0), (-50.0, 200.0)),
    "cpu_util": ((25.0, 55.0), (8.0, 20.0), (0.0, 100.0)),
    "vibration_mm_s": ((2.0, 5.0), (0.3, 1.0), (0.0, 1000.0)),
    "power_kw": ((20.0, 60.0), (4.0, 12.0), (0.0, 10000.0)),
}
_OUT_OF_RANGE = 180.0  # cpu_util above its maximum of 100: rejected by validation
_US = 1_000_000


class QueryBenchError(PulsecastError):
    """The benchmark's lake cannot be built or used."""


@dataclass(frozen=True)
class BenchLake:
    """A built benchmark lake, as its marker file records it.

    Attributes:
        root: The lake's root folder.
        stream: The stream it holds.
        events: Events in silver (accepted).
        records: Kafka records in bronze (accepted and rejected).
        entities: Machines.
        interval_s: Event time between one machine's readings.
        start: First event time.
        end: Newest event time ("now" of the queries).
        batch_s: Micro-batch length (Kafka time).
        streamed_hours: Hours before ``end`` written one file per micro-batch.
        rows: Rows per table (SQL name).
        files: Data files per table.
        bytes: Bytes of data files per table.
        build_s: How long the build took.
    """

    root: Path
    stream: str
    events: int
    records: int
    entities: int
    interval_s: float
    start: datetime
    end: datetime
    batch_s: int
    streamed_hours: float
    rows: dict[str, int]
    files: dict[str, int]
    bytes: dict[str, int]
    build_s: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description (times as ISO text)."""
        data = asdict(self)
        data.update(root=str(self.root), start=self.start.isoformat(), end=self.end.isoformat())
        return data

    @classmethod
    def read(cls, root: Path) -> BenchLake | None:
        """The lake described by ``root``'s marker file; None when there is none."""
        marker = root / MARKER
        if not marker.is_file():
            return None
        data = json.loads(marker.read_text())
        data.update(
            root=root,
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
        )
        return cls(**data)

    def settings(self, settings: Settings) -> Settings:
        """``settings`` with this lake as the lake."""
        lake = settings.lake.model_copy(update={"uri": self.root.resolve().as_uri()})
        return settings.model_copy(update={"lake": lake})


@dataclass(frozen=True)
class QuerySpec:
    """One query of the benchmark: a named analysis with its parameters."""

    analysis: str
    params: Mapping[str, object]


# -- the queries -------------------------------------------------------------------------------


def dashboard_queries(stream: str, *, key: str, metric: str) -> dict[str, QuerySpec]:
    """The analyses the dashboard's panels run, with the panels' default parameters.

    Mirrors :class:`pulsecast.dashboard.panels.DashboardData` (a unit test
    checks that every panel's call is here): the overview (last hour), the
    scored series, the entity view of ``key``'s ``metric``, the alert feed,
    the model view and the data-quality view (last 24 hours).
    """
    hour = {"stream": stream, "since": "1h"}
    day = {"stream": stream, "since": "24h"}
    one = {**day, "key": key, "metric": metric}
    return {
        "dashboard.overview.throughput": QuerySpec("throughput", hour),
        "dashboard.overview.data_quality": QuerySpec("data_quality", hour),
        "dashboard.overview.freshness": QuerySpec("freshness", hour),
        "dashboard.series.scored_series": QuerySpec("scored_series", day),
        "dashboard.entity.recent_scores": QuerySpec("recent_scores", one),
        "dashboard.entity.forecast_error": QuerySpec("forecast_error", one),
        "dashboard.alerts.recent_scores": QuerySpec(
            "recent_scores", {**day, "min_score": 0.5, "limit": 50}
        ),
        "dashboard.models.forecast_error": QuerySpec("forecast_error", day),
        "dashboard.quality.data_quality": QuerySpec("data_quality", day),
        "dashboard.quality.rejections": QuerySpec("rejections", day),
        "dashboard.quality.freshness": QuerySpec("freshness", day),
    }


def named_queries(stream: str) -> dict[str, QuerySpec]:
    """Every named analysis with its default parameters (seven days, every entity)."""
    found: dict[str, QuerySpec] = {}
    for name, analysis in analyses().items():
        params = {p.name: stream for p in analysis.params if p.type == "stream"}
        found[f"named.{name}"] = QuerySpec(name, params)
    return found


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linearly interpolated."""
    ordered = sorted(values)
    if not ordered:
        msg = "percentile of no values"
        raise ValueError(msg)
    at = q * (len(ordered) - 1)
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def time_queries(
    settings: Settings,
    engines: Sequence[SqlEngine],
    queries: Mapping[str, QuerySpec],
    *,
    repeat: int,
    now: datetime,
    say: Say = lambda _t: None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Run each query once per engine (warm-up, not counted), then ``repeat`` times.

    The engines take turns on each run of a query, so that they see the same
    load on a shared machine.

    Returns:
        Per query name, per engine name: ``p50_ms``, ``p95_ms`` and ``rows``
        (of the last run), or ``error`` with the reason when the query failed
        on that engine (the others still run).
    """
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name, spec in queries.items():
        times: dict[str, list[float]] = {engine.name: [] for engine in engines}
        rows: dict[str, int] = {}
        errors: dict[str, str] = {}
        for run in range(repeat + 1):
            for engine in engines:
                if engine.name in errors:
                    continue
                started = time.perf_counter()
                try:
                    result = run_analysis(
                        settings, spec.analysis, dict(spec.params), engine=engine, now=now
                    )
                except Exception as exc:  # QueryError, or a JVM error: reported, not fatal
                    errors[engine.name] = _one_line(exc)
                    say(f"  {engine.name:<12} {name:<40} error: {errors[engine.name]}")
                    continue
                if run:
                    times[engine.name].append(1000 * (time.perf_counter() - started))
                rows[engine.name] = result.table.num_rows
        results[name] = {}
        for engine in engines:
            if engine.name in errors:
                results[name][engine.name] = {"error": errors[engine.name]}
                continue
            figures = {
                "p50_ms": round(percentile(times[engine.name], 0.5), 1),
                "p95_ms": round(percentile(times[engine.name], 0.95), 1),
                "rows": rows[engine.name],
            }
            results[name][engine.name] = figures
            say(
                f"  {engine.name:<12} {name:<40} p50 {figures['p50_ms']:>9.1f} ms  "
                f"p95 {figures['p95_ms']:>9.1f} ms  ({figures['rows']} rows)"
            )
    return results


# -- the lake ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """Where each record sits: entity = id mod entities, tick = id div entities."""

    events: int
    records: int
    entities: int
    interval_us: int
    start_us: int
    invalid_every: int
    batch_s: int
    partitions: int

    @property
    def ticks(self) -> int:
        return -(-self.records // self.entities)

    @property
    def end_us(self) -> int:
        return self.start_us + (self.ticks - 1) * self.interval_us


def _records_for(events: int, invalid_every: int) -> int:
    """Records such that, with every ``invalid_every``-th one rejected, ``events`` remain."""
    if invalid_every <= 1:
        return events
    return events + (events - 1) // (invalid_every - 1)


def _shape(
    events: int,
    *,
    days: float,
    interval_s: float,
    invalid_every: int,
    batch_s: int,
    partitions: int,
    end: datetime,
) -> _Shape:
    records = _records_for(events, invalid_every)
    interval_us = round(interval_s * _US)
    ticks_wanted = max(1, int(days * 86_400 * _US // interval_us))
    entities = max(1, -(-records // ticks_wanted))
    ticks = -(-records // entities)
    # Whole hours back from ``end``'s hour, so micro-batches and hours line up.
    end_hour = int(end.timestamp()) // 3600 * 3600 * _US
    start_us = end_hour - math.ceil(ticks * interval_us / (3600 * _US)) * 3600 * _US
    return _Shape(
        events, records, entities, interval_us, start_us, invalid_every, batch_s, partitions
    )


def _unit(*parts: Column | str, salt: int) -> Column:
    """A deterministic number in [0, 1) from a hash of ``parts``."""
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(*parts, F.lit(salt)), F.lit(1_000_003)) / 1_000_003.0


def _between(low: float, high: float, unit: Column) -> Column:
    return unit * (high - low) + low


def _raw_records(spark: SparkSession, shape: _Shape, stream: str) -> DataFrame:
    """The Kafka source rows of the stream's topic: key, value (wire JSON), coordinates."""
    from pyspark.sql import functions as F

    n = shape.entities
    rid = F.col("id")
    entity = rid % n
    tick = F.floor(rid / n)
    event_us = F.lit(shape.start_us) + tick * shape.interval_us
    # The producer stamps ingest time ~0.2-0.7 s after the reading; Kafka a few ms later.
    ingest_us = event_us + 200_000 + F.floor(_unit(rid, salt=1) * 500_000)
    kafka_us = ingest_us + 3_000
    seconds = event_us / _US
    day = 2 * math.pi * seconds / 86_400
    week = day / 7
    phase = _unit(entity, salt=2) * 2 * math.pi
    payload: dict[str, Column] = {}
    for i, metric in enumerate(_METRICS):
        (lo, hi), (dlo, dhi), (floor, ceiling) = _MODEL[metric]
        level = _between(lo, hi, _unit(entity, salt=10 + i))
        daily = _between(dlo, dhi, _unit(entity, salt=20 + i))
        noise = (_unit(rid, salt=30 + i) + _unit(rid, salt=40 + i) - 1.0) * daily * 0.25
        value = level + daily * F.sin(day + phase) + 0.3 * daily * F.sin(week + phase) + noise
        clipped = F.least(F.greatest(value, F.lit(floor)), F.lit(ceiling))
        payload[metric] = F.round(clipped, 3)
    if shape.invalid_every > 1:
        invalid = rid % shape.invalid_every == shape.invalid_every - 1
        payload["cpu_util"] = F.when(invalid, F.lit(_OUT_OF_RANGE)).otherwise(payload["cpu_util"])
    key = F.format_string("m-%04d", entity)

    def stamp(us: Column) -> Column:
        return F.date_format(F.timestamp_micros(us), "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'")

    value = F.format_string(
        '{"event_id":"%s","stream":"%s","key":"%s","event_time":"%s","ingest_time":"%s",'
        '"payload":{"entity_id":"%s","temperature_c":%s,"cpu_util":%s,"vibration_mm_s":%s,'
        '"power_kw":%s}}',
        F.substring(F.sha2(F.concat_ws("/", F.lit(stream), rid.cast("string")), 256), 1, 32),
        F.lit(stream),
        key,
        stamp(event_us),
        stamp(ingest_us),
        key,
        *[payload[m].cast("string") for m in _METRICS],
    )
    p = shape.partitions
    partition = entity % p
    per_partition = F.floor((F.lit(n) - partition + p - 1) / p)  # machines in the partition
    return spark.range(shape.records).select(
        key.cast("binary").alias("key"),
        value.cast("binary").alias("value"),
        F.lit(f"{stream}.events").alias("topic"),
        partition.cast("int").alias("partition"),
        (tick * per_partition + F.floor(entity / p)).cast("long").alias("offset"),
        F.timestamp_micros(kafka_us).alias("timestamp"),
    )


def _batch_id(shape: _Shape, kafka_time: Column) -> Column:
    from pyspark.sql import functions as F

    return F.floor(
        (F.unix_micros(kafka_time) - F.lit(shape.start_us)) / (shape.batch_s * _US)
    ).cast("long")


def _score_rows(silver: DataFrame, settings: Settings, metrics: list[str]) -> DataFrame:
    """The scores table's rows: live scoring's series per window, drawn scores, forecasts."""
    from pyspark.sql import functions as F

    from pulsecast.stream.scoring import DETECTOR_NAME, window_series

    rows = window_series(silver, metrics, settings.ml.detector).withColumnRenamed(
        "observations", "count"
    )
    # Mostly low scores; a score of 0.5 or more (a flag) about once in 200 windows.
    score = F.pow(_unit("key", "metric", "window_start", salt=50), 138.0)
    is_metric = F.col("metric").isin(*metrics)
    forecast_noise = (_unit("key", "metric", "window_start", salt=51) - 0.5) * F.abs(F.col("value"))
    return rows.select(
        "key",
        "metric",
        "window_start",
        "window_end",
        "value",
        F.col("count").cast("long").alias("count"),
        score.alias("score"),
        (score >= 0.5).alias("flagged"),
        F.to_date("window_start").alias("window_date"),
        F.lit(DETECTOR_NAME).alias("detector"),
        F.when(is_metric, F.col("value") + 0.02 * forecast_noise).alias("forecast"),
        F.when(is_metric, F.lit(settings.ml.horizon_min)).cast("int").alias("horizon_min"),
        F.when(is_metric, F.lit(1)).cast("long").alias("model_version"),
    )


def _gold_rows(silver: DataFrame, settings: Settings, stream: str, final_before: datetime) -> Any:
    """Gold of the first tumbling window, as the job computes it from panes."""
    from pulsecast.stream.job import BatchWriter
    from pulsecast.stream.transforms import pane_partials, pane_seconds, windows_from_panes

    windows = settings.stream.windows
    window = next(w for w in windows if w.slide_s in (None, w.size_s))
    panes = pane_partials(silver, settings.streams[stream], pane_seconds(windows), 0)
    return window.name, BatchWriter._gold_shape(
        windows_from_panes(panes, window), window, final_before
    )


@dataclass
class _Writer:
    """Writes Arrow rows into Delta tables with delta-rs and sets the files' write times."""

    write_times: dict[str, dict[int, datetime]] = field(default_factory=dict)
    _tables: dict[str, Any] = field(default_factory=dict)

    def write(self, uri: str, rows: pa.Table, partitions: Sequence[str], written: datetime) -> None:
        """Append ``rows`` to the table at ``uri`` in one commit whose files say ``written``."""
        from deltalake import DeltaTable, PostCommitHookProperties, write_deltalake

        if rows.num_rows == 0:
            return
        # The table object is kept: it follows its own commits, instead of reading the log anew.
        table = self._tables.get(uri)
        write_deltalake(
            uri if table is None else table,
            rows,
            partition_by=list(partitions),
            mode="append",
            post_commithook_properties=PostCommitHookProperties(
                create_checkpoint=False, cleanup_expired_logs=False
            ),
        )
        if table is None:
            table = self._tables[uri] = DeltaTable(uri)
        self.write_times.setdefault(uri, {})[table.version()] = written

    def finish(self) -> None:
        """Set every commit's files' write time, then checkpoint each table."""
        from deltalake import DeltaTable

        for uri, times in self.write_times.items():
            set_write_times(Path(uri.removeprefix("file://")), times)
            DeltaTable(uri).create_checkpoint()


def _forecast_error_rows(scores: Any, settings: Settings, stream: str) -> Any:
    """The forecast errors table's rows from the scores' (an Arrow dataset), as a dataset.

    The analysis ``forecast_vs_actual`` over every score, on DuckDB: the
    forecasts whose horizon has passed as of the newest window, resolved as
    the streaming job resolves them.
    """
    import duckdb
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from pulsecast.analytics.named import get_analysis, render
    from pulsecast.analytics.sql import prepare_duckdb
    from pulsecast.ml.live_error import ERRORS_SCHEMA

    sql = render(
        get_analysis("forecast_vs_actual"),
        settings,
        {"stream": stream, "since": "min", "until": "max"},
    )
    con = duckdb.connect()
    try:
        prepare_duckdb(con)
        con.register(f"gold_{stream}_scores", scores)
        rows = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    rows = rows.append_column("window_date", pc.cast(rows["window_start"], "date32"))
    return ds.dataset(rows.select(ERRORS_SCHEMA.names).cast(ERRORS_SCHEMA))


def _scratch(frame: DataFrame, path: Path) -> Any:
    """``frame`` written once as Parquet, opened as an Arrow dataset."""
    import pyarrow.dataset as ds

    # Micros with a UTC adjustment (not INT96), so Arrow reads UTC timestamps.
    frame.sparkSession.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    frame.write.mode("overwrite").parquet(str(path))
    return ds.dataset(str(path), format="parquet")


def _table_stats(uri: str) -> tuple[int, int, int]:
    """Rows, files and bytes of a Delta table."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    actions = pa.table(DeltaTable(uri).get_add_actions(flatten=True))
    return (
        int(pc.sum(actions["num_records"]).as_py() or 0),
        actions.num_rows,
        int(pc.sum(actions["size_bytes"]).as_py() or 0),
    )


def build_lake(
    spark: SparkSession,
    settings: Settings,
    root: Path,
    *,
    events: int,
    stream: str = "telemetry",
    days: float = 7.0,
    interval_s: float = 10.0,
    batch_s: int = 60,
    streamed_hours: float = 12.0,
    invalid_every: int = 1000,
    end: datetime | None = None,
    say: Say = lambda _t: None,
) -> BenchLake:
    """Write the benchmark's lake under ``root`` (replacing what is there); see the module.

    Args:
        spark: The Spark session that computes the rows.
        settings: Windows, detector and forecast horizon, the stream's schema.
        root: The lake's root folder.
        events: Events in silver (bronze has one rejected record more in ``invalid_every``).
        stream: The stream (its schema must be the telemetry stream's).
        days: Days of event time the events should span (machines are added to fit).
        interval_s: Event time between one machine's readings.
        batch_s: Micro-batch length, seconds of Kafka time.
        streamed_hours: Hours before the newest event written one file per micro-batch.
        invalid_every: One record in this many is rejected (0: none).
        end: Around when the newest event is (default: now).
        say: Progress lines.

    Raises:
        QueryBenchError: The stream is not the telemetry stream's shape.
    """
    import shutil

    import pyarrow.dataset as ds
    from pyspark.sql import functions as F

    from pulsecast.lake.maintenance import optimize
    from pulsecast.ml.live_error import ERRORS_SCHEMA
    from pulsecast.stream.scoring import scores_schema
    from pulsecast.stream.transforms import bronze_rows, numeric_fields, parse_events, silver_rows

    spec = settings.streams.get(stream)
    if spec is None or list(spec.fields) != ["entity_id", *_METRICS]:
        msg = f"stream {stream!r} must have the telemetry stream's fields (entity_id, {_METRICS})"
        raise QueryBenchError(msg)
    started = time.monotonic()
    shape = _shape(
        events,
        days=days,
        interval_s=interval_s,
        invalid_every=invalid_every,
        batch_s=batch_s,
        partitions=spec.partitions or settings.kafka.partitions,
        end=end or datetime.now(UTC),
    )
    first = datetime.fromtimestamp(shape.start_us / _US, UTC)
    newest = datetime.fromtimestamp(shape.end_us / _US, UTC)
    say(
        f"building a lake of {events:,} events ({shape.records:,} records): "
        f"{shape.entities} machines every {interval_s:g} s, {first:%Y-%m-%d %H:%M} "
        f"to {newest:%Y-%m-%d %H:%M} UTC, in {root}"
    )
    if root.exists():
        shutil.rmtree(root)
    scratch = root / "_scratch"
    tables = LakeTables(root.resolve().as_uri())

    raw = _raw_records(spark, shape, stream)
    bronze = _scratch(bronze_rows(raw), scratch / "bronze")
    say(f"  bronze rows computed ({time.monotonic() - started:.0f} s)")
    as_raw = spark.read.parquet(str(scratch / "bronze")).withColumnRenamed(
        "kafka_timestamp", "timestamp"
    )
    valid = parse_events(as_raw, stream, spec).where(F.col("reason").isNull())
    silver_frame = silver_rows(valid, spec, 0).withColumn(
        "batch_id", _batch_id(shape, F.col("ingest_time") + F.expr("INTERVAL 3 MILLISECONDS"))
    )
    silver = _scratch(silver_frame, scratch / "silver")
    say(f"  silver rows computed ({time.monotonic() - started:.0f} s)")
    silver_back = spark.read.parquet(str(scratch / "silver"))
    lateness = timedelta(seconds=settings.stream.allowed_lateness_s)
    window_name, gold_frame = _gold_rows(silver_back, settings, stream, newest - lateness)
    gold = _scratch(gold_frame, scratch / "gold")
    scores = _scratch(_score_rows(silver_back, settings, numeric_fields(spec)), scratch / "scores")
    say(f"  gold and scores computed ({time.monotonic() - started:.0f} s)")
    errors = _forecast_error_rows(scores, settings, stream)
    say(f"  forecast errors computed ({time.monotonic() - started:.0f} s)")

    writer = _Writer()
    streamed_from = newest - timedelta(hours=streamed_hours)
    delay = timedelta(seconds=1.5)  # a micro-batch's files land this long after it closes
    plan = [
        (tables.bronze(stream), bronze, BRONZE_PARTITIONS, "kafka_timestamp", None),
        (tables.silver(stream), silver, SILVER_PARTITIONS, "ingest_time", None),
        (tables.gold(stream, window_name), gold, GOLD_PARTITIONS, "window_start", None),
        (tables.scores(stream), scores, ("window_date",), "window_start", scores_schema()),
    ]
    plan.append(
        (tables.forecast_errors(stream), errors, ("window_date",), "window_start", ERRORS_SCHEMA)
    )
    days_total = math.ceil((shape.end_us - shape.start_us) / (86_400 * _US)) + 1
    for uri, data, partitions, time_column, schema in plan:
        streamed = uri in (tables.bronze(stream), tables.silver(stream))
        compacted_until = streamed_from if streamed else newest + timedelta(days=1)
        for d in range(days_total):
            low = first + timedelta(days=d)
            high = min(low + timedelta(days=1), compacted_until)
            if high <= low:
                break
            rows = data.to_table(
                filter=(ds.field(time_column) >= low) & (ds.field(time_column) < high)
            )
            if schema is not None:
                rows = rows.select(schema.names).cast(schema)
            # Compacted after the day ended (a daily `pulsecast lake optimize`).
            writer.write(uri, rows, partitions, min(high, newest) + timedelta(hours=1))
        if streamed:
            _write_batches(writer, uri, data, partitions, shape, streamed_from, delay)
        say(
            f"  {uri.rsplit('/', 2)[-2]}/{uri.rsplit('/', 1)[-1]} written "
            f"({time.monotonic() - started:.0f} s)"
        )
    writer.finish()
    # As a daily `pulsecast lake optimize` leaves them: the scores Z-ordered by key and series.
    lake_settings = settings.model_copy(
        update={"lake": settings.lake.model_copy(update={"uri": root.resolve().as_uri()})}
    )
    optimize(spark, lake_settings, streams=[stream], zones=["gold"])
    say(f"  gold optimized ({time.monotonic() - started:.0f} s)")
    shutil.rmtree(scratch)
    return _finish(root, shape, stream, newest, first, streamed_hours, started, tables, window_name)


def _write_batches(
    writer: _Writer,
    uri: str,
    data: Any,
    partitions: Sequence[str],
    shape: _Shape,
    since: datetime,
    delay: timedelta,
) -> None:
    """The streamed hours: one commit per micro-batch, written when the batch closed."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    kafka_time = "kafka_timestamp" if "kafka_timestamp" in data.schema.names else "ingest_time"
    rows = data.to_table(filter=ds.field(kafka_time) >= since)
    if rows.num_rows == 0:
        return
    micros = pc.cast(rows[kafka_time], "int64")
    if kafka_time == "ingest_time":
        micros = pc.add(micros, 3_000)
    batch = pc.floor(pc.divide(pc.subtract(micros, shape.start_us), float(shape.batch_s * _US)))
    batch = pc.cast(batch, "int64")
    rows = rows.append_column("_batch", batch).sort_by("_batch")
    ids = rows["_batch"].to_numpy()
    bounds = [0, *(i for i in range(1, len(ids)) if ids[i] != ids[i - 1]), len(ids)]
    for low, high in itertools.pairwise(bounds):
        b = int(ids[low])
        closed = datetime.fromtimestamp((shape.start_us + (b + 1) * shape.batch_s * _US) / _US, UTC)
        writer.write(uri, rows.slice(low, high - low).drop(["_batch"]), partitions, closed + delay)


def _finish(
    root: Path,
    shape: _Shape,
    stream: str,
    newest: datetime,
    first: datetime,
    streamed_hours: float,
    started: float,
    tables: LakeTables,
    window_name: str,
) -> BenchLake:
    names = {
        f"bronze_{stream}": tables.bronze(stream),
        f"silver_{stream}": tables.silver(stream),
        f"gold_{stream}_{window_name}": tables.gold(stream, window_name),
        f"gold_{stream}_scores": tables.scores(stream),
    }
    names[f"gold_{stream}_forecast_errors"] = tables.forecast_errors(stream)
    stats = {name: _table_stats(uri) for name, uri in names.items()}
    silver_rows_ = stats[f"silver_{stream}"][0]
    if silver_rows_ != shape.events:
        msg = f"the built silver holds {silver_rows_:,} events, expected {shape.events:,}"
        raise QueryBenchError(msg)
    lake = BenchLake(
        root=root,
        stream=stream,
        events=shape.events,
        records=stats[f"bronze_{stream}"][0],
        entities=shape.entities,
        interval_s=shape.interval_us / _US,
        start=first,
        end=newest,
        batch_s=shape.batch_s,
        streamed_hours=streamed_hours,
        rows={n: s[0] for n, s in stats.items()},
        files={n: s[1] for n, s in stats.items()},
        bytes={n: s[2] for n, s in stats.items()},
        build_s=round(time.monotonic() - started, 1),
    )
    (root / MARKER).write_text(json.dumps(lake.as_dict(), indent=2) + "\n")
    return lake


def ensure_lake(
    spark: Callable[[], SparkSession],
    settings: Settings,
    root: Path,
    *,
    events: int,
    stream: str = "telemetry",
    say: Say = lambda _t: None,
    **options: Any,
) -> BenchLake:
    """The lake under ``root`` if it holds at least ``events`` of ``stream``, else a new one.

    Args:
        spark: Gives the Spark session (called only when the lake is built).
        settings: See :func:`build_lake`.
        root: The lake's root folder.
        events: Events wanted in silver.
        stream: The stream.
        say: Progress lines.
        **options: Passed to :func:`build_lake`.
    """
    found = BenchLake.read(root)
    if found is not None and found.stream == stream and found.events >= events:
        say(f"reusing the lake in {root}: {found.events:,} events, built {found.end:%Y-%m-%d}")
        lake = found
    else:
        lake = build_lake(spark(), settings, root, events=events, stream=stream, say=say, **options)
    if f"batches_{stream}" not in lake.rows:  # a lake built before the job recorded its batches
        lake = add_batch_stats(spark(), lake, settings, say=say)
    if f"gold_{stream}_forecast_errors" not in lake.rows:  # or its forecasts' errors
        lake = add_forecast_errors(lake, settings, say=say)
    return lake


def run_query_benchmark(
    settings: Settings,
    *,
    events: int = 10_000_000,
    repeat: int = 10,
    lake_dir: Path | None = None,
    engines: Sequence[str] = DEFAULT_ENGINES,
    say: Say = lambda _t: None,
    **options: Any,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Build (or reuse) the lake, then time every query on every engine; see the module.

    Args:
        settings: The platform's settings (Spark, windows, streams).
        events: Events in the lake (silver).
        repeat: Timed runs per query and engine (after one warm-up run).
        lake_dir: The lake's root (default: ``<data_dir>/bench/query-lake``).
        engines: Some of :data:`ENGINES`; they take turns on each query.
        say: Progress lines.
        **options: Passed to :func:`build_lake` (``days``, ``interval_s``...).

    Returns:
        Per query name, per engine: ``p50_ms``, ``p95_ms`` and ``rows``, or ``error``.

    Raises:
        ValueError: ``events`` or ``repeat`` below 1, or an unknown engine.
        QueryBenchError: The lake cannot be built.
    """
    from pulsecast.analytics import DuckDBEngine, SparkEngine

    if events < 1 or repeat < 1:
        msg = f"events and repeat must be at least 1, got {events} and {repeat}"
        raise ValueError(msg)
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        msg = f"unknown engine(s) {', '.join(unknown)}; engines: {', '.join(ENGINES)}"
        raise ValueError(msg)
    root = lake_dir or settings.data_dir / "bench" / "query-lake"
    stream = options.pop("stream", "telemetry")

    def spark() -> SparkSession:
        from pulsecast.stream.session import spark_session

        return spark_session(settings, app_name="pulsecast-bench-query")

    lake = ensure_lake(spark, settings, root, events=events, stream=stream, say=say, **options)
    say(
        f"lake: {lake.events:,} events; "
        + ", ".join(
            f"{n} {lake.rows[n]:,} rows, {lake.files[n]:,} files, {lake.bytes[n] / 2**20:,.0f} MiB"
            for n in lake.rows
        )
    )
    bench_settings = lake.settings(settings)
    queries = {
        **dashboard_queries(stream, key="m-0000", metric=_METRICS[0]),
        **named_queries(stream),
    }
    now = lake.end + timedelta(seconds=30)
    opened: list[SqlEngine] = []
    for name in [e for e in ENGINES if e in engines]:
        if name == "spark":
            opened.append(SparkEngine(bench_settings))
        else:
            arrow = name == "duckdb-arrow"
            opened.append(DuckDBEngine(bench_settings, name=name, parquet_reader=not arrow))
    say(f"{', '.join(engines)}: {len(queries)} queries, 1 warm-up + {repeat} runs each")
    try:
        return time_queries(bench_settings, opened, queries, repeat=repeat, now=now, say=say)
    finally:
        for engine in opened:
            engine.close()


def set_write_times(table: Path, times: dict[int, datetime]) -> None:
    """Set the ``modificationTime`` of the files each commit (version) of ``table`` added.

    A lake written in bulk then looks as the job leaves it: each micro-batch's
    files written when its batch closed (``throughput`` and ``freshness`` read it).
    """
    for version, moment in times.items():
        commit = table / "_delta_log" / f"{version:020d}.json"
        lines = []
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                action["add"]["modificationTime"] = int(moment.timestamp() * 1000)
            lines.append(json.dumps(action))
        commit.write_text("\n".join(lines) + "\n")


def add_batch_stats(
    spark: SparkSession, lake: BenchLake, settings: Settings, *, say: Say = lambda _t: None
) -> BenchLake:
    """Add the batches table to a built lake: what the job records of each micro-batch.

    Every record of bronze is judged again (Spark's parse, as the job's), and
    each micro-batch's rows are made by the job's own function
    (:func:`~pulsecast.stream.batch_stats.batch_stats_rows`), the batch written
    when it closed plus the same delay as its silver files. Each day's batches
    are one file, as the job's compaction leaves them, except the newest
    ``COMPACT_EVERY - 1`` batches: one file each, the most the job leaves
    between two compactions.
    """
    import shutil

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from pyspark.sql import functions as F

    from pulsecast.stream.batch_stats import BATCH_STATS_SCHEMA, COMPACT_EVERY, batch_stats_rows
    from pulsecast.stream.transforms import parse_events

    started = time.monotonic()
    stream = lake.stream
    tables = LakeTables(lake.root.resolve().as_uri())
    uri = tables.batches(stream)
    scratch = lake.root / "_scratch_batches"
    start_us = round(lake.start.timestamp() * _US)
    raw = (
        spark.read.format("delta")
        .load(tables.bronze(stream))
        .withColumnRenamed("kafka_timestamp", "timestamp")
    )
    judged = parse_events(raw, stream, settings.streams[stream]).select(
        F.floor((F.unix_micros("kafka_timestamp") - F.lit(start_us)) / (lake.batch_s * _US))
        .cast("long")
        .alias("batch_id"),
        "reason",
        "key",
        "event_time",
        "ingest_time",
        "kafka_timestamp",
    )
    judged.write.mode("overwrite").parquet(str(scratch))
    records = ds.dataset(str(scratch)).to_table().sort_by("batch_id")
    say(f"  bronze judged again per micro-batch ({time.monotonic() - started:.0f} s)")
    ids = records["batch_id"].to_numpy()
    bounds = [0, *(i for i in range(1, len(ids)) if ids[i] != ids[i - 1]), len(ids)]
    delay = timedelta(seconds=1.5)  # as the silver files of _write_batches
    newest: datetime | None = None
    made: list[tuple[int, pa.Table]] = []
    for low, high in itertools.pairwise(bounds):
        batch = int(ids[low])
        verdict = records.slice(low, high - low)
        valid = pc.is_null(verdict["reason"])
        accepted = verdict.filter(valid)
        closed = datetime.fromtimestamp((start_us + (batch + 1) * lake.batch_s * _US) / _US, UTC)
        rows = batch_stats_rows(
            verdict,
            batch_id=batch,
            fresh=valid,
            written_at=closed + delay,
            newest_before=newest,
            entities=pc.count_distinct(accepted["key"]).as_py(),
        )
        made.append((batch, rows))
        batch_newest = pc.max(accepted["event_time"]).as_py()
        if batch_newest is not None and (newest is None or batch_newest > newest):
            newest = batch_newest
    writer = _Writer()
    streamed = made[-(COMPACT_EVERY - 1) :]
    compacted = pa.concat_tables(
        [BATCH_STATS_SCHEMA.empty_table()] + [rows for _, rows in made[: len(made) - len(streamed)]]
    )
    for day in pc.unique(compacted["batch_date"]).to_pylist():
        rows = compacted.filter(pc.equal(compacted["batch_date"], day))
        writer.write(uri, rows, ["batch_date"], pc.max(rows["written_at"]).as_py())
    for _, rows in streamed:
        writer.write(uri, rows, ["batch_date"], rows["written_at"][0].as_py())
    writer.finish()
    shutil.rmtree(scratch)
    return _with_table(lake, f"batches_{stream}", uri, started, say)


def add_forecast_errors(
    lake: BenchLake, settings: Settings, *, say: Say = lambda _t: None
) -> BenchLake:
    """Add the forecast errors table to a lake built before the job wrote one.

    Computed from the lake's scores as :func:`build_lake` does, one commit per day.
    """
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    started = time.monotonic()
    stream = lake.stream
    tables = LakeTables(lake.root.resolve().as_uri())
    uri = tables.forecast_errors(stream)
    scores = DeltaTable(tables.scores(stream)).to_pyarrow_dataset()
    errors = _forecast_error_rows(scores, settings, stream).to_table()
    writer = _Writer()
    for day in sorted(pc.unique(errors["window_date"]).to_pylist()):
        rows = errors.filter(pc.equal(errors["window_date"], day))
        writer.write(uri, rows, ["window_date"], pc.max(rows["window_start"]).as_py())
    writer.finish()
    return _with_table(lake, f"gold_{stream}_forecast_errors", uri, started, say)


def _with_table(lake: BenchLake, name: str, uri: str, started: float, say: Say) -> BenchLake:
    """``lake`` with the table ``name`` added to its figures, and its marker file rewritten."""
    import dataclasses

    count, files, size = _table_stats(uri)
    lake = dataclasses.replace(
        lake,
        rows={**lake.rows, name: count},
        files={**lake.files, name: files},
        bytes={**lake.bytes, name: size},
    )
    (lake.root / MARKER).write_text(json.dumps(lake.as_dict(), indent=2) + "\n")
    say(f"  {name}: {count:,} rows in {files} files ({time.monotonic() - started:.0f} s)")
    return lake

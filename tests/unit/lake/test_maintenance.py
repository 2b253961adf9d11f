from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pulsecast.analytics.explain import explain
from pulsecast.config import Settings
from pulsecast.events.errors import UnknownStreamError
from pulsecast.lake.errors import LakeError, UnsafeRetentionError
from pulsecast.lake.maintenance import (
    SCORES_FILE_BYTES,
    maintained_tables,
    optimize,
    retention_hours,
    vacuum,
)
from tests.unit.lake.conftest import DAY, SILVER_ROWS

KEY_QUERY = "SELECT count(*) AS n FROM silver_telemetry WHERE key = 'm-0003'"


def parquet_files(table: Path) -> set[str]:
    return {
        str(p.relative_to(table))
        for p in table.rglob("*.parquet")
        if p.relative_to(table).parts[0] != "_delta_log"
    }


def silver(settings: Settings) -> Path:
    return Path(settings.lake_uri.removeprefix("file://")) / "silver" / "telemetry"


def rows(spark: SparkSession, settings: Settings) -> list[tuple[object, ...]]:
    frame = spark.read.format("delta").load(f"{settings.lake_uri}/silver/telemetry")
    return sorted(tuple(r) for r in frame.select("event_id", "key", "temperature_c").collect())


@contextmanager
def max_file_size(spark: SparkSession, size: int) -> Iterator[None]:
    key = "spark.databricks.delta.optimize.maxFileSize"
    spark.conf.set(key, str(size))
    try:
        yield
    finally:
        spark.conf.unset(key)


def test_maintained_tables_every_zone_of_every_stream(settings: Settings) -> None:
    tables = maintained_tables(settings)
    assert [t.name for t in tables] == [
        "bronze_telemetry",
        "silver_telemetry",
        "gold_telemetry_1m",
        "gold_telemetry_5m",
        "gold_telemetry_scores",
        "gold_telemetry_forecast_errors",
        "panes_telemetry",
        "batches_telemetry",
        "bronze_series",
        "silver_series",
        "gold_series_1m",
        "gold_series_5m",
        "gold_series_scores",
        "gold_series_forecast_errors",
        "panes_series",
        "batches_series",
    ]
    assert [t.zorder for t in tables if t.zone == "silver"] == [("key",), ("key",)]
    assert {t.name: t.zorder for t in tables if t.zorder and t.zone == "gold"} == {
        "gold_telemetry_scores": ("key", "metric"),
        "gold_series_scores": ("key", "metric"),
    }
    assert {t.date_column for t in tables} == {
        "ingest_date",
        "event_date",
        "window_date",
        "pane_date",
        "batch_date",
    }
    only = maintained_tables(settings, streams=["series"], zones=["gold"])
    assert [t.name for t in only] == [
        "gold_series_1m", "gold_series_5m", "gold_series_scores", "gold_series_forecast_errors"
    ]  # fmt: skip


def test_maintained_tables_scores_write_conf(settings: Settings) -> None:
    scores = next(t for t in maintained_tables(settings) if t.name == "gold_telemetry_scores")
    assert scores.write_conf(settings) == {
        "spark.databricks.io.skipping.mdc.addNoise": "false",
        "spark.databricks.delta.optimize.maxFileSize": str(SCORES_FILE_BYTES),
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    }
    # What the configuration sets itself is left to it.
    mine = settings.model_copy(
        update={
            "spark": settings.spark.model_copy(
                update={"conf": {"spark.databricks.delta.optimize.maxFileSize": "1024"}}
            )
        }
    )
    assert "spark.databricks.delta.optimize.maxFileSize" not in scores.write_conf(mine)


def test_maintained_tables_unknown_stream_or_zone(settings: Settings) -> None:
    with pytest.raises(UnknownStreamError) as unknown:
        maintained_tables(settings, streams=["nope"])
    assert str(unknown.value) == "unknown stream 'nope'; configured streams: series, telemetry"
    with pytest.raises(LakeError) as info:
        maintained_tables(settings, zones=["platinum"])
    assert str(info.value) == (
        "unknown table zone 'platinum'; choose bronze, silver, gold or panes"
    )


def test_retention_hours_reads_delta_intervals() -> None:
    assert retention_hours(None) == 168.0
    assert retention_hours("interval 7 days") == 168.0
    assert retention_hours("interval 2 weeks") == 336.0
    assert retention_hours("INTERVAL 36 HOURS") == 36.0
    assert retention_hours("interval 1 day 30 minutes") == 24.5
    with pytest.raises(ValueError, match="expected an interval such as 'interval 7 days'"):
        retention_hours("a week")


def test_optimize_compacts_every_table_and_keeps_rows(
    spark: SparkSession, lake_settings: Settings
) -> None:
    before = rows(spark, lake_settings)
    results = optimize(spark, lake_settings, streams=["telemetry"], zorder=False)
    by_table = {r.table: r for r in results}
    # Gold tables do not exist in this lake: skipped, not an error.
    assert sorted(by_table) == ["bronze_telemetry", "silver_telemetry"]
    s = by_table["silver_telemetry"]
    assert (s.files_before, s.files_after, s.files_removed, s.files_added) == (20, 2, 20, 2)
    assert s.partitions_optimized == 2
    assert s.zorder == ()
    assert s.bytes_removed > s.bytes_added > 0
    b = by_table["bronze_telemetry"]
    assert (b.files_before, b.files_after) == (3, 1)
    assert rows(spark, lake_settings) == before
    assert len(before) == SILVER_ROWS


def test_optimize_since_until_rewrites_only_those_days(
    spark: SparkSession, lake_settings: Settings
) -> None:
    later = optimize(spark, lake_settings, zones=["silver"], since=date(2026, 5, 2))
    assert [(r.table, r.files_removed, r.files_after) for r in later] == [
        ("silver_telemetry", 0, 20)
    ]
    that_day = optimize(spark, lake_settings, zones=["silver"], since=DAY, until=DAY, zorder=False)
    assert [(r.files_removed, r.files_after) for r in that_day] == [(20, 2)]
    with pytest.raises(LakeError) as info:
        optimize(spark, lake_settings, since=date(2026, 5, 2), until=DAY)
    assert str(info.value) == "--since 2026-05-02 is after --until 2026-05-01"


def test_zorder_by_key_lets_a_key_query_skip_files(
    spark: SparkSession, lake_settings: Settings
) -> None:
    # Before: every small file holds every key, so min/max statistics skip nothing.
    for engine in ("duckdb", "spark"):
        (scan,) = explain(lake_settings, KEY_QUERY, engine=engine).scans  # type: ignore[arg-type]
        assert (scan.files_read, scan.files_total) == (20, 20), engine
        assert (scan.partitions_read, scan.partitions_total) == (2, 2), engine
    before = rows(spark, lake_settings)
    # Aim at about four files per hour partition, so that each file holds a few keys.
    hour_bytes = sum(p.stat().st_size for p in silver(lake_settings).rglob("*.parquet")) // 2
    with max_file_size(spark, hour_bytes // 4):
        (result,) = optimize(spark, lake_settings, zones=["silver"])
    assert result.zorder == ("key",)
    assert result.files_removed == 20
    assert 4 <= result.files_after < 20  # at least two files per hour
    assert rows(spark, lake_settings) == before
    # After: one file per hour partition holds m-0003; the others are skipped.
    for engine in ("duckdb", "spark"):
        report = explain(lake_settings, KEY_QUERY, engine=engine)  # type: ignore[arg-type]
        (scan,) = report.scans
        assert (scan.files_read, scan.files_total) == (2, result.files_after), engine
        assert scan.partitions_read == 2
        assert report.rows == 1
    spark_scan = explain(lake_settings, KEY_QUERY, engine="spark").scans[0]
    assert spark_scan.files_after_partition_filters == result.files_after
    assert spark_scan.files_after_data_skipping == 2


def test_vacuum_refuses_unsafe_retention(spark: SparkSession, compacted_settings: Settings) -> None:
    lake_settings = compacted_settings
    on_disk = parquet_files(silver(lake_settings))
    with pytest.raises(UnsafeRetentionError) as info:
        vacuum(spark, lake_settings, retain_hours=1)
    assert str(info.value) == (
        "refusing to vacuum bronze_telemetry keeping 1 h: below its safe minimum of 168 h "
        "(delta.deletedFileRetentionDuration); a running query or the streaming job may "
        "still read those files. Use --force to vacuum anyway"
    )
    assert parquet_files(silver(lake_settings)) == on_disk
    # The safe default keeps the files optimize replaced moments ago.
    results = vacuum(spark, lake_settings, zones=["silver"])
    assert [(r.table, r.retain_hours, r.files) for r in results] == [("silver_telemetry", 168.0, 0)]
    assert parquet_files(silver(lake_settings)) == on_disk
    # Delta's own safety check is back on afterwards.
    assert spark.conf.get("spark.databricks.delta.retentionDurationCheck.enabled") == "true"


def test_vacuum_dry_run_then_force_removes_unreferenced_files(
    spark: SparkSession, compacted_settings: Settings
) -> None:
    lake_settings = compacted_settings
    table = silver(lake_settings)
    live = {
        str(Path(p.removeprefix("file:")).relative_to(table))
        for p in spark.read.format("delta").load(str(table)).inputFiles()
    }
    assert len(live) == 2
    stale = parquet_files(table) - live
    assert len(stale) == 20

    (dry,) = vacuum(spark, lake_settings, zones=["silver"], retain_hours=0, dry_run=True)
    assert dry.dry_run and dry.below_minimum
    assert set(dry.paths) == stale
    assert dry.files == 20
    assert dry.bytes == sum((table / p).stat().st_size for p in stale)
    assert parquet_files(table) == live | stale  # nothing deleted

    (done,) = vacuum(spark, lake_settings, zones=["silver"], retain_hours=0, force=True)
    assert (done.files, done.bytes) == (20, dry.bytes)
    assert parquet_files(table) == live
    assert len(rows(spark, lake_settings)) == SILVER_ROWS


SCORES_QUERY = (
    "SELECT count(*) AS n, sum(value) AS total FROM gold_telemetry_scores "
    "WHERE key = 'm-0003' AND metric = 'cpu_util'"
)


def _write_scores(settings: Settings) -> Path:
    """A day of scores as live scoring leaves it: one delta-rs append per batch, all keys each."""
    from datetime import UTC, datetime, timedelta

    import pyarrow as pa
    from deltalake import write_deltalake

    from pulsecast.stream.scoring import scores_schema

    uri = Path(settings.lake_uri.removeprefix("file://")) / "gold" / "telemetry_scores"
    schema = scores_schema()
    start = datetime(2026, 5, 1, 10, tzinfo=UTC)
    for batch in range(6):
        rows = [
            (key, metric, start + timedelta(minutes=batch * 10 + m))
            for key in [f"m-{k:04d}" for k in range(8)]
            for metric in ("cpu_util", "events", "power_kw", "temperature_c")
            for m in range(10)
        ]
        n = len(rows)
        table = pa.table(
            {
                "key": [r[0] for r in rows],
                "metric": [r[1] for r in rows],
                "window_start": [r[2] for r in rows],
                "window_end": [r[2] + timedelta(minutes=1) for r in rows],
                "value": [float(i) for i in range(n)],
                "count": [6] * n,
                "score": [0.1] * n,
                "flagged": [False] * n,
                "window_date": [r[2].date() for r in rows],
                "detector": ["novelty-1"] * n,
                "forecast": [None] * n,
                "horizon_min": [None] * n,
                "model_version": [None] * n,
            }
        )
        write_deltalake(
            uri,
            table.select(schema.names).cast(schema),
            partition_by=["window_date"],
            mode="append",
        )
    return uri


def test_zorder_scores_by_key_and_metric_lets_the_entity_view_skip_files(
    spark: SparkSession, lake_settings: Settings
) -> None:
    from pulsecast.analytics import run_sql

    uri = _write_scores(lake_settings)
    before = run_sql(lake_settings, SCORES_QUERY).rows
    assert before[0][0] == 60
    # Before: every batch's file holds every key and series: nothing to skip.
    (scan,) = explain(lake_settings, SCORES_QUERY).scans
    assert (scan.files_read, scan.files_total) == (6, 6)
    # Files of about a quarter of the day each (the configuration's size wins over the
    # table's own).
    size = sum(p.stat().st_size for p in uri.rglob("*.parquet")) // 4
    key = "spark.databricks.delta.optimize.maxFileSize"
    small = lake_settings.model_copy(
        update={"spark": lake_settings.spark.model_copy(update={"conf": {key: str(size)}})}
    )
    with max_file_size(spark, size):
        results = optimize(spark, small, zones=["gold"], streams=["telemetry"])
    (result,) = [r for r in results if r.table == "gold_telemetry_scores"]
    assert result.zorder == ("key", "metric")
    assert result.files_removed == 6
    assert 2 <= result.files_after < 6
    # After: the one series sits in one file; the rest are skipped, the answer is the same.
    (scan,) = explain(lake_settings, SCORES_QUERY).scans
    assert (scan.files_read, scan.files_total) == (1, result.files_after)
    assert run_sql(lake_settings, SCORES_QUERY).rows == before
    window = run_sql(
        lake_settings, "SELECT min(window_start), max(window_start) FROM gold_telemetry_scores"
    ).rows
    assert [(a.isoformat(), b.isoformat()) for a, b in window] == [
        ("2026-05-01T10:00:00+00:00", "2026-05-01T10:59:00+00:00")
    ]

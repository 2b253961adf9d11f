from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pulsecast.analytics import DuckDBEngine, analyses, run_sql
from pulsecast.bench.query import (
    MARKER,
    BenchLake,
    QuerySpec,
    dashboard_queries,
    named_queries,
    percentile,
    time_queries,
)
from pulsecast.cli import app
from pulsecast.config import Settings
from pulsecast.testing import settings_for

from .conftest import EVENTS


def test_percentile_interpolates() -> None:
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert percentile([5.0, 1.0], 0.5) == 3.0
    assert percentile([0.0, 10.0, 20.0], 0.95) == pytest.approx(19.0)
    with pytest.raises(ValueError, match="percentile of no values"):
        percentile([], 0.5)


def test_named_queries_cover_every_analysis() -> None:
    queries = named_queries("telemetry")
    assert sorted(queries) == [f"named.{n}" for n in sorted(analyses())]
    assert all(q.params == {"stream": "telemetry"} for q in queries.values())


def test_time_queries_reports_a_failure_as_an_error(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "state", lake={"uri": (tmp_path / "lake").as_uri()})
    engine = DuckDBEngine(settings)
    try:
        results = time_queries(
            settings,
            [engine],
            {"x": QuerySpec("scored_series", {"stream": "telemetry"})},
            repeat=2,
            now=datetime(2026, 5, 1, tzinfo=UTC),
        )
    finally:
        engine.close()
    assert results == {
        "x": {
            "duckdb": {
                "error": "MissingTableError: table gold_telemetry_scores does not exist yet: "
                "live scoring in `pulsecast stream run` creates it (ml.detector.enabled)"
            }
        }
    }


def test_bench_query_json_shape(bench_results: dict[str, dict[str, Any]]) -> None:
    expected = set(dashboard_queries("telemetry", key="m-0000", metric="temperature_c"))
    expected |= set(named_queries("telemetry"))
    assert set(bench_results) == expected
    assert json.loads(json.dumps(bench_results)) == bench_results
    for name, by_engine in bench_results.items():
        assert set(by_engine) == {"duckdb"}, name
        figures = by_engine["duckdb"]
        assert "error" not in figures, (name, figures)
        assert 0 < figures["p50_ms"] <= figures["p95_ms"], name
        assert isinstance(figures["rows"], int)
    # Queries over data the lake holds return rows, with the dashboard's parameters too.
    for name in (
        "dashboard.overview.throughput",
        "dashboard.overview.freshness",
        "dashboard.series.scored_series",
        "dashboard.entity.recent_scores",
        "dashboard.entity.forecast_error",
        "dashboard.quality.data_quality",
        "named.heatmap",
        "named.forecast_vs_actual",
    ):
        assert bench_results[name]["duckdb"]["rows"] > 0, name


def test_bench_lake_has_the_requested_events(
    bench_results: dict[str, Any], bench_lake_root: Path, bench_settings: Settings
) -> None:
    lake = BenchLake.read(bench_lake_root)
    assert lake is not None
    assert lake.events == EVENTS
    assert lake.rows["silver_telemetry"] == EVENTS
    assert lake.records == lake.rows["bronze_telemetry"] == EVENTS + (EVENTS - 1) // 999
    settings = lake.settings(bench_settings)
    counted = run_sql(settings, "SELECT count(*), count(DISTINCT event_id) FROM silver_telemetry")
    assert counted.rows == [(EVENTS, EVENTS)]
    rejected = run_sql(
        settings,
        "SELECT count(*) FROM bronze_telemetry b ANTI JOIN silver_telemetry s "
        "ON s.kafka_partition = b.partition AND s.kafka_offset = b.offset",
    )
    assert rejected.rows == [(lake.records - EVENTS,)]
    # Micro-batch files in the streamed hours: one batch each, written when it closed.
    files = run_sql(
        settings,
        "SELECT count(*), min(written_at), max(written_at) FROM lake_files "
        "WHERE table_name = 'silver_telemetry' AND min_batch_id = max_batch_id",
    ).rows[0]
    assert files[0] >= 100
    assert files[2] <= lake.end + timedelta(minutes=2)
    # What the job records of each batch: every record of bronze, every event of silver.
    per_measure = dict(
        run_sql(
            settings,
            "SELECT measure, sum(n) FROM batches_telemetry "
            "WHERE measure IN ('received', 'accepted', 'rejected') GROUP BY measure",
        ).rows
    )
    assert per_measure == {
        "received": lake.records,
        "accepted": EVENTS,
        "rejected": lake.records - EVENTS,
    }
    batches = run_sql(
        settings,
        "SELECT count(DISTINCT batch_id) FROM batches_telemetry WHERE measure = 'lag'",
    ).rows[0][0]
    assert [(batches,)] == run_sql(
        settings, "SELECT count(DISTINCT batch_id) FROM silver_telemetry"
    ).rows
    assert lake.files["batches_telemetry"] <= 99 + 2  # the newest batches, and a file a day
    # The scores as `pulsecast lake optimize` leaves them: Z-ordered by key and series.
    from deltalake import DeltaTable

    (last,) = DeltaTable(f"{settings.lake_uri}/gold/telemetry_scores").history(1)
    assert last["operation"] == "OPTIMIZE"
    assert json.loads(last["operationParameters"]["zOrderBy"]) == ["key", "metric"]


def test_bench_lake_has_the_job_schemas(
    bench_results: dict[str, Any], bench_lake_root: Path
) -> None:
    from deltalake import DeltaTable
    from pyspark.sql import SparkSession

    from pulsecast.config import WindowSpec
    from pulsecast.stream.job import BatchWriter
    from pulsecast.stream.scoring import scores_schema
    from pulsecast.stream.transforms import (
        bronze_rows,
        pane_partials,
        parse_events,
        silver_rows,
        windows_from_panes,
    )

    spark = SparkSession.getActiveSession()
    assert spark is not None
    settings = settings_for(Path("unused"))
    spec = settings.streams["telemetry"]
    raw = spark.createDataFrame(
        [],
        "key binary, value binary, topic string, partition int, offset long, timestamp timestamp",
    )
    silver = silver_rows(parse_events(raw, "telemetry", spec), spec, 0)
    window = WindowSpec(name="1m", size_s=60)
    gold = BatchWriter._gold_shape(
        windows_from_panes(pane_partials(silver, spec, 60, 0), window), window, None
    )

    def columns(table: str) -> list[str]:
        return [f.name for f in DeltaTable(str(bench_lake_root / table)).schema().fields]

    assert columns("bronze/telemetry") == bronze_rows(raw).columns
    assert columns("silver/telemetry") == silver.columns
    assert columns("gold/telemetry_1m") == gold.columns
    assert columns("gold/telemetry_scores") == scores_schema().names


def test_dashboard_queries_are_the_panels_queries(
    bench_results: dict[str, Any],
    bench_lake_root: Path,
    bench_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pulsecast.dashboard import panels

    lake = BenchLake.read(bench_lake_root)
    assert lake is not None
    calls: list[tuple[str, dict[str, object]]] = []
    real = panels.run_analysis

    def recording(settings: Settings, name: str, params: Any = None, **kw: Any) -> Any:
        calls.append((name, dict(params or {})))
        return real(settings, name, params, **kw)

    monkeypatch.setattr(panels, "run_analysis", recording)
    monkeypatch.setattr(panels.DashboardData, "_versions", lambda self, stream: {"state": "ok"})
    data = panels.DashboardData(lake.settings(bench_settings), now=lake.end)
    try:
        panel_results = [
            data.overview(),
            data.series(),
            data.entity(key="m-0000", metric="temperature_c"),
            data.alerts(),
            data.models(),
            data.quality(),
        ]
    finally:
        data.close()
    assert all(p["state"] == "ok" for p in panel_results), [p.get("message") for p in panel_results]
    expected = dashboard_queries("telemetry", key="m-0000", metric="temperature_c").values()
    assert sorted(calls, key=repr) == sorted(
        [(q.analysis, dict(q.params)) for q in expected], key=repr
    )


def test_bench_query_cli_reuses_the_lake(
    bench_results: dict[str, Any], bench_lake_root: Path, tmp_path: Path
) -> None:
    marker = (bench_lake_root / MARKER).read_text()
    config = tmp_path / "pulsecast.toml"
    config.write_text(f'[paths]\ndata_dir = "{tmp_path / "state"}"\n')
    args = ["--config", str(config), "bench", "query", "--events", "1000", "--repeat", "1"]
    args += ["--lake-dir", str(bench_lake_root)]
    result = CliRunner().invoke(app, [*args, "--engine", "duckdb,duckdb-arrow", "--json"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == set(bench_results)
    for name, by_engine in out.items():
        assert set(by_engine) == {"duckdb", "duckdb-arrow"}, name
        assert all(figures["p95_ms"] > 0 for figures in by_engine.values()), name
        # DuckDB's Parquet reader and the Arrow datasets find the same rows.
        assert by_engine["duckdb"]["rows"] == by_engine["duckdb-arrow"]["rows"], name
    assert "reusing the lake" in result.stderr
    assert (bench_lake_root / MARKER).read_text() == marker  # not rebuilt

    table = CliRunner().invoke(app, [*args, "--engine", "duckdb"])
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["query", "duckdb", "p50", "ms", "duckdb", "p95", "ms"]
    assert len(lines) == 1 + len(bench_results)


def test_bench_query_cli_rejects_an_unknown_engine(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "query", "--engine", "oracle"])
    assert result.exit_code == 1
    expected = "--engine: unknown oracle; give duckdb, spark, duckdb-arrow or both"
    assert result.stderr.strip().endswith(expected)

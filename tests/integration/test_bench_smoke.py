"""The ingest benchmark runs end to end (a functional check on small counts, not a timing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulsecast.bench.ingest import run_ingest_benchmark
from pulsecast.config import Settings
from pulsecast.services.stack import Stack

from .conftest import small_spark


def test_bench_ingest_reports_every_figure(stack: Stack, stack_settings: Settings) -> None:
    result = run_ingest_benchmark(
        stack_settings, events=20_000, http_events=5_000, reference_events=50_000
    )
    assert result["reference_events"] == 50_000
    for key in ("producer_eps", "http_eps", "reference_eps", "producer_ratio"):
        assert result[key] > 0
    assert result["producer_ratio"] == round(result["producer_eps"] / result["reference_eps"], 3)
    assert 200 < result["record_bytes"] < 400


def test_bench_e2e_reports_every_figure(spark, stack: Stack, stack_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    from pulsecast.bench.e2e import run_e2e_benchmark

    settings = small_spark(stack_settings)
    settings = settings.model_copy(
        update={"stream": settings.stream.model_copy(update={"trigger_interval_s": 1.0})}
    )
    result = run_e2e_benchmark(
        settings, rate=3_000, seconds=8, latency_rate=1_000, latency_seconds=5, warmup_s=2
    )
    assert result["events"] == 1_000 * 10 + 3_000 * 8 + 1_000 * 5  # warm-up, sustained, latency
    assert result["latency_events"] > 0
    # The sustained phase is short here: its batches may not have finished in it.
    assert result["sustained_eps"] >= 0
    assert result["offered_eps"] > 0
    for key in ("latency_p50_s", "warehouse_latency_p95_s", "job_eps", "passthrough_eps"):
        assert result[key] > 0
    assert result["latency_p50_s"] <= result["latency_p95_s"]
    assert result["ratio"] == round(result["job_eps"] / result["passthrough_eps"], 3)
    # The capacity once more, the job without its scoring query.
    assert result["stream_eps"] > 0
    assert result["stream_ratio"] == round(result["stream_eps"] / result["passthrough_eps"], 3)
    # None when the capacity run took one batch (these few events may fit one).
    steady = result["job_steady_eps"]
    assert steady is None or steady > 0


# Builds a lake with Spark, then runs 21 queries twice on each engine: minutes on a busy machine.
@pytest.mark.timeout(1800)
def test_bench_query_times_every_query_on_both_engines(  # type: ignore[no-untyped-def]
    spark, stack_settings: Settings, tmp_path: Path
) -> None:
    from pulsecast.bench.query import (
        BenchLake,
        dashboard_queries,
        named_queries,
        run_query_benchmark,
    )

    root = tmp_path / "lake"
    results = run_query_benchmark(
        small_spark(stack_settings),
        events=3_000,
        repeat=1,
        lake_dir=root,
        days=0.25,
        streamed_hours=1,
    )
    lake = BenchLake.read(root)
    assert lake is not None
    assert lake.rows["silver_telemetry"] == 3_000
    expected = set(dashboard_queries("telemetry", key="m-0000", metric="temperature_c"))
    assert set(results) == expected | set(named_queries("telemetry"))
    for name, by_engine in results.items():
        assert set(by_engine) == {"duckdb", "spark"}, name
        for engine, figures in by_engine.items():
            assert "error" not in figures, (name, engine, figures)
            assert 0 < figures["p50_ms"] <= figures["p95_ms"], (name, engine)
        # The same query text gives as many rows on both engines.
        assert by_engine["duckdb"]["rows"] == by_engine["spark"]["rows"], name

"""A small benchmark lake, built once for the session with Spark (local, small)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulsecast.config import Settings
from pulsecast.testing import settings_for

EVENTS = 20_000


def small_settings(data_dir: Path) -> Settings:
    """Settings with a small local Spark (the session is shared by the whole run)."""
    return settings_for(
        data_dir,
        spark={
            "master": "local[2]",
            "shuffle_partitions": 2,
            "conf": {"spark.ui.showConsoleProgress": "false"},
        },
    )


@pytest.fixture(scope="session")
def bench_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return small_settings(tmp_path_factory.mktemp("bench-state"))


@pytest.fixture(scope="session")
def bench_lake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-lake") / "lake"


@pytest.fixture(scope="session")
def bench_results(bench_settings: Settings, bench_lake_root: Path) -> dict[str, dict]:
    """The benchmark on 20k events (half a day, two streamed hours), DuckDB only."""
    from pulsecast.bench.query import run_query_benchmark

    return run_query_benchmark(
        bench_settings,
        events=EVENTS,
        repeat=2,
        lake_dir=bench_lake_root,
        engines=("duckdb",),
        days=0.5,
        streamed_hours=2,
    )

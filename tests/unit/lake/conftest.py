"""A small streamed-looking lake (many small files) written with the local SparkSession."""

from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pulsecast.config import Settings
from pulsecast.testing import settings_for
from tests.unit.stream.conftest import spark as spark  # the one local SparkSession

DAY = date(2026, 5, 1)
HOURS = (10, 11)
KEYS = [f"m-{i:04d}" for i in range(8)]
APPENDS = 10
READINGS = 5  # per key, hour and append
SILVER_ROWS = APPENDS * len(HOURS) * len(KEYS) * READINGS  # 800
SILVER = "event_id string, key string, event_time timestamp, temperature_c double"


def _silver_batch(batch: int) -> list[tuple[object, ...]]:
    rows = []
    for hour in HOURS:
        for k, key in enumerate(KEYS):
            for j in range(READINGS):
                when = datetime(2026, 5, 1, hour) + timedelta(minutes=batch * 5 + j)
                rows.append((f"{batch}-{hour}-{k}-{j}", key, when, 60.0 + k + j / 10))
    return rows


@pytest.fixture(scope="session")
def streamed_lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Silver and bronze of ``telemetry`` as a streaming job leaves them: one file per batch.

    silver_telemetry: 10 appends x 2 hour partitions = 20 files, every file holding
    every key. bronze_telemetry: 3 appends into one ingest_date = 3 files.
    """
    from pyspark.sql import functions as F

    root = tmp_path_factory.mktemp("streamed") / "lake"
    for batch in range(APPENDS):
        (
            spark.createDataFrame(_silver_batch(batch), SILVER)
            .withColumn("event_date", F.to_date("event_time"))
            .withColumn("event_hour", F.hour("event_time"))
            .coalesce(1)
            .write.format("delta")
            .partitionBy("event_date", "event_hour")
            .mode("append")
            .save(str(root / "silver" / "telemetry"))
        )
    for batch in range(3):
        (
            spark.createDataFrame([(f"k{batch}", DAY)], "key string, ingest_date date")
            .coalesce(1)
            .write.format("delta")
            .partitionBy("ingest_date")
            .mode("append")
            .save(str(root / "bronze" / "telemetry"))
        )
    return root


def _settings(state: Path, lake: Path) -> Settings:
    return settings_for(
        state, lake={"uri": lake.as_uri()}, spark={"master": "local[2]", "shuffle_partitions": 2}
    )


@pytest.fixture(scope="session")
def compacted_lake(
    spark: SparkSession, streamed_lake: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """:func:`streamed_lake` after a compaction of silver (2 files; the 20 replaced stay)."""
    from pulsecast.lake.maintenance import optimize

    base = tmp_path_factory.mktemp("compacted")
    shutil.copytree(streamed_lake, base / "lake")
    optimize(spark, _settings(base / "state", base / "lake"), zones=["silver"], zorder=False)
    return base / "lake"


@pytest.fixture
def lake_settings(streamed_lake: Path, tmp_path: Path) -> Settings:
    """Settings whose lake is a fresh copy of :func:`streamed_lake`."""
    shutil.copytree(streamed_lake, tmp_path / "lake")
    return _settings(tmp_path / "state", tmp_path / "lake")


@pytest.fixture
def compacted_settings(compacted_lake: Path, tmp_path: Path) -> Settings:
    """Settings whose lake is a fresh copy of :func:`compacted_lake`."""
    shutil.copytree(compacted_lake, tmp_path / "lake")
    return _settings(tmp_path / "state", tmp_path / "lake")

"""A replayed micro-batch after a restart adds nothing; duplicates of earlier batches are dropped.

The writer keeps what it needs between batches in memory (the newest batch
each table holds, recent event ids, recent pane partials); a new writer (a
restart) must read all of it back from the lake.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from pulsecast.analytics.sql import run_sql
from pulsecast.config import Settings
from pulsecast.stream.job import BatchWriter
from pulsecast.testing import telemetry_event

from .conftest import job_settings

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def kafka_batch(spark: SparkSession, ids: range, first_offset: int) -> DataFrame:
    """Kafka source rows for events ``ids`` (one every second from T0, 3 machines)."""
    rows = []
    for n, i in enumerate(ids):
        event = telemetry_event(
            f"m-{i % 3}",
            when=(T0 + timedelta(seconds=i)).isoformat(),
            event_id=f"e-{i}",
            temperature_c=50.0 + i / 10,
        )
        rows.append(
            (
                f"m-{i % 3}".encode(),
                json.dumps(event).encode(),
                "telemetry.events",
                0,
                first_offset + n,
                datetime.now(UTC).replace(tzinfo=None),
                0,
            )
        )
    return spark.createDataFrame(
        rows,
        "key binary, value binary, topic string, partition int, offset long, "
        "timestamp timestamp, timestampType int",
    )


def lake_state(settings: Settings) -> list[tuple]:
    return [
        run_sql(settings, "SELECT count(*), count(DISTINCT event_id) FROM silver_telemetry").rows,
        run_sql(settings, "SELECT count(*) FROM bronze_telemetry").rows,
        run_sql(settings, "SELECT count(*), sum(n) FROM panes_telemetry").rows,
        run_sql(
            settings,
            "SELECT key, window_start, count, mean FROM gold_telemetry_1m "
            "WHERE metric = 'temperature_c' ORDER BY 1, 2",
        ).rows,
    ]


def test_a_replayed_batch_after_a_restart_adds_nothing(
    spark: SparkSession, stack_settings: Settings, tmp_path: Path
) -> None:
    settings = job_settings(stack_settings, tmp_path, allowed_lateness_s=600)
    first = BatchWriter(spark, settings, "telemetry", warehouse=None)
    first.ensure_tables()
    first(kafka_batch(spark, range(0, 90), 0), 0)
    first(kafka_batch(spark, range(90, 180), 90), 1)
    before = lake_state(settings)
    assert before[0] == [(180, 180)]
    assert before[1] == [(180,)]

    # A restart replays batch 1, which every table already holds.
    second = BatchWriter(spark, settings, "telemetry", warehouse=None)
    second(kafka_batch(spark, range(90, 180), 90), 1)
    assert lake_state(settings) == before

    # Batch 2 repeats 30 events of batch 1 (within the lateness) and brings 60 new ones.
    second(kafka_batch(spark, range(150, 240), 180), 2)
    silver, bronze, panes, gold = lake_state(settings)
    assert silver == [(240, 240)]
    assert bronze == [(270,)]
    assert panes[0][1] == 4 * 240  # every valid event once, in each of 4 metrics
    minutes = {(key, start.strftime("%H:%M")): count for key, start, count, _ in gold}
    assert minutes == {(f"m-{m}", f"12:0{t}"): 20 for m in range(3) for t in range(4)}

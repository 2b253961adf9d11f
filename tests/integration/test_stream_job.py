"""The streaming job against real Kafka, Spark, Delta and PostgreSQL."""

from __future__ import annotations

import json
import logging
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pulsecast.analytics.sql import run_sql
from pulsecast.bus import EventProducer, topic_name
from pulsecast.bus.consumer import read_since
from pulsecast.config import Settings
from pulsecast.lake.tables import LakeTables
from pulsecast.stream.job import StreamJob
from pulsecast.testing import telemetry_event

from .conftest import StreamFactory, job_settings

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def produce_raw(settings: Settings, stream: str, values: list[tuple[str, bytes]]) -> None:
    producer = EventProducer(settings)
    for key, value in values:
        producer.produce_raw(topic_name(stream), value, key)
    producer.flush()


KAFKA_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, "
    "timestamp timestamp, timestampType int"
)


def kafka_batch(
    spark: SparkSession, stream: str, events: list[dict], *, first: int = 0
) -> DataFrame:
    """``events`` as a micro-batch of Kafka records (partition 0, offsets from ``first``)."""
    rows = [
        (
            b"m-1",
            json.dumps(event).encode(),
            topic_name(stream),
            0,
            first + i,
            datetime(2026, 5, 1, 12, 0),
            0,
        )
        for i, event in enumerate(events)
    ]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def warehouse_rows(settings: Settings, stream: str) -> dict[tuple[str, str, str, str], tuple]:
    with psycopg.connect(settings.postgres.conninfo()) as conn:
        rows = conn.execute(
            "SELECT key, window_name, window_start, metric, count, mean, min, max, is_final "
            "FROM pulsecast.gold_aggregates WHERE stream = %s",
            (stream,),
        ).fetchall()
    return {(r[0], r[1], r[2].strftime("%H:%M"), r[3]): r[4:] for r in rows}


def test_stream_job_bronze_silver_gold_warehouse_and_dlq(
    spark: SparkSession, stream_factory: StreamFactory, tmp_path: Path
) -> None:
    base, stream = stream_factory()
    settings = job_settings(base, tmp_path)
    # 4 machines x 30 readings, one every 4 s from 12:00:00: two full minutes.
    temps: dict[tuple[str, int], float] = {}
    events = []
    for i in range(30):
        for m in range(4):
            temps[(f"m-{m}", i)] = 50.0 + m + i * 0.5
            events.append(
                telemetry_event(
                    f"m-{m}",
                    when=T0 + timedelta(seconds=4 * i),
                    event_id=f"{m}-{i}",
                    temperature_c=temps[(f"m-{m}", i)],
                )
            )
    with EventProducer(settings) as producer:
        assert producer.send(stream, events).accepted == 120
        producer.send(stream, events[:10])  # duplicates: same event ids again
    bad = [
        ("m-9", b'{"event_time": "2026-05-01T12:00:00Z", "payload": {'),
        (
            "m-9",
            json.dumps(
                telemetry_event("m-9", when="2026-05-01T12:00:01Z", cpu_util=250.0)
            ).encode(),
        ),
    ]
    produce_raw(settings, stream, bad)

    stats = StreamJob(spark, settings, streams=[stream]).run(until_idle=True, max_seconds=240)
    assert stats[stream].valid == 130
    assert stats[stream].rejected == {"malformed_json": 1, "out_of_range": 1}
    # The malformed record's span (its whole batch, in so small a one) was parsed by Spark.
    assert 0 < stats[stream].parsed_by_spark <= 132

    # Late data: an event older than the watermark (newest 12:01:56 - 60 s lateness).
    late = telemetry_event("m-0", when=T0, event_id="late-1")
    with EventProducer(settings) as producer:
        producer.send(stream, [late])
    stats = StreamJob(spark, settings, streams=[stream]).run(until_idle=True, max_seconds=240)
    assert stats[stream].rejected == {"late": 1}
    assert stats[stream].parsed_by_spark == 0  # parsed in the driver, with Arrow

    silver = run_sql(settings, f"SELECT count(*), count(DISTINCT event_id) FROM silver_{stream}")
    assert silver.rows == [(120, 120)]
    # Timestamps are written as UTC microseconds, not INT96 (read as naive times).
    silver_table = DeltaTable(LakeTables.from_settings(settings).silver(stream))
    written = silver_table.file_uris()
    types = {pq.read_schema(uri).field("event_time").type for uri in written}
    assert types == {pa.timestamp("us", tz="UTC")}
    # Small batches are committed from the driver (delta-rs), the batch id recorded twice.
    newest = silver_table.transaction_version(f"pulsecast-silver-{stream}")
    assert newest is not None
    tag = f"pulsecast-silver-{stream}:"
    appends = [c for c in silver_table.history() if str(c.get("userMetadata")).startswith(tag)]
    assert appends and all(c["engineInfo"].startswith("delta-rs") for c in appends)
    assert f"{tag}{newest}" in {c["userMetadata"] for c in appends}
    bronze = run_sql(settings, f"SELECT count(*), min(topic), max(topic) FROM bronze_{stream}")
    assert bronze.rows == [(120 + 10 + 2 + 1, f"{stream}.events", f"{stream}.events")]

    gold = run_sql(
        settings,
        f"""
        SELECT key, strftime(window_start, '%H:%M') AS w, count, mean, min, max, is_final
        FROM gold_{stream}_1m WHERE metric = 'temperature_c' ORDER BY key, w""",
    )
    expected = []
    for m in range(4):
        for minute, readings in (("12:00", range(15)), ("12:01", range(15, 30))):
            values = [temps[(f"m-{m}", i)] for i in readings]
            expected.append(
                (
                    f"m-{m}",
                    minute,
                    15,
                    pytest.approx(statistics.mean(values)),
                    min(values),
                    max(values),
                    True,
                )
            )
    assert gold.rows == expected

    sliding = run_sql(
        settings,
        f"""
        SELECT strftime(window_start, '%H:%M'), sum(count) FROM gold_{stream}_5m
        WHERE metric = 'cpu_util' GROUP BY 1 ORDER BY 1""",
    )
    # A 5-minute window starting at 11:56 holds the first minute only; 11:57 to 12:00 hold both.
    assert sliding.rows == [
        ("11:56", 60),
        ("11:57", 120),
        ("11:58", 120),
        ("11:59", 120),
        ("12:00", 120),
        ("12:01", 60),
    ]

    in_warehouse = warehouse_rows(settings, stream)
    assert len(in_warehouse) == 4 * 2 * 4 + 4 * 6 * 4  # keys x windows x metrics (1m + 5m)
    for key, minute, count, mean, low, high, final in expected:
        assert in_warehouse[(key, "1m", minute, "temperature_c")] == (count, mean, low, high, final)

    dead = read_since(settings, topic_name(stream, "dlq"), {0: 0})
    assert sorted(r.headers["pulsecast.reason"] for r in dead) == [
        "late",
        "malformed_json",
        "out_of_range",
    ]
    assert {r.headers["pulsecast.source"] for r in dead} == {"stream"}

    # What the job recorded of its batches: every record once, each rejection with its reason
    # (the repeated event ids too), and a lag from each written event to its silver commit.
    recorded = run_sql(
        settings,
        f"""
        SELECT measure, reason, sum(n) FROM batches_{stream}
        WHERE measure IN ('received', 'accepted', 'rejected')
        GROUP BY measure, reason ORDER BY measure, reason""",
    )
    assert recorded.rows == [
        ("accepted", None, 120),
        ("received", None, 133),
        ("rejected", "duplicate", 10),
        ("rejected", "late", 1),
        ("rejected", "malformed_json", 1),
        ("rejected", "out_of_range", 1),
    ]
    lags = run_sql(
        settings,
        f"SELECT measure, sum(n), min(seconds) > 0 FROM batches_{stream} "
        "WHERE measure IN ('lag', 'pipeline') GROUP BY measure ORDER BY measure",
    )
    assert lags.rows == [("lag", 120, True), ("pipeline", 120, True)]


def test_silver_and_bronze_appends_by_spark_or_the_driver_are_once_per_batch(
    spark: SparkSession,
    stream_factory: StreamFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pulsecast.stream.job import BatchWriter

    base, stream = stream_factory()
    settings = job_settings(base, tmp_path)
    by_spark = settings.model_copy(
        update={"stream": settings.stream.model_copy(update={"driver_commit_rows": 0})}
    )

    def batch(first: int) -> DataFrame:
        events = [
            telemetry_event("m-1", when=f"2026-05-01T12:00:{i:02d}Z", event_id=f"e{i}")
            for i in range(first, first + 5)
        ]
        return kafka_batch(spark, stream, events, first=first)

    spark_writer = BatchWriter(spark, by_spark, stream, warehouse=None)
    spark_writer.ensure_tables()
    spark_writer(batch(0), 0)
    # A restart (nothing in memory) replays batch 0 and goes on with batch 1 from the driver.
    driver_writer = BatchWriter(spark, settings, stream, warehouse=None)
    driver_writer(batch(0), 0)
    driver_writer(batch(5), 1)
    driver_writer(batch(5), 1)  # replayed again: held already

    # Rows the driver cannot collect (too large for it) are appended by Spark instead.
    collect = BatchWriter._collect

    def too_large(writer: BatchWriter, frame: DataFrame, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        def fail() -> None:
            raise RuntimeError(
                "Total size of serialized results of 3 tasks (1100.0 MiB) is bigger than "
                "spark.driver.maxResultSize (1024.0 MiB)"
            )

        frame.toArrow = fail  # type: ignore[method-assign]
        return collect(writer, frame, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(BatchWriter, "_collect", too_large)
    driver_writer(batch(10), 2)

    tables = LakeTables.from_settings(settings)
    for table in (tables.silver(stream), tables.bronze(stream)):
        engines = {
            str(c["userMetadata"]).rsplit(":", 1)[1]: c["engineInfo"]
            for c in DeltaTable(table).history()
            if c.get("userMetadata")
        }
        assert engines.keys() == {"0", "1", "2"}
        assert engines["0"].startswith("Apache-Spark") and engines["1"].startswith("delta-rs")
        assert engines["2"].startswith("Apache-Spark")
    silver = run_sql(settings, f"SELECT count(*), count(DISTINCT event_id) FROM silver_{stream}")
    assert silver.rows == [(15, 15)]
    bronze = run_sql(settings, f"SELECT count(*) FROM bronze_{stream}")
    assert bronze.rows == [(15,)]
    monkeypatch.undo()

    # Gold fails while bronze's append is still running and fails too: the batch waits
    # for the append, logs its error, forgets what the sinks hold; the replay adds each
    # event once (silver's append of the failed run had landed).
    append, finished = BatchWriter._append, threading.Event()

    def slow_failing_append(writer: BatchWriter, frame: DataFrame, sink: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if sink != "bronze":
            return append(writer, frame, sink, *args, **kwargs)
        time.sleep(1)
        finished.set()
        raise OSError("bronze store unreachable")

    def failing_gold(*args: object, **kwargs: object) -> None:
        raise RuntimeError("gold failed")

    monkeypatch.setattr(BatchWriter, "_append", slow_failing_append)
    monkeypatch.setattr(BatchWriter, "_gold", failing_gold)
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="gold failed"):
        driver_writer(batch(15), 3)
    assert finished.is_set()
    assert driver_writer._written == {}
    assert "bronze store unreachable" in caplog.text
    monkeypatch.undo()
    driver_writer(batch(15), 3)
    silver = run_sql(settings, f"SELECT count(*), count(DISTINCT event_id) FROM silver_{stream}")
    assert silver.rows == [(20, 20)]
    bronze = run_sql(settings, f"SELECT count(*) FROM bronze_{stream}")
    assert bronze.rows == [(20,)]


@pytest.mark.parametrize("driver_commit_rows", [500_000, 0])
def test_of_an_event_repeated_in_a_batch_silver_and_gold_hold_one_copy(
    spark: SparkSession, stream_factory: StreamFactory, tmp_path: Path, driver_commit_rows: int
) -> None:
    """Copies of an event id that differ: silver keeps one, and gold aggregates that one.

    Collected whole (a small batch) or appended by Spark, the copy of the lowest offset is
    kept, though the batch's records come newest first.
    """
    from pulsecast.stream.job import BatchWriter

    base, stream = stream_factory()
    settings = job_settings(base, tmp_path, driver_commit_rows=driver_commit_rows)
    readings = [("a", 10.0), ("b", 20.0), ("a", 30.0), ("c", 40.0), ("a", 50.0)]
    events = [
        telemetry_event("m-1", when=f"2026-05-01T12:00:0{i}Z", event_id=event_id, temperature_c=t)
        for i, (event_id, t) in enumerate(readings)
    ]
    writer = BatchWriter(spark, settings, stream, warehouse=None)
    writer.ensure_tables()
    newest_first = kafka_batch(spark, stream, events).orderBy(F.col("offset").desc())
    writer(newest_first.coalesce(1), 0)

    silver = run_sql(
        settings, f"SELECT event_id, temperature_c FROM silver_{stream} ORDER BY event_id"
    ).rows
    assert silver == [("a", 10.0), ("b", 20.0), ("c", 40.0)]
    accepted = run_sql(
        settings, f"SELECT sum(n) FROM batches_{stream} WHERE measure = 'accepted'"
    ).rows
    assert accepted == [(3,)]
    gold = run_sql(
        settings,
        f"SELECT count, mean FROM gold_{stream}_1m WHERE metric = 'temperature_c'",
    ).rows
    assert gold == [(3, pytest.approx(statistics.mean(t for _, t in silver)))]


def test_a_batch_larger_than_the_driver_commit_limit_is_appended_by_spark(
    spark: SparkSession, stream_factory: StreamFactory, tmp_path: Path
) -> None:
    """Batches are capped below the limit, yet this one is larger (planned before the cap)."""
    from pulsecast.stream.job import BatchWriter

    base, stream = stream_factory()
    settings = job_settings(base, tmp_path, driver_commit_rows=3, max_offsets_per_trigger=3)
    events = [
        telemetry_event("m-1", when=f"2026-05-01T12:00:0{i}Z", event_id=f"e{i}") for i in range(5)
    ]
    writer = BatchWriter(spark, settings, stream, warehouse=None)
    writer.ensure_tables()
    writer(kafka_batch(spark, stream, events), 0)

    tables = LakeTables.from_settings(settings)
    for table in (tables.silver(stream), tables.bronze(stream)):
        engines = [c["engineInfo"] for c in DeltaTable(table).history() if c.get("userMetadata")]
        assert len(engines) == 1 and engines[0].startswith("Apache-Spark")
    silver = run_sql(settings, f"SELECT count(*) FROM silver_{stream}").rows
    assert silver == [(5,)]


def test_a_catch_up_reads_each_next_batch_ahead_and_loses_nothing(
    spark: SparkSession, stream_factory: StreamFactory, tmp_path: Path
) -> None:
    """A backlog of many batches, run back to back: batches after the first are read ahead."""
    base, stream = stream_factory()
    settings = job_settings(base, tmp_path, max_offsets_per_trigger=300, trigger_interval_s=0.0)
    events = [
        telemetry_event(f"m-{i % 7}", when=T0 + timedelta(milliseconds=50 * i), event_id=f"e{i}")
        for i in range(1_800)
    ]
    with EventProducer(settings) as producer:
        assert producer.send(stream, events[:900]).accepted == 900
        producer.send(stream, events[:30])  # duplicates of earlier batches' events
    # Mid-stream, in a batch read ahead: Spark parses its span on the read ahead's thread.
    produce_raw(settings, stream, [("m-9", b'{"event_time": "2026-05-01T12:00:00Z"')])
    with EventProducer(settings) as producer:
        assert producer.send(stream, events[900:]).accepted == 900

    stats = StreamJob(spark, settings, streams=[stream]).run(until_idle=True, max_seconds=240)[
        stream
    ]
    assert stats.records == 1_831
    assert stats.batches >= 7
    assert stats.read_ahead >= stats.batches - 2  # all but the first (and maybe a last)
    assert stats.valid == 1_830
    assert stats.rejected == {"malformed_json": 1}
    assert 0 < stats.parsed_by_spark < 400  # the malformed record's span, one batch at most
    silver = run_sql(settings, f"SELECT count(*), count(DISTINCT event_id) FROM silver_{stream}")
    assert silver.rows == [(1_800, 1_800)]
    # Every record once in bronze: no offset of a partition read twice or skipped.
    bronze = run_sql(
        settings,
        f'SELECT partition, count(*), count(DISTINCT "offset"), max("offset") + 1 '
        f"FROM bronze_{stream} GROUP BY partition",
    )
    assert sum(row[1] for row in bronze.rows) == 1_831
    assert all(row[1] == row[2] == row[3] for row in bronze.rows)

"""Live anomaly scoring inside the streaming job: real Kafka, Spark state, Delta, PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import KafkaException
from pyspark.sql import SparkSession

from pulsecast.analytics.sql import run_sql
from pulsecast.bus import EventProducer, topic_name
from pulsecast.bus.consumer import read_since
from pulsecast.config import Settings
from pulsecast.stream.job import StreamJob
from pulsecast.stream.scoring import ScoreWriter
from pulsecast.testing import telemetry_event

from .conftest import StreamFactory, job_settings

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
KEYS = ("m-0", "m-1")


def readings(minutes: range, spikes: dict[tuple[str, int], float]) -> list[dict[str, object]]:
    """Two machines, a reading every 10 s; temperature cycles 50/51/52 by minute."""
    events = []
    for minute in minutes:
        for second in range(0, 60, 10):
            for key in KEYS:
                temperature = spikes.get((key, minute), 50.0 + minute % 3)
                events.append(
                    telemetry_event(
                        key,
                        when=T0 + timedelta(minutes=minute, seconds=second),
                        event_id=f"{key}-{minute}-{second}",
                        temperature_c=temperature,
                    )
                )
    return events


def scoring_settings(base: Settings, root: Path) -> Settings:
    settings = job_settings(base, root)
    detector = settings.ml.detector.model_copy(
        update={
            "trigger_interval_s": 1.0,
            "delay_s": 0,
            "warmup_points": 8,
            "min_slot_obs": 1_000_000,  # the whole range only: a few minutes of history
        }
    )
    return settings.model_copy(update={"ml": settings.ml.model_copy(update={"detector": detector})})


def flagged_in_lake(settings: Settings, stream: str) -> list[tuple[str, str, str]]:
    result = run_sql(
        settings,
        f"SELECT key, metric, strftime(window_start, '%H:%M') FROM gold_{stream}_scores "
        "WHERE flagged ORDER BY 3",
    )
    return [tuple(r) for r in result.rows]


def test_live_scores_flag_spikes_and_the_detector_state_survives_a_restart(
    spark: SparkSession, stream_factory: StreamFactory, tmp_path: Path
) -> None:
    base, stream = stream_factory()
    settings = scoring_settings(base, tmp_path)
    series = 1 + 2 * 4  # per machine: events, and the mean and stddev of 4 numeric fields

    # Minutes 0..11; m-0 runs hot in minute 9. The watermark (newest event 08:11:50,
    # no delay) closes the windows of minutes 0..10; minute 11 stays open.
    with EventProducer(settings) as producer:
        producer.send(stream, readings(range(12), {("m-0", 9): 90.0}))
    stats = StreamJob(spark, settings, streams=[stream]).run(until_idle=True, max_seconds=240)
    assert stats[stream].scored == len(KEYS) * series * 11
    assert flagged_in_lake(settings, stream) == [("m-0", "temperature_c", "08:09")]
    # State commits write changelogs (the batch's changes), not snapshots of the store.
    state = Path(settings.checkpoint_uri.removeprefix("file://")) / f"{stream}-scores" / "state"
    assert list(state.rglob("*.changelog"))

    # A restart. Minutes 12..20; m-1 runs hot in minute 15. A new detector would have
    # seen minutes 11..14 only (inside its warm-up of 8) and could not flag it: the flag
    # comes from the state kept in Spark's checkpoint.
    with EventProducer(settings) as producer:
        producer.send(stream, readings(range(12, 21), {("m-1", 15): 90.0}))
    StreamJob(spark, settings, streams=[stream]).run(until_idle=True, max_seconds=240)
    assert flagged_in_lake(settings, stream) == [
        ("m-0", "temperature_c", "08:09"),
        ("m-1", "temperature_c", "08:15"),
    ]
    scored = run_sql(
        settings,
        f"SELECT count(*), count(DISTINCT (key, metric, window_start)) FROM gold_{stream}_scores",
    )
    assert scored.rows == [(len(KEYS) * series * 20,) * 2]  # minutes 0..19, each once

    with psycopg.connect(settings.postgres.conninfo()) as conn:
        alerts = conn.execute(
            "SELECT key, metric, to_char(window_start AT TIME ZONE 'UTC', 'HH24:MI'), "
            "anomaly_score FROM pulsecast.alerts WHERE stream = %s ORDER BY 3",
            (stream,),
        ).fetchall()
        (in_warehouse,) = conn.execute(
            "SELECT count(*) FROM pulsecast.anomaly_scores WHERE stream = %s", (stream,)
        ).fetchone()
    assert [a[:3] for a in alerts] == [
        ("m-0", "temperature_c", "08:09"),
        ("m-1", "temperature_c", "08:15"),
    ]
    assert all(a[3] >= 0.5 for a in alerts)
    assert in_warehouse == len(KEYS) * series * 20

    published = read_since(settings, topic_name(stream, "alerts"), {0: 0})
    messages = [json.loads(r.value) for r in published]
    assert [(m["key"], m["metric"], m["window_start"]) for m in messages] == [
        ("m-0", "temperature_c", "2026-06-01T08:09:00+00:00"),
        ("m-1", "temperature_c", "2026-06-01T08:15:00+00:00"),
    ]
    assert {r.key for r in published} == {"m-0", "m-1"}
    predictions = read_since(settings, topic_name(stream, "predictions"), {0: 0})
    assert len(predictions) == len(KEYS) * series * 20


def test_scores_are_published_through_one_producer_renewed_after_a_failure(
    stream_factory: StreamFactory, tmp_path: Path
) -> None:
    base, stream = stream_factory()
    writer = ScoreWriter(scoring_settings(base, tmp_path), stream, warehouse=None)
    score = {
        "key": "m-0",
        "metric": "temperature_c",
        "window_start": T0,
        "window_end": T0 + timedelta(minutes=1),
        "value": 50.0,
        "count": 6,
        "score": 0.9,
        "flagged": True,
        "forecast": None,
        "horizon_min": None,
        "model_version": None,
    }
    writer._publish([score])
    first = writer._producer
    writer._publish([score])
    assert first is not None and writer._producer is first  # one producer for every batch

    # A message the client refuses (beyond message.max.bytes): the batch fails and
    # its producer is shut; the next batch gets a new one.
    with pytest.raises(KafkaException):
        writer._publish([{**score, "key": "k" * (2 << 20)}])
    assert writer._producer is None
    writer._publish([score])
    assert writer._producer is not None and writer._producer is not first
    writer.close()
    assert writer._producer is None

    settings = writer.settings
    assert len(read_since(settings, topic_name(stream, "predictions"), {0: 0})) == 3
    assert len(read_since(settings, topic_name(stream, "alerts"), {0: 0})) == 3

"""Live forecasts: the running job retrains on its schedule and hot-loads each new champion.

Real Kafka, Spark, Delta, PostgreSQL and an MLflow store (SQLite) in the
test's folder. The job is started once and never restarted: it trains the
first forecaster itself (its schedule comes due), forecasts with it, then
picks up a version promoted by hand, and its forecasts equal what the model
predicts offline from the gold table. The forecasts it resolved are in the
forecast errors table, as ``forecast_vs_actual`` computes them from the scores.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pulsecast.analytics import run_analysis
from pulsecast.analytics.sql import run_sql
from pulsecast.bus import EventProducer, topic_name
from pulsecast.bus.consumer import read_since
from pulsecast.config import Settings
from pulsecast.lake.tables import LakeTables
from pulsecast.ml.features import build_features, gold_series
from pulsecast.ml.registry import ModelRegistry, load_champion
from pulsecast.ml.train import train
from pulsecast.stream.job import StreamJob
from pulsecast.testing import telemetry_event

from .conftest import StreamFactory, job_settings

T0 = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
KEYS = ("m-0", "m-1")


def readings(minutes: range) -> list[dict[str, object]]:
    """Two machines, a reading every 30 s; temperature follows a 40-minute wave."""
    events = []
    for minute in minutes:
        for second in (0, 30):
            t = minute + second / 60
            for i, key in enumerate(KEYS):
                events.append(
                    telemetry_event(
                        key,
                        when=T0 + timedelta(minutes=t),
                        event_id=f"{key}-{minute}-{second}",
                        temperature_c=50.0 + 5 * i + 4 * math.sin(2 * math.pi * t / 40),
                        cpu_util=40.0 + 10 * math.cos(2 * math.pi * t / 40),
                    )
                )
    return events


def forecast_settings(base: Settings, root: Path) -> Settings:
    settings = job_settings(base, root)
    detector = settings.ml.detector.model_copy(
        update={"trigger_interval_s": 1.0, "delay_s": 0, "warmup_points": 8}
    )
    ml = settings.ml.model_copy(
        update={
            "detector": detector,
            "registry_uri": f"sqlite:///{root / 'registry.db'}",
            "artifact_uri": (root / "artifacts").as_uri(),
            "gbt_max_iter": 3,
            "gbt_max_depth": 3,
            "reload_interval_s": 1.0,
            "retrain_interval_min": 60.0,
            "retrain_cooldown_min": 0.0,
        }
    )
    return settings.model_copy(update={"ml": ml})


def drive(job: StreamJob, done: Callable[[], bool], what: str, timeout_s: float = 240) -> None:
    """Run the job's polling loop (as ``StreamJob.wait`` does) until ``done()``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
        job.poll()


def caught_up(job: StreamJob, stream: str, events: int) -> Callable[[], bool]:
    """The job has taken ``events`` valid events in all and has nothing left to do."""
    return lambda: job.stats()[stream].valid >= events and job.idle()


def scores(settings: Settings, stream: str, since_minute: int) -> list[tuple[object, ...]]:
    """Temperature scores from ``since_minute`` on: key, minute, forecast, model version."""
    since = T0 + timedelta(minutes=since_minute)
    result = run_sql(
        settings,
        "SELECT key, CAST(epoch(window_start) - epoch(TIMESTAMPTZ "
        f"'{T0.isoformat()}') AS BIGINT) // 60, forecast, model_version "
        f"FROM gold_{stream}_scores WHERE metric = 'temperature_c' "
        f"AND window_start >= TIMESTAMPTZ '{since.isoformat()}' ORDER BY 2, 1",
    )
    return [tuple(r) for r in result.rows]


def test_the_running_job_retrains_and_hot_loads_each_new_champion(
    spark: SparkSession, stream_factory: StreamFactory, tmp_path: Path
) -> None:
    base, stream = stream_factory()
    settings = forecast_settings(base, tmp_path)
    job = StreamJob(spark, settings, streams=[stream])
    retrainer = job.retrainers[stream]
    scorer = job.scorers[stream]
    job.start()
    try:
        # Two and a half hours of history; no model yet, so no forecasts.
        with EventProducer(settings) as producer:
            producer.send(stream, readings(range(150)))
        drive(job, caught_up(job, stream, 600), "the history to be processed")
        assert scorer.stats.scored > 0 and scorer.stats.forecasts == 0
        assert {r[3] for r in scores(settings, stream, 0)} == {None}
        assert retrainer.due() is None

        # An hour passes: the schedule comes due, the job trains and promotes version 1.
        retrainer.started_at -= timedelta(minutes=61)
        assert retrainer.due() is not None
        drive(job, lambda: bool(retrainer.outcomes), "the scheduled retraining")
        (outcome,) = retrainer.outcomes
        assert (outcome.version, outcome.promoted) == (1, True), outcome
        (v1,) = ModelRegistry(settings).versions(stream, "forecaster")
        assert v1.champion and v1.tags["trigger"] == "schedule"

        with EventProducer(settings) as producer:
            producer.send(stream, readings(range(150, 160)))
        drive(job, caught_up(job, stream, 640), "forecasts by v1")
        live = scores(settings, stream, 150)
        # The watermark (newest event 08:39:30, no delay) closes minutes 150..158.
        assert [(k, m) for k, m, _, _ in live] == [(k, m) for m in range(150, 159) for k in KEYS]
        assert all(f is not None and v == 1 for _, _, f, v in live), live

        # The live forecast equals the model's offline prediction from gold, to the bit.
        model, _ = load_champion(settings, stream, spark=spark)
        gold = spark.read.format("delta").load(
            LakeTables.from_settings(settings).gold(stream, "1m")
        )
        offline = (
            model.predict(build_features(gold_series(gold), model.spec))
            .where(F.col("metric") == "temperature_c")
            .where(F.col("as_of_s") == int((T0 + timedelta(minutes=156)).timestamp()))
            .select("key", "forecast")
            .collect()
        )
        expected = {r["key"]: r["forecast"] for r in offline}
        assert {k: f for k, m, f, _ in live if m == 155} == expected

        # Version 2, promoted by hand while the job runs, is used from the next batch.
        stump = settings.ml.model_copy(update={"gbt_max_iter": 1, "gbt_max_depth": 1})
        second = train(
            spark,
            settings.model_copy(update={"ml": stump}),
            stream,
            kinds=["forecaster"],
            promote=False,
        ).models[0]
        ModelRegistry(settings).promote(stream, "forecaster", second.version, force=True)
        with EventProducer(settings) as producer:
            producer.send(stream, readings(range(160, 170)))
        drive(job, caught_up(job, stream, 680), "forecasts by v2")
        # Minutes 159..168 close now, all forecast by version 2.
        assert second.version == 2
        assert {v for _, _, _, v in scores(settings, stream, 159)} == {2}
        assert len(retrainer.outcomes) == 1  # no schedule came due since
        # Forecasts made by v1 at minutes 150..153 have seen their horizon (5 minutes) out.
        assert scorer.stats.resolved > 0
        drift = scorer.stats.drift
        assert drift is not None and drift.model_version == 2
        assert job.stats()[stream].model_version == 2
    finally:
        job.stop()
        retrainer.wait(60)

    with psycopg.connect(settings.postgres.conninfo()) as conn:
        versions = conn.execute(
            "SELECT model_version, count(*), count(forecast) FROM pulsecast.anomaly_scores "
            "WHERE stream = %s AND metric = 'temperature_c' "
            "AND window_start >= %s GROUP BY 1 ORDER BY 1",
            (stream, T0 + timedelta(minutes=150)),
        ).fetchall()
    assert versions == [(1, 18, 18), (2, 20, 20)]

    # Each forecast the job resolved is in the errors table, as forecast_vs_actual has it.
    errors = run_sql(
        settings,
        f"SELECT * EXCLUDE (window_date) FROM gold_{stream}_forecast_errors "
        "ORDER BY key, metric, window_start",
    ).table.to_pylist()
    detail = run_analysis(
        settings, "forecast_vs_actual", {"stream": stream, "since": "min"}
    ).table.to_pylist()
    assert len(errors) == scorer.stats.resolved > 0
    assert {(r["model_version"], r["horizon_min"]) for r in errors} == {(1, 5), (2, 5)}
    assert len(errors) == len(detail)
    for found, expected in zip(errors, detail, strict=True):
        assert found.keys() == expected.keys()
        for name, value in expected.items():
            want = pytest.approx(value, rel=1e-12) if isinstance(value, float) else value
            assert found[name] == want, (name, found, expected)
    published = [
        json.loads(r.value) for r in read_since(settings, topic_name(stream, "predictions"), {0: 0})
    ]
    mine = [m for m in published if m["metric"] == "temperature_c" and m["model_version"] == 2]
    assert len(mine) == 20
    assert all(m["horizon_min"] == 5 and isinstance(m["forecast"], float) for m in mine)

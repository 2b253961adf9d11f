"""SIGKILL the streaming job mid-stream and restart it: silver and the warehouse are exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from pulsecast.analytics.sql import QueryError, run_sql
from pulsecast.bus import EventProducer
from pulsecast.config import Settings
from pulsecast.sources.produce import simulator_clock
from pulsecast.sources.simulator import FleetSimulator

from .conftest import StreamFactory, job_config, job_settings

EVENTS = 12_000


def silver_batches(settings: Settings, stream: str) -> tuple[int, int]:
    try:
        rows = run_sql(settings, f"SELECT count(*), count(DISTINCT batch_id) FROM silver_{stream}")
    except QueryError:
        return 0, 0
    return rows.rows[0] if rows.rows else (0, 0)


def test_kill_9_mid_stream_then_restart_is_exactly_once(
    stack_settings: Settings, stream_factory: StreamFactory, tmp_path: Path
) -> None:
    base, stream = stream_factory()
    settings = job_settings(base, tmp_path, allowed_lateness_s=86400)
    config = job_config(stack_settings, settings, stream, tmp_path / "job.toml")
    sim = base.simulator.model_copy(
        update={
            "entities": 40,
            "rate_eps": 0,
            "start": "2026-05-01T00:00:00Z",
            "anomalies_per_entity_day": 0,
        }
    )
    start, interval = simulator_clock(sim)
    fleet = FleetSimulator(sim, start=start, interval_s=interval)
    events = [e for _ in range(EVENTS // 40) for e in fleet.next_tick()[1]]
    with EventProducer(settings) as producer:
        assert producer.send(stream, events).accepted == EVENTS

    cmd = [
        sys.executable,
        "-m",
        "pulsecast",
        "--config",
        str(config),
        "stream",
        "run",
        "--stream",
        stream,
    ]
    log = (tmp_path / "job1.log").open("wb")
    first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while silver_batches(settings, stream)[1] < 2:
            assert first.poll() is None, (tmp_path / "job1.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the job wrote no two batches in 240 s"
            time.sleep(0.5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the Python driver and its JVM, like a crash
        first.wait()
    rows_at_crash = silver_batches(settings, stream)[0]
    assert 0 < rows_at_crash < EVENTS, "the crash should come mid-stream"

    second = subprocess.run(
        [*cmd, "--until-idle", "--max-seconds", "300"], capture_output=True, text=True, timeout=400
    )
    assert second.returncode == 0, second.stderr[-3000:]

    exact = run_sql(settings, f"SELECT count(*), count(DISTINCT event_id) FROM silver_{stream}")
    assert exact.rows == [(EVENTS, EVENTS)]
    recomputed = run_sql(
        settings,
        f"""
        SELECT key, time_bucket(INTERVAL 1 MINUTE, event_time) AS w, count(*), avg(temperature_c)
        FROM silver_{stream} GROUP BY 1, 2 ORDER BY 1, 2""",
    ).rows
    with psycopg.connect(settings.postgres.conninfo()) as conn:
        stored = conn.execute(
            "SELECT key, window_start AT TIME ZONE 'UTC', count, mean "
            "FROM pulsecast.gold_aggregates "
            "WHERE stream = %s AND window_name = '1m' AND metric = 'temperature_c' "
            "ORDER BY 1, 2",
            (stream,),
        ).fetchall()
    assert len(stored) == len(recomputed)
    for (k1, w1, c1, m1), (k2, w2, c2, m2) in zip(recomputed, stored, strict=True):
        assert (k1, w1.replace(tzinfo=None), c1) == (k2, w2, c2)
        assert m1 == pytest.approx(m2)

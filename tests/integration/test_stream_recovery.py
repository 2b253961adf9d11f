"""The streaming job where it must survive: a broker restart, a real Spark standalone cluster."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from pulsecast.analytics.sql import run_sql
from pulsecast.bus import EventProducer
from pulsecast.config import Settings
from pulsecast.services.kafka import KafkaService
from pulsecast.services.spark import SparkStandaloneService
from pulsecast.stream.job import StreamJob
from pulsecast.testing import telemetry_event

from .conftest import StreamFactory, free_ports, job_config, job_settings

T0 = datetime(2026, 5, 1, 12, 0, 0)


def readings(first: int, count: int, *, machines: int = 5) -> list[dict[str, object]]:
    """``count`` events, one per machine and second from ``first`` seconds after T0."""
    return [
        telemetry_event(
            f"m-{i % machines}",
            when=(T0 + timedelta(seconds=first + i // machines)).isoformat() + "Z",
            event_id=f"r-{first}-{i}",
            temperature_c=50.0 + (i % 17),
        )
        for i in range(count)
    ]


def wait_for(job: StreamJob, stream: str, valid: int, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while job.writers[stream].stats.valid < valid:
        job.poll()
        assert time.monotonic() < deadline, f"the job processed {job.stats()[stream].as_dict()}"
        time.sleep(0.5)


def test_broker_stopped_and_restarted_mid_stream_loses_nothing(  # type: ignore[no-untyped-def]
    spark,
    stack_settings: Settings,
    stream_factory: StreamFactory,
    tmp_path: Path,
) -> None:
    base, stream = stream_factory()
    settings = job_settings(base, tmp_path, allowed_lateness_s=86400)
    with EventProducer(settings) as producer:
        assert producer.send(stream, readings(0, 300)).accepted == 300
    job = StreamJob(spark, settings, streams=[stream])
    job.start()
    kafka = KafkaService(stack_settings)
    try:
        wait_for(job, stream, 300)
        kafka.stop()
        down_until = time.monotonic() + 8
        while time.monotonic() < down_until:  # the job keeps polling a dead broker
            job.poll()
            time.sleep(0.5)
        kafka.start()
        with EventProducer(settings) as producer:
            assert producer.send(stream, readings(60, 300)).accepted == 300
        wait_for(job, stream, 600)
    finally:
        kafka.start()  # the rest of the suite needs the broker, whatever happened here
        job.stop()
    silver = run_sql(settings, f"SELECT count(*), count(DISTINCT event_id) FROM silver_{stream}")
    assert silver.rows == [(600, 600)]
    gold = run_sql(
        settings,
        f"SELECT sum(count) FROM gold_{stream}_1m WHERE metric = 'temperature_c'",
    )
    assert gold.rows == [(600,)]


def test_the_same_job_runs_on_a_standalone_cluster(
    stack_settings: Settings, stream_factory: StreamFactory, tmp_path: Path
) -> None:
    base, stream = stream_factory()
    master_port, master_ui, worker_ui = free_ports(3)
    cluster = {
        "master_port": master_port,
        "master_webui_port": master_ui,
        "worker_webui_port": worker_ui,
        "worker_cores": 1,
        "worker_memory": "1g",
    }
    settings = job_settings(base, tmp_path, allowed_lateness_s=86400)
    settings = settings.model_copy(
        update={"spark_standalone": settings.spark_standalone.model_copy(update=cluster)}
    )
    spark = SparkStandaloneService(settings)
    master = settings.spark_standalone.master_url
    config = job_config(
        stack_settings, settings, stream, tmp_path / "job.toml", spark_master=master
    )
    with EventProducer(settings) as producer:
        assert producer.send(stream, readings(0, 400)).accepted == 400
    spark.start()
    try:
        job = subprocess.run(
            [
                *(sys.executable, "-m", "pulsecast", "--config", str(config)),
                *("stream", "run", "--stream", stream, "--until-idle", "--max-seconds", "300"),
            ],
            capture_output=True,
            text=True,
            timeout=420,
        )
        assert job.returncode == 0, job.stderr[-3000:]
        state = spark.cluster_state()
    finally:
        spark.stop()
    assert state is not None
    apps = [a["name"] for a in state.get("completedapps", []) + state.get("activeapps", [])]
    assert "pulsecast-stream" in apps, state  # the job ran on the cluster's executors
    silver = run_sql(settings, f"SELECT count(*), count(DISTINCT event_id) FROM silver_{stream}")
    assert silver.rows == [(400, 400)]
    gold = run_sql(settings, f"SELECT sum(count) FROM gold_{stream}_1m WHERE metric = 'cpu_util'")
    assert gold.rows == [(400,)]

from __future__ import annotations

import json
from pathlib import Path

import httpx
import msgspec
from pyspark.sql import SparkSession

from pulsecast.bus.consumer import read_since
from pulsecast.bus.topics import topic_name
from pulsecast.config import Settings, load_settings
from pulsecast.demo import run_demo
from pulsecast.services.dashboard import DashboardService
from pulsecast.services.prometheus import PrometheusService
from pulsecast.services.stack import Stack
from pulsecast.sources.produce import run_replay, run_simulator

from ..conftest import NAB
from .conftest import SMALL_DEMO, StreamFactory, free_ports, job_settings, monitoring_toml


def test_nab_file_replays_with_event_time_kept(stream_factory: StreamFactory) -> None:
    settings, stream = stream_factory("series")
    path = NAB / "realTraffic" / "speed_7578.csv"
    assert path.exists(), f"NAB data missing at {path}"
    rows = path.read_text().splitlines()[1:]
    summary = run_replay(settings, [path], stream=stream)
    assert (summary.sent, summary.accepted, summary.rejected) == (len(rows), len(rows), 0)
    records = read_since(settings, topic_name(stream), {0: 0, 1: 0, 2: 0})
    assert {r.key for r in records} == {"speed_7578"}
    assert len({r.partition for r in records}) == 1
    events = [msgspec.json.decode(r.value) for r in sorted(records, key=lambda r: r.offset)]
    first_time, first_value = rows[0].split(",")
    assert events[0]["event_time"] == first_time.replace(" ", "T") + "Z"
    assert events[0]["payload"] == {"series_id": "speed_7578", "value": float(first_value)}
    assert [e["event_time"] for e in events] == sorted(e["event_time"] for e in events)


def test_simulator_run_writes_labels_and_produces(
    stream_factory: StreamFactory, tmp_path: Path
) -> None:
    settings, stream = stream_factory()
    sim = settings.simulator.model_copy(
        update={
            "rate_eps": 0,
            "entities": 20,
            "anomalies_per_entity_day": 50,
            "labels_file": tmp_path / "labels.jsonl",
            "start": "2026-05-01T00:00:00Z",
        }
    )
    summary, labels = run_simulator(settings, sim, stream=stream, count=5000)
    assert summary.sent == summary.accepted == 5000
    assert labels == tmp_path / "labels.jsonl"
    assert all(json.loads(line)["kind"] for line in labels.read_text().splitlines())
    records = read_since(settings, topic_name(stream), {0: 0, 1: 0, 2: 0})
    assert len(records) == 5000


def demo_config(stack_settings: Settings, root: Path) -> Path:
    """The stack's config file plus the demo's lake, registry, dashboard and Prometheus ports.

    The dashboard and the monitor run as servers of their own and read this file.
    """
    assert stack_settings.config_file is not None
    (dashboard,) = free_ports(1)
    path = root / "demo.toml"
    path.write_text(
        stack_settings.config_file.read_text()
        + f"""
[lake]
uri = "{(root / "lake").as_uri()}"
[ml]
registry_uri = "sqlite:///{root / "registry.db"}"
artifact_uri = "{(root / "artifacts").as_uri()}"
gbt_max_iter = 3
backfill_interval_s = 30.0
[dashboard]
port = {dashboard}
{monitoring_toml()}"""
    )
    return path


def test_demo_reads_back_everything_it_sent(
    stack: Stack, stack_settings: Settings, spark: SparkSession, tmp_path: Path
) -> None:
    settings = job_settings(load_settings(demo_config(stack_settings, tmp_path)), tmp_path)
    try:
        result = run_demo(settings, **SMALL_DEMO, with_=["dashboard", "prometheus"])
        # The dashboard outlives the demo, showing its stream.
        meta = httpx.get(f"{settings.dashboard.url}/api/meta", timeout=10)
        assert meta.status_code == 200 and meta.json()["stream"] == "telemetry", meta.text
    finally:
        DashboardService(settings).stop()
        PrometheusService(settings).stop()
    assert result.ok, "\n".join(result.lines())
    # Prometheus scraped the streaming job while it ran.
    dashboard, prometheus = result.watch
    assert dashboard.split()[:2] == ["dashboard", settings.dashboard.url], dashboard
    assert "scraped the streaming job:" in prometheus, prometheus
    assert int(prometheus.split("job: ")[1].split()[0].replace(",", "")) > 0, prometheus
    # 2.4 h of history, the models trained on it, its windows scored and forecast.
    history, forecaster, detector, scoring, truth, _ = result.ml
    assert history.split()[:5] == ["history", "576", "events", "of", "2"], history
    assert forecaster.startswith("  trained         forecaster version 1, champion: holdout MAE")
    assert detector.startswith("  trained         detector version 1, champion: holdout MAE")
    assert result.processed is not None and result.processed.model_version == 1
    assert result.processed.forecasts > 0 and result.processed.scored > 0
    assert "forecasts by the forecaster version 1" in scoring
    assert truth.startswith("  vs ground truth ") and "precision" in truth
    assert result.produced.sent > 0  # as many as the machine's load allows in 3 s
    assert result.produced.rejected > 0  # the demo exercises the dead-letter path
    assert result.dead_letters_read == result.produced.rejected
    assert result.processed is not None
    assert result.tables["silver_telemetry"] == result.processed.valid + 576
    assert result.tables["gold_telemetry_1m"] > 0
    assert result.warehouse_rows > 0

"""End to end: the Kafka lag alert fires when the streaming job stops, and resolves when it is back.

With the session's Kafka, PostgreSQL and HTTP ingest, Prometheus, Alertmanager
and the monitor are started by pulsecast's own launcher (every rule's ``for:``
at 2 s through ``monitoring.rule_for_s``, intervals at 1 s), and the real
streaming job runs as ``python -m pulsecast stream run`` for the ``telemetry``
stream (one the session's ingest serves) while a thread keeps posting events
to the ingest, each request with its own ``X-Request-ID``:

1. the job's batch log record lists the request ids of its batch (the
   correlation id went from the ingest, through Kafka's headers, to Spark);
2. ``pulsecast status`` shows the job's rows, its last batch and the lag;
3. the job is stopped (Ctrl-C) while events keep arriving: the monitor's lag,
   read from the job's checkpoint, grows, PulsecastKafkaLagGrowing fires and
   the webhook receiver records it;
4. the job is started again: it drains the backlog from its checkpoint, the
   alert resolves and the receiver records ``resolved``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from typer.testing import CliRunner

from pulsecast.bus.admin import TopicAdmin
from pulsecast.bus.consumer import end_offsets, read_since
from pulsecast.bus.topics import topic_name
from pulsecast.cli import app
from pulsecast.config import Settings, load_settings
from pulsecast.monitoring import read_alerts
from pulsecast.monitoring.correlation import CORRELATION_HEADER
from pulsecast.monitoring.status import parse_metrics
from pulsecast.monitoring.webhook import RecordedAlert
from pulsecast.services.stack import Stack
from pulsecast.testing import telemetry_event

from .conftest import monitoring_toml, prometheus_running

STREAM = "telemetry"  # served by the session's ingest
LAG_ALERT = "PulsecastKafkaLagGrowing"
LAG_FLOOR = 10_000  # the rule's threshold, records
RUNNING_EPS = 40  # events/s while the job runs: it keeps up, even on a busy machine
STOPPED_EPS = 1500  # while it is stopped: past the floor within seconds


def alert_config(stack_settings: Settings, root: Path) -> Path:
    """The stack's config plus this test's lake, checkpoints, job cadence and monitoring ports."""
    assert stack_settings.config_file is not None
    extra = f"""
[lake]
uri = "{(root / "lake").as_uri()}"
[stream]
trigger_interval_s = 1.0
idle_timeout_s = 4.0
max_offsets_per_trigger = 25000
allowed_lateness_s = 86400
checkpoint_uri = "{(root / "checkpoints").as_uri()}"
[spark]
master = "local[2]"
shuffle_partitions = 2
[spark.conf]
"spark.ui.showConsoleProgress" = "false"
"spark.databricks.delta.snapshotPartitions" = "2"
[ml.detector]
enabled = false
{monitoring_toml(rule_for_s=2)}"""
    path = root / "pulsecast.toml"
    path.write_text(stack_settings.config_file.read_text() + extra)
    return path


@pytest.fixture(scope="module")
def alerting(
    stack: Stack, stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """Prometheus, Alertmanager and the monitor for the session's stack (this test's config)."""
    settings = load_settings(alert_config(stack_settings, tmp_path_factory.mktemp("alert-e2e")))
    with prometheus_running(settings):
        yield settings


class Traffic:
    """Posts telemetry events to the ingest from a thread, ``rate_eps`` a second.

    Each request carries its own ``X-Request-ID`` (``e2e-<n>``); the ids the
    ingest answered with are kept.
    """

    def __init__(self, url: str) -> None:
        self.url = f"{url}/v1/streams/{STREAM}/events"
        self.rate_eps = 0.0
        self.accepted = 0
        self.ids: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._run_id = uuid.uuid4().hex[:6]

    def start(self, rate_eps: float) -> None:
        self.rate_eps = rate_eps
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            n = 0
            while not self._stop.is_set():
                started = time.monotonic()
                now = datetime.now(UTC).isoformat()
                size = max(100, int(self.rate_eps / 4))  # about 4 requests a second
                events = [
                    telemetry_event(f"e2e-{i % 50}", when=now, event_id=f"{self._run_id}-{n}-{i}")
                    for i in range(size)
                ]
                request_id = f"e2e-{self._run_id}-{n}"
                try:
                    reply = client.post(
                        self.url,
                        content=msgspec.json.encode(events),
                        headers={"X-Request-ID": request_id},
                    )
                except httpx.HTTPError as exc:
                    self.errors.append(str(exc))
                else:
                    if reply.status_code == 200:
                        self.accepted += reply.json()["accepted"]
                        self.ids.append(reply.headers["X-Request-ID"])
                    else:
                        self.errors.append(f"{reply.status_code} {reply.text[:200]}")
                n += 1
                pause = size / max(self.rate_eps, 1.0) - (time.monotonic() - started)
                self._stop.wait(max(pause, 0.0))


def start_job(config: Path, log_file: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "pulsecast", "--config", str(config), "stream", "run"]
    env = {**os.environ, "PULSECAST_LOG__FORMAT": "json", "SPARK_LOCAL_IP": "127.0.0.1"}
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [*cmd, "--stream", STREAM],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def stop_job(job: subprocess.Popen[bytes]) -> None:
    """Ctrl-C: the job stops its queries (a batch in progress completes) and exits."""
    if job.poll() is not None:
        return
    job.send_signal(signal.SIGINT)
    try:
        job.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        pytest.fail("the streaming job did not stop within 90 s of Ctrl-C")
    with_jvm = subprocess.run(["pgrep", "-g", str(job.pid)], capture_output=True, check=False)
    if with_jvm.stdout.strip():  # Spark's JVM outlived its driver: stop it too
        os.killpg(job.pid, signal.SIGKILL)


def wait_for(
    what: str, found: Callable[[], Any], *, timeout_s: float, alive: Callable[[], None]
) -> Any:
    started = time.monotonic()
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        alive()
        result = found()
        if result:
            print(f"e2e: {what} after {time.monotonic() - started:.0f} s")  # pytest -s
            return result
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def batch_records(log_file: Path) -> list[dict[str, Any]]:
    """The job's per-batch JSON log records (other lines, Spark's own, are skipped)."""
    records = []
    for line in log_file.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("logger") == "pulsecast.stream.job" and "correlation_ids" in record:
            records.append(record)
    return records


def lag_alerts(settings: Settings, status: str) -> list[RecordedAlert]:
    return [
        a
        for a in read_alerts(settings, status=status)
        if a.alertname == LAG_ALERT and a.labels.get("consumer") == f"pulsecast-{STREAM}"
    ]


def status_json(config: Path) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["--config", str(config), "status", "--json"])
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def stream_rates(report: dict[str, Any]) -> dict[str, Any]:
    rates: dict[str, Any] = next(s for s in report["rates"]["streams"] if s["stream"] == STREAM)
    return rates


# Two Spark starts and the first batches' code generation: minutes when the 2 cores are shared.
@pytest.mark.timeout(1800)
def test_lag_alert_fires_when_the_job_stops_and_resolves_when_it_is_back(
    alerting: Settings, tmp_path: Path
) -> None:
    settings = alerting
    assert settings.config_file is not None
    config = settings.config_file
    topic = topic_name(STREAM)
    before = end_offsets(settings, topic, TopicAdmin(settings).partitions(topic))
    log_file = tmp_path / "job.log"
    traffic = Traffic(settings.ingest.url)
    job = start_job(config, log_file)
    started = time.monotonic()

    def job_alive() -> None:
        assert job.poll() is None, log_file.read_text(errors="replace")[-3000:]

    def traffic_fine() -> None:
        assert not traffic.errors, traffic.errors[:3]

    def query_active() -> bool:
        url = f"http://{settings.monitoring.host}:{settings.monitoring.job_metrics_port}/metrics"
        try:
            page = parse_metrics(httpx.get(url, timeout=5).text)
        except (httpx.HTTPError, ValueError):
            return False
        active = page.get("pulsecast_stream_query_active", [])
        return ({"query": f"pulsecast-{STREAM}"}, 1.0) in active

    try:
        # The job's first start creates its Delta tables: minutes on a busy 2-core machine.
        wait_for("the job's query to run", query_active, timeout_s=600, alive=job_alive)
        job_ready_s = time.monotonic() - started
        traffic.start(rate_eps=RUNNING_EPS)

        # 1. The job processes the ingest's events; its batch log lists their request ids.
        def logged_ids() -> list[tuple[dict[str, Any], set[str]]]:
            sent = set(traffic.ids)
            return [
                (r, set(r["correlation_ids"].split(",")) & sent)
                for r in batch_records(log_file)
                if set(r["correlation_ids"].split(",")) & sent
            ]

        record, ids = wait_for(
            "a batch log record listing the requests' ids",
            logged_ids,
            timeout_s=600,
            alive=job_alive,
        )[0]
        assert record["level"] == "INFO"
        assert (record["stream"], record["correlation_id_count"] > 0) == (STREAM, True)
        assert len(record["correlation_ids"].split(",")) <= min(record["correlation_id_count"], 20)
        assert all(i.startswith("e2e-") for i in ids)
        stored = read_since(settings, topic, before)
        carried = {r.headers.get(CORRELATION_HEADER) for r in stored}
        assert ids <= carried
        assert all(r.headers.get(CORRELATION_HEADER) for r in stored)

        # 2. `pulsecast status` shows the job's rows and its last batch, and the monitor's lag.
        def busy_status() -> dict[str, Any] | None:
            report = status_json(config)
            rates = stream_rates(report)
            shown = (rates["rows_per_s"] or 0) > 0 and rates["lag_records"] is not None
            return report if shown else None

        report = wait_for(
            "status to show the job's rows", busy_status, timeout_s=180, alive=job_alive
        )
        components = report["rates"]["components"]
        assert {n: c["running"] for n, c in components.items()} == {
            "ingest": True,
            "stream": True,
            "monitor": True,
        }
        rates = stream_rates(report)
        assert rates["batch_s"] > 0
        assert rates["events_in_per_s"] is not None
        services = {s["name"]: s["running"] for s in report["services"]}
        assert services["kafka"] and services["postgres"] and services["ingest"]
        assert services["prometheus"]
        text = CliRunner().invoke(app, ["--config", str(config), "status"]).stdout
        assert "stream job running" in text
        assert any(line.startswith(STREAM) for line in text.splitlines())
        # The job keeps up: any lag alert of its start (a busy machine) has resolved.
        wait_for(
            "the job to keep up (no lag alert firing)",
            lambda: len(lag_alerts(settings, "resolved")) >= len(lag_alerts(settings, "firing")),
            timeout_s=300,
            alive=job_alive,
        )
        fired_before = len(lag_alerts(settings, "firing"))
        resolved_before = len(lag_alerts(settings, "resolved"))

        # 3. Stop the job; events keep coming: the lag grows, the alert fires and is recorded.
        stop_job(job)
        stopped_at = time.monotonic()
        traffic.rate_eps = STOPPED_EPS
        fired = wait_for(
            f"{LAG_ALERT} to fire",
            lambda: lag_alerts(settings, "firing")[fired_before:],
            timeout_s=240,
            alive=traffic_fine,
        )[0]
        fired_after_s = time.monotonic() - stopped_at
        assert fired.labels["topic"] == topic
        assert fired.severity == "warning"
        assert fired.receiver == "pulsecast-webhook"
        lag_now = stream_rates(status_json(config))["lag_records"]
        assert lag_now > LAG_FLOOR
        assert stream_rates(status_json(config))["rows_per_s"] is None  # the job is gone

        # 4. Start it again: it drains the backlog from its checkpoint, the alert resolves.
        traffic.rate_eps = RUNNING_EPS
        job = start_job(config, log_file)
        restarted_at = time.monotonic()
        resolved = wait_for(
            f"{LAG_ALERT} to resolve",
            lambda: lag_alerts(settings, "resolved")[resolved_before:],
            timeout_s=600,
            alive=job_alive,
        )[0]
        resolved_after_s = time.monotonic() - restarted_at
        assert resolved.fingerprint == fired.fingerprint
        assert stream_rates(status_json(config))["lag_records"] < lag_now  # draining
        traffic_fine()
        print(  # the test's timings, for the report (pytest -s)
            f"e2e: job's query ran after {job_ready_s:.0f} s, stopped after "
            f"{stopped_at - started:.0f} s; alert fired "
            f"{fired_after_s:.0f} s after the stop (lag {lag_now:,}); resolved "
            f"{resolved_after_s:.0f} s after the restart; {traffic.accepted:,} events sent"
        )
        print(text)
    finally:
        traffic.stop()
        stop_job(job)

"""Real Prometheus, Alertmanager and monitor, started by pulsecast's own launcher.

The shipped alert rules run with their ``for:`` shortened to seconds, every
interval at one second. A real target, the monitor's probes, exposes
``pulsecast_service_up{service="kafka"} 0`` (nothing listens on the Kafka
port): PulsecastComponentDown fires, Alertmanager posts it to the monitor,
which records it. Once something listens on the port the alert resolves and
that is recorded too. The streaming job's ``/metrics`` (served by this test
process) is scraped and stays quiet.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pulsecast.config import Settings, load_settings
from pulsecast.monitoring import read_alerts
from pulsecast.monitoring.metrics import STREAM_QUERY_ACTIVE
from pulsecast.monitoring.stream_metrics import serve_metrics
from pulsecast.monitoring.webhook import RecordedAlert
from pulsecast.services.prometheus import PrometheusService, default_rules_dir
from tests.conftest import REPO
from tests.integration.conftest import free_ports, monitoring_toml, prometheus_running


def fast_rules(folder: Path) -> Path:
    """The shipped rules with every ``for:`` at 2 s."""
    folder.mkdir()
    for path in default_rules_dir().glob("*.yml"):
        text = re.sub(r"(?m)^(\s+for:) \S+$", r"\1 2s", path.read_text())
        (folder / path.name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    root = tmp_path_factory.mktemp("prometheus")
    (kafka,) = free_ports(1)
    # A configuration file, as `pulsecast up` has: the monitor it starts reads the same one.
    config = root / "pulsecast.toml"
    config.write_text(
        f"""
[paths]
data_dir = "{root / "state"}"
[kafka]
bootstrap_servers = "127.0.0.1:{kafka}"
[postgres]
dsn = "postgresql://127.0.0.1:1/none"
[ingest]
enabled = false
{monitoring_toml(rules_dir=str(fast_rules(root / "rules")))}"""
    )
    with prometheus_running(load_settings(config)) as settings:
        yield settings


def wait_for(what: str, found: Callable[[], Any], timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = found()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def recorded(settings: Settings, status: str, component: str) -> list[RecordedAlert]:
    return [
        a
        for a in read_alerts(settings, status=status)
        if a.alertname == "PulsecastComponentDown" and a.labels.get("component") == component
    ]


def test_alert_fires_reaches_the_webhook_and_resolves(monitoring: Settings) -> None:
    settings = monitoring
    mon = settings.monitoring
    STREAM_QUERY_ACTIVE.labels("pulsecast-it").set(1)
    job_server = serve_metrics(settings)
    assert job_server is not None
    try:
        status = PrometheusService(settings).status()
        assert status.running, status.detail

        def targets_up() -> bool:
            reply = httpx.get(f"{mon.prometheus_url}/api/v1/targets", timeout=5).json()
            health = {t["labels"]["job"]: t["health"] for t in reply["data"]["activeTargets"]}
            return health == {
                "pulsecast-prometheus": "up",
                "pulsecast-alertmanager": "up",
                "pulsecast-monitor": "up",
                "pulsecast-stream": "up",
            }

        wait_for("every target to be scraped", targets_up, timeout_s=30)

        # Nothing listens on the Kafka port: the probe says 0, the rule fires, the webhook records.
        fired = wait_for("the firing alert", lambda: recorded(settings, "firing", "kafka"))
        assert fired[0].severity == "critical"
        assert fired[0].labels["service"] == "kafka"
        assert fired[0].annotations["summary"] == "kafka is down"
        assert fired[0].receiver == "pulsecast-webhook"

        # Something answers on the port now: the alert resolves.
        kafka_port = int(settings.kafka.bootstrap.rpartition(":")[2])
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", kafka_port))
            listener.listen(16)
            resolved = wait_for(
                "the resolved alert", lambda: recorded(settings, "resolved", "kafka")
            )
        assert resolved[0].fingerprint == fired[0].fingerprint

        # The job's target was up throughout: nothing about it.
        assert not any(a.labels.get("component") == "stream" for a in read_alerts(settings))
        reply = httpx.get(
            f"{mon.prometheus_url}/api/v1/query",
            params={"query": 'pulsecast_stream_query_active{query="pulsecast-it"}'},
            timeout=5,
        ).json()
        assert [r["value"][1] for r in reply["data"]["result"]] == ["1"]
    finally:
        job_server.shutdown()
        job_server.server_close()


def test_each_metrics_endpoint_passes_promtool_check_metrics(monitoring: Settings) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/system-deps.sh"
    mon = monitoring.monitoring
    job_server = serve_metrics(monitoring)
    assert job_server is not None
    try:
        for url in (f"{mon.monitor_url}/metrics", f"http://{mon.host}:{mon.job_metrics_port}/"):
            text = httpx.get(url, timeout=10).text
            assert "# TYPE pulsecast_" in text
            check = subprocess.run(
                [promtool, "check", "metrics"],
                input=text,
                capture_output=True,
                text=True,
                check=False,
            )
            assert check.returncode == 0, f"{url}: {check.stdout}{check.stderr}"
    finally:
        job_server.shutdown()
        job_server.server_close()


def test_dashboard_queries_run_on_prometheus(monitoring: Settings) -> None:
    """Every panel's PromQL parses and evaluates (Grafana's variables filled in)."""
    url = f"{monitoring.monitoring.prometheus_url}/api/v1/query"
    boards = sorted((REPO / "infra" / "grafana" / "dashboards").glob("*.json"))
    exprs = [
        target["expr"]
        for board in boards
        for panel in json.loads(board.read_text())["panels"]
        for target in panel.get("targets", [])
    ]
    assert len(exprs) > 30
    for expr in exprs:
        query = expr.replace("$__rate_interval", "1m")
        query = re.sub(r"\$(stream|query|topic)\b", ".*", query)
        reply = httpx.get(url, params={"query": query}, timeout=10).json()
        assert reply["status"] == "success", f"{expr}: {reply.get('error')}"


def test_up_twice_keeps_the_processes_and_down_stops_them(monitoring: Settings) -> None:
    service = PrometheusService(monitoring)
    before = service.status()
    again = service.start()  # idempotent: the same processes, configuration reloaded
    assert again.running
    assert (again.pid, again.extra["monitor_pid"]) == (before.pid, before.extra["monitor_pid"])
    assert service.stop() is True
    after = service.status()
    assert (after.running, after.pid) == (False, None)
    mon = monitoring.monitoring
    for port in (mon.prometheus_port, mon.alertmanager_port, mon.monitor_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{mon.host}:{port}/", timeout=2)

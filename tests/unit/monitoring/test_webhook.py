"""The alert receiver: Alertmanager's notifications recorded and read back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest
from prometheus_client import REGISTRY

from pulsecast.monitoring import read_alerts
from pulsecast.monitoring.monitor import create_app
from pulsecast.monitoring.webhook import AlertLog, alerts_file, parse_notification
from pulsecast.testing import settings_for

NOW = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)


def notification(status: str = "firing", *components: str) -> bytes:
    """A webhook notification as Alertmanager 0.25 posts it (payload version 4)."""
    alerts = [
        {
            "status": status,
            "labels": {
                "alertname": "PulsecastComponentDown",
                "component": component,
                "severity": "critical",
            },
            "annotations": {"summary": f"{component} is down"},
            "startsAt": "2026-11-28T04:58:00Z",
            "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-28T05:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up",
            "fingerprint": f"fp-{component}",
        }
        for component in components or ("kafka",)
    ]
    return msgspec.json.encode(
        {
            "version": "4",
            "groupKey": '{}:{alertname="PulsecastComponentDown"}',
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "pulsecast-webhook",
            "groupLabels": {"alertname": "PulsecastComponentDown"},
            "commonLabels": {"alertname": "PulsecastComponentDown"},
            "commonAnnotations": {},
            "externalURL": "http://127.0.0.1:9095",
            "alerts": alerts,
        }
    )


def test_parse_notification_gives_one_row_per_alert() -> None:
    rows = parse_notification(notification("firing", "kafka", "postgres"), now=NOW)
    assert [(r.alertname, r.status, r.labels["component"]) for r in rows] == [
        ("PulsecastComponentDown", "firing", "kafka"),
        ("PulsecastComponentDown", "firing", "postgres"),
    ]
    first = rows[0]
    assert first.received_at == "2026-11-28T05:00:00+00:00"
    assert (first.severity, first.fingerprint, first.receiver) == (
        "critical",
        "fp-kafka",
        "pulsecast-webhook",
    )
    assert first.annotations == {"summary": "kafka is down"}
    assert first.starts_at == "2026-11-28T04:58:00Z"


def test_parse_notification_refuses_what_is_not_one() -> None:
    with pytest.raises(ValueError, match="not an Alertmanager webhook notification"):
        parse_notification(b'{"hello": 1}')


def test_alert_log_appends_and_reads_back_skipping_a_torn_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "alerts.jsonl"
    log = AlertLog(path)
    assert log.read() == []
    log.append(parse_notification(notification("firing", "kafka", "postgres"), now=NOW))
    with path.open("ab") as out:
        out.write(b'{"received_at": "2026-11-28T05:0\n')  # a crash mid-write
    log.append(parse_notification(notification("resolved", "kafka"), now=NOW))
    assert [(a.status, a.labels["component"]) for a in log.read()] == [
        ("firing", "kafka"),
        ("firing", "postgres"),
        ("resolved", "kafka"),
    ]
    assert "skipped unreadable line 3" in caplog.text
    assert [a.labels["component"] for a in log.read(limit=2)] == ["postgres", "kafka"]
    assert [a.labels["component"] for a in log.read(status="firing", limit=1)] == ["postgres"]


def test_monitor_records_what_alertmanager_posts(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    app = create_app(settings)
    before = REGISTRY.get_sample_value("pulsecast_alerts_received_total", {"status": "firing"})

    async def exchange() -> tuple[int, int, list[dict[str, object]], int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://monitor") as client:
            posted = await client.post("/alerts", content=notification("firing", "kafka"))
            bad = await client.post("/alerts", content=b"[]")
            listed = await client.get("/alerts", params={"status": "firing"})
            health = await client.get("/healthz")
            return posted.status_code, bad.status_code, listed.json(), health.status_code

    posted, bad, listed, health = asyncio.run(exchange())
    assert (posted, bad, health) == (204, 400, 200)
    assert [(a["alertname"], a["status"]) for a in listed] == [("PulsecastComponentDown", "firing")]
    assert alerts_file(settings) == tmp_path / "monitoring" / "alerts.jsonl"
    assert [a.fingerprint for a in read_alerts(settings)] == ["fp-kafka"]
    after = REGISTRY.get_sample_value("pulsecast_alerts_received_total", {"status": "firing"})
    assert (after or 0) - (before or 0) == 1

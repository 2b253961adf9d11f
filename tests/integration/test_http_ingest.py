from __future__ import annotations

import shutil
import subprocess

import httpx
import msgspec

from pulsecast.bus.admin import TopicAdmin
from pulsecast.bus.consumer import end_offsets, read_since
from pulsecast.bus.topics import topic_name
from pulsecast.config import Settings
from pulsecast.services.stack import Stack
from pulsecast.testing import telemetry_event
from tests.unit.monitoring.conftest import Samples, increase, parse_samples


def ends(settings: Settings, topic: str) -> dict[int, int]:
    return end_offsets(settings, topic, TopicAdmin(settings).partitions(topic))


def test_http_ingest_round_trip_with_rejects(stack: Stack, stack_settings: Settings) -> None:
    settings = stack_settings
    url = f"{settings.ingest.url}/v1/streams/telemetry/events"
    before_events = ends(settings, topic_name("telemetry"))
    before_dlq = ends(settings, topic_name("telemetry", "dlq"))
    batch = [
        telemetry_event("h-1", when="2026-05-01T00:00:00Z"),
        telemetry_event("h-2", when="2026-05-01T00:00:00Z", cpu_util=-3),
        {"payload": {"entity_id": "h-3"}},
        telemetry_event("h-4", when="2026-05-01T00:00:01Z", event_id="mine"),
    ]
    response = httpx.post(
        url,
        content=msgspec.json.encode({"events": batch}),
        headers={"X-Request-ID": "round-trip-1"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "round-trip-1"
    body = response.json()
    assert (body["accepted"], body["rejected"], body["failed"]) == (2, 2, 0)
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["accepted", "rejected", "rejected", "accepted"]
    assert body["results"][1] == {
        "index": 1,
        "status": "rejected",
        "reason": "out_of_range",
        "field": "payload.cpu_util",
        "message": "payload.cpu_util: expected float >= 0.0",
    }
    assert body["results"][2]["reason"] == "missing_field"
    assert body["results"][3]["event_id"] == "mine"

    stored = read_since(settings, topic_name("telemetry"), before_events)
    ids = {msgspec.json.decode(r.value)["event_id"] for r in stored}
    assert ids == {body["results"][0]["event_id"], "mine"}
    dead = read_since(settings, topic_name("telemetry", "dlq"), before_dlq)
    assert sorted(r.headers["pulsecast.reason"] for r in dead) == ["missing_field", "out_of_range"]
    assert {r.headers["pulsecast.source"] for r in dead} == {"http"}
    # The request's correlation id goes with its events and its dead letters.
    assert {r.headers["pulsecast-correlation-id"] for r in [*stored, *dead]} == {"round-trip-1"}


def test_http_ingest_refuses_what_is_not_a_batch(stack: Stack, stack_settings: Settings) -> None:
    base = f"{stack_settings.ingest.url}/v1/streams"
    unknown = httpx.post(f"{base}/nope/events", content=b"[]")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "unknown stream 'nope'; configured: series, telemetry"}
    broken = httpx.post(f"{base}/telemetry/events", content=b'{"events": [')
    assert broken.status_code == 400
    too_many = msgspec.json.encode([telemetry_event()] * 1001)
    big = httpx.post(f"{base}/telemetry/events", content=too_many)
    assert big.status_code == 413
    assert big.json() == {"error": "batch of 1001 events exceeds 1000"}
    bare = httpx.post(
        f"{base}/telemetry/events", content=msgspec.json.encode([telemetry_event("h-9")])
    )
    assert bare.status_code == 200
    assert bare.json()["accepted"] == 1
    assert httpx.get(f"{stack_settings.ingest.url}/healthz").json()["status"] == "ok"


def test_http_ingest_metrics_after_accepted_and_rejected_events(
    stack: Stack, stack_settings: Settings
) -> None:
    base = stack_settings.ingest.url

    def scrape() -> Samples:
        return parse_samples(httpx.get(f"{base}/metrics", timeout=10).text)

    before = scrape()
    batch = [
        telemetry_event("m-1"),
        telemetry_event("m-2"),
        telemetry_event("m-3", cpu_util=500),
        {"payload": {"entity_id": "m-4"}},
    ]
    url = f"{base}/v1/streams/telemetry/events"
    assert httpx.post(url, content=msgspec.json.encode(batch), timeout=30).status_code == 200
    assert httpx.post(url, content=msgspec.json.encode(batch[:1]), timeout=30).status_code == 200
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return increase(before, after, name, **labels)

    events = "pulsecast_ingest_events_total"
    assert delta(events, stream="telemetry", status="accepted") == 3
    assert delta(events, stream="telemetry", status="rejected") == 2
    rejections = "pulsecast_ingest_rejections_total"
    assert delta(rejections, stream="telemetry", reason="out_of_range") == 1
    assert delta(rejections, stream="telemetry", reason="missing_field") == 1
    assert delta("pulsecast_ingest_requests_total", stream="telemetry", code="200") == 2
    assert delta("pulsecast_ingest_request_duration_seconds_count", stream="telemetry") == 2
    assert delta("pulsecast_ingest_batch_events_sum", stream="telemetry") == 5

    # What Prometheus scrapes passes Prometheus's own linter.
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/system-deps.sh"
    text = httpx.get(f"{base}/metrics", timeout=10).text
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr

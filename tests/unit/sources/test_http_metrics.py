"""The HTTP ingest's /metrics, for answers that need no Kafka (the round trip is in integration)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import httpx
import msgspec
from tests.unit.monitoring.conftest import Samples, increase, parse_samples

from pulsecast.sources.http import create_app
from pulsecast.testing import settings_for, telemetry_event


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse_samples(response.text)


def test_http_metrics_count_refused_requests_by_code(tmp_path: Path) -> None:
    # These answers come before anything is produced: no Kafka (and no lifespan) needed.
    app = create_app(settings_for(tmp_path, ingest={"max_batch_events": 2}))
    three = msgspec.json.encode([telemetry_event()] * 3)

    async def exchange() -> tuple[Samples, list[int], Samples]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            before = await scrape(client)
            codes = [
                (await client.post("/v1/streams/nope/events", content=b"[]")).status_code,
                (await client.post("/v1/streams/telemetry/events", content=b"{")).status_code,
                (await client.post("/v1/streams/telemetry/events", content=three)).status_code,
            ]
            return before, codes, await scrape(client)

    before, codes, after = asyncio.run(exchange())
    assert codes == [404, 400, 413]

    def delta(name: str, **labels: str) -> float:
        return increase(before, after, name, **labels)

    requests = "pulsecast_ingest_requests_total"
    assert delta(requests, stream="unknown", code="404") == 1
    assert delta(requests, stream="telemetry", code="400") == 1
    assert delta(requests, stream="telemetry", code="413") == 1
    assert delta("pulsecast_ingest_request_duration_seconds_count", stream="telemetry") == 2
    assert delta("pulsecast_ingest_request_duration_seconds_count", stream="unknown") == 1
    # Refused requests are not events.
    assert delta("pulsecast_ingest_events_total", stream="telemetry", status="accepted") == 0
    assert "/metrics" not in app.openapi()["paths"]


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_http_ingest_shuts_its_producer_down_when_it_stops(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    with socket.socket() as sock:  # a port nothing listens on: librdkafka keeps reconnecting
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(settings_for(tmp_path, kafka={"port": port}))
    before = _threads()
    with TestClient(app) as client:  # runs the lifespan: the producer and its poller start
        assert client.get("/healthz").status_code == 200
        assert _threads() > before
    # The app object outlives its server here: its producer's threads must still stop.
    deadline = time.monotonic() + 5
    while _threads() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _threads() == before

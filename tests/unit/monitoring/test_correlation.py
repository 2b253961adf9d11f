"""The correlation id: the ingest's X-Request-ID (Kafka and the job's log are in integration)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from pulsecast.monitoring.correlation import REQUEST_ID_HEADER, request_id
from pulsecast.sources.http import create_app
from pulsecast.testing import settings_for


@pytest.mark.parametrize(
    "given",
    ["req-42", "0b5a3c1e-6f4d-4f7e-9d59-0c8f1c2b9a10", "trace:span/1+2=3@edge", "x" * 128],
)
def test_correlation_request_id_keeps_a_usable_client_id(given: str) -> None:
    assert request_id(given) == given


@pytest.mark.parametrize("given", [None, "", "two words", "x" * 129, "a\nb", 'q"uote', "é"])
def test_correlation_request_id_replaces_anything_else(given: str | None) -> None:
    made = request_id(given)
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert made != request_id(given)  # a new one each time


def test_correlation_ingest_answers_with_the_request_id(tmp_path: Path) -> None:
    # Refused before anything is produced: no Kafka (and no lifespan) needed.
    app = create_app(settings_for(tmp_path))

    async def exchange() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            return [
                await client.post(
                    "/v1/streams/telemetry/events", content=b"{", headers={"X-Request-ID": "r-1"}
                ),
                await client.post("/v1/streams/nope/events", content=b"[]"),
                await client.post(
                    "/v1/streams/telemetry/events",
                    content=b"{",
                    headers={"x-request-id": "bad id with spaces"},
                ),
            ]

    given, made, replaced = asyncio.run(exchange())
    assert (given.status_code, given.headers[REQUEST_ID_HEADER]) == (400, "r-1")
    assert made.status_code == 404
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers[REQUEST_ID_HEADER])
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers[REQUEST_ID_HEADER])

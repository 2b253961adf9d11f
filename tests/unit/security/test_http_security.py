"""The HTTP ingest with security on: API keys, roles, rate limits, size limits (no Kafka).

Requests that pass the guard carry an invalid body, so the answer (400) comes
before anything would be produced: no Kafka and no lifespan are needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient

from pulsecast.config import Settings
from pulsecast.security.apikeys import ApiKeyStore
from pulsecast.security.audit import audit_log
from pulsecast.security.keys import keystore_for
from pulsecast.sources.http import create_app
from pulsecast.testing import settings_for, telemetry_event

URL = "/v1/streams/telemetry/events"


def secure(tmp_path: Path, **security: Any) -> Settings:
    return settings_for(tmp_path / "state", security={"enabled": True, **security})


def new_key(settings: Settings, *roles: str) -> str:
    store = ApiKeyStore(settings.data_dir / "security" / "apikeys.json")
    return store.create("test", list(roles))[1]  # type: ignore[arg-type]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_http_without_a_key_is_401(tmp_path: Path) -> None:
    client = TestClient(create_app(secure(tmp_path)))
    response = client.post(URL, content=b"{")
    assert response.status_code == 401
    assert response.json() == {
        "error": "API key required (Authorization: Bearer <key> or X-API-Key)"
    }
    assert response.headers["www-authenticate"] == "Bearer"


def test_http_with_a_wrong_or_revoked_key_is_401(tmp_path: Path) -> None:
    settings = secure(tmp_path)
    key = new_key(settings, "ingest")
    client = TestClient(create_app(settings))
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    response = client.post(URL, content=b"{", headers=bearer(wrong))
    assert (response.status_code, response.json()) == (
        401,
        {"error": "invalid or revoked API key"},
    )
    assert client.post(URL, content=b"{", headers=bearer(key)).status_code == 400
    ApiKeyStore(settings.data_dir / "security" / "apikeys.json").revoke(key.split("_")[1])
    assert client.post(URL, content=b"{", headers=bearer(key)).status_code == 401


def test_http_with_an_ingest_key_passes_by_bearer_or_header(tmp_path: Path) -> None:
    settings = secure(tmp_path)
    key = new_key(settings, "ingest")
    client = TestClient(create_app(settings))
    # 400: the guard let it through, the (invalid) body was looked at.
    assert client.post(URL, content=b"{", headers=bearer(key)).status_code == 400
    assert client.post(URL, content=b"{", headers={"X-API-Key": key}).status_code == 400
    admin = new_key(settings, "admin")
    assert client.post(URL, content=b"{", headers=bearer(admin)).status_code == 400
    assert client.get("/healthz").status_code == 200  # liveness stays open


def test_http_without_the_ingest_role_is_403(tmp_path: Path) -> None:
    settings = secure(tmp_path)
    key = new_key(settings, "read")
    client = TestClient(create_app(settings))
    response = client.post(URL, content=b"{", headers=bearer(key))
    assert response.status_code == 403
    assert response.json() == {"error": f"API key {key.split('_')[1]} lacks the ingest role"}


def test_http_rate_limit_per_key_is_429_with_retry_after(tmp_path: Path) -> None:
    settings = secure(tmp_path, key_rate_per_s=0.1, key_burst=2, address_rate_per_s=0)
    key, other = new_key(settings, "ingest"), new_key(settings, "ingest")
    client = TestClient(create_app(settings))
    codes = [client.post(URL, content=b"{", headers=bearer(key)).status_code for _ in range(2)]
    assert codes == [400, 400]
    response = client.post(URL, content=b"{", headers=bearer(key))
    assert response.status_code == 429
    assert response.json() == {"error": "rate limit of this API key exceeded"}
    assert 1 <= int(response.headers["retry-after"]) <= 10
    assert client.post(URL, content=b"{", headers=bearer(other)).status_code == 400


def test_http_rate_limit_per_address_is_429(tmp_path: Path) -> None:
    settings = secure(tmp_path, address_rate_per_s=0.1, address_burst=3)
    client = TestClient(create_app(settings))
    codes = [client.post(URL, content=b"{").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    response = client.post(URL, content=b"{")
    assert response.json() == {"error": "rate limit of this client address exceeded"}
    assert int(response.headers["retry-after"]) >= 1


def test_http_refusals_are_audited_with_a_bounded_number_of_records(tmp_path: Path) -> None:
    settings = secure(tmp_path, audit_refusals_per_minute=2, address_rate_per_s=0)
    keystore_for(settings).data_key("audit")  # as `pulsecast security init` makes it
    client = TestClient(create_app(settings))
    for _ in range(5):
        assert client.post(URL, content=b"{").status_code == 401
    records = list(audit_log(settings).records())
    assert len(records) == 2
    assert records[0]["action"] == "http.refused"
    assert records[0]["target"] == "telemetry"
    assert records[0]["actor"] == "address:testclient"
    assert records[0]["details"]["status"] == 401
    assert audit_log(settings).verify().ok


def test_http_security_off_is_unchanged(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "state")
    assert not settings.security.enabled
    client = TestClient(create_app(settings))
    assert client.post(URL, content=b"{").status_code == 400
    assert client.post("/v1/streams/nope/events", content=b"[]").status_code == 404
    assert not (settings.data_dir / "security").exists()


@pytest.mark.parametrize("enabled", [False, True])
def test_http_oversized_chunked_body_is_413_before_it_is_read(
    tmp_path: Path, enabled: bool
) -> None:
    settings = settings_for(
        tmp_path / "state",
        ingest={"max_body_bytes": 4096},
        security={"enabled": enabled},
    )
    headers = bearer(new_key(settings, "ingest")) if enabled else {}
    sent = []

    def body() -> Iterator[bytes]:  # no Content-Length: the size is only known by reading
        for _ in range(1000):
            sent.append(1)
            yield b" " * 1024

    client = TestClient(create_app(settings))
    response = client.post(URL, content=body(), headers=headers)
    assert response.status_code == 413
    assert response.json() == {"error": "body exceeds 4096 bytes"}
    declared = client.post(
        URL, content=msgspec.json.encode([telemetry_event()] * 100), headers=headers
    )
    assert declared.status_code == 413

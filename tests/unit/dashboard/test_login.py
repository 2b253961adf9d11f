"""The dashboard's login: sessions, cookies, Bearer keys, refusals, the audit trail (no servers).

The test client speaks ``https://testserver``: the session cookie is ``Secure``,
so a client only sends it back over HTTPS. Clocks are injected: sessions expire
and the failed-login budget refills without sleeping.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pulsecast.config import Settings
from pulsecast.dashboard import DashboardData, create_app
from pulsecast.security.apikeys import ApiKeyStore
from pulsecast.security.audit import audit_log
from pulsecast.security.sessions import SESSION_COOKIE, DashboardAuth
from pulsecast.testing import ManualClock, settings_for
from tests.unit.analytics.conftest import at

NOW = at(4, 11, 3)
UNKNOWN_KEY = "pck_00000000_" + "A" * 43


def with_auth(lake: Settings, **dashboard: Any) -> Settings:
    return settings_for(
        lake.data_dir, lake={"uri": lake.lake_uri}, dashboard={"auth": True, **dashboard}
    )


def new_key(settings: Settings, *roles: str) -> str:
    store = ApiKeyStore(settings.data_dir / "security" / "apikeys.json")
    return store.create("test", list(roles))[1]  # type: ignore[arg-type]


def client_for(settings: Settings, clock: ManualClock | None = None) -> TestClient:
    auth = DashboardAuth.from_settings(settings, clock=clock) if clock else None
    app = create_app(settings, data=DashboardData(settings, now=NOW), auth=auth)
    return TestClient(app, base_url="https://testserver")


def log_in(client: TestClient, key: str) -> Any:
    return client.post("/login", data={"key": key}, follow_redirects=False)


def audited(settings: Settings) -> list[dict[str, Any]]:
    return list(audit_log(settings).records())


def test_login_is_off_in_plain_mode_and_nothing_asks_for_one(lake: Settings) -> None:
    assert lake.dashboard.auth is False
    assert DashboardAuth.from_settings(lake) is None
    client = client_for(lake)
    page = client.get("/")
    assert page.status_code == 200 and "__PULSECAST_CONFIG__" not in page.text
    assert 'action="/logout"' not in page.text and "<!--__PULSECAST_LOGOUT__-->" not in page.text
    assert client.get("/api/meta").status_code == 200
    assert client.get("/api/overview", params={"since": "min"}).json()["state"] == "ok"
    assert client.get("/login").status_code == 404
    assert "x-frame-options" not in page.headers
    assert not audited(lake)


def test_login_is_on_in_secure_mode(lake: Settings) -> None:
    secure = settings_for(lake.data_dir, lake={"uri": lake.lake_uri}, security={"enabled": True})
    assert secure.dashboard.auth and secure.dashboard.tls
    assert secure.dashboard.session_max_age_s == 8 * 3600
    client = client_for(secure)
    reply = client.get("/api/meta")
    assert (reply.status_code, reply.json()) == (
        401,
        {"error": "login required: log in at /login, or send Authorization: Bearer <key>"},
    )
    key = new_key(secure, "read")
    assert client.get("/api/meta", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_login_without_a_session_shows_the_login_page_and_refuses_the_api(
    lake: Settings,
) -> None:
    settings = with_auth(lake)
    client = client_for(settings)
    page = client.get("/")
    assert page.status_code == 200  # a browser's page load: the login page, in place
    assert '<form method="post" action="/login">' in page.text
    assert "pulsecast security apikey create NAME --role read" in page.text
    assert '<link rel="stylesheet" href="/static/style.css">' in page.text
    assert "__PULSECAST_CONFIG__" not in page.text and "app.js" not in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "A login lasts 8 hours" in page.text
    for path in ("/api/overview", "/api/meta", "/static/app.js", "/static/plotly.min.js", "/nope"):
        reply = client.get(path)
        assert reply.status_code == 401, path
        assert reply.headers["www-authenticate"] == "Bearer"
        assert reply.text == json.dumps(
            {"error": "login required: log in at /login, or send Authorization: Bearer <key>"},
            separators=(",", ":"),
        )
    # What the login page needs stays open, and the stack's liveness probe too.
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/login").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}
    refused = [r for r in audited(settings) if r["action"] == "http.refused"]
    assert len(refused) == 6
    assert refused[1]["target"] == "dashboard /api/overview"
    assert refused[1]["details"]["status"] == 401
    assert refused[1]["actor"] == "address:testclient"


def test_login_with_a_wrong_key_is_refused_and_audited(lake: Settings) -> None:
    settings = with_auth(lake)
    key = new_key(settings, "read")
    client = client_for(settings)
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for attempt in (wrong, UNKNOWN_KEY, "not-a-key"):
        reply = log_in(client, attempt)
        assert reply.status_code == 401
        assert SESSION_COOKIE not in reply.cookies
        assert "That key is not valid: unknown, mistyped or revoked." in reply.text
        assert 'id="login-error"' in reply.text
    empty = log_in(client, "  ")
    assert empty.status_code == 401 and "Enter an API key." in empty.text
    assert client.get("/api/meta").status_code == 401
    failed = [r for r in audited(settings) if r["action"] == "dashboard.login.failed"]
    assert [r["details"]["status"] for r in failed] == [401, 401, 401, 401]
    assert failed[0]["details"]["reason"] == "invalid or revoked API key"
    assert failed[0]["actor"] == "address:testclient" and failed[0]["target"] == "dashboard"
    text = audit_log(settings).path.read_text()
    assert key.split("_", 2)[2] not in text and wrong not in text and UNKNOWN_KEY not in text


def test_login_with_an_ingest_only_key_is_403(lake: Settings) -> None:
    settings = with_auth(lake)
    key = new_key(settings, "ingest")
    client = client_for(settings)
    reply = log_in(client, key)
    assert reply.status_code == 403
    assert SESSION_COOKIE not in reply.cookies
    assert "lacks the read role" in reply.text
    api = client.get("/api/meta", headers={"Authorization": f"Bearer {key}"})
    key_id = key.split("_")[1]
    assert (api.status_code, api.json()) == (
        403,
        {"error": f"API key {key_id} lacks the read role"},
    )
    failed = [r for r in audited(settings) if r["action"] == "dashboard.login.failed"]
    assert [(r["actor"], r["details"]["status"]) for r in failed] == [(f"apikey:{key_id}", 403)]


def test_login_with_a_read_key_sets_a_strict_session_cookie(lake: Settings) -> None:
    settings = with_auth(lake)
    key = new_key(settings, "read")
    client = client_for(settings)
    reply = log_in(client, key)
    assert (reply.status_code, reply.headers["location"]) == (303, "/")
    cookie = reply.headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    token, *flags = [part.strip() for part in rest.split(";")]
    assert name == SESSION_COOKIE
    assert len(token) >= 43 and key not in cookie and key.split("_", 2)[2] not in cookie
    assert {f.lower() for f in flags} == {
        "httponly",
        "secure",
        "samesite=strict",
        "path=/",
        "max-age=28800",
    }
    page = client.get("/")
    assert page.status_code == 200 and "__PULSECAST_CONFIG__" not in page.text
    assert '<form class="logout" method="post" action="/logout">' in page.text
    assert client.get("/api/meta").json()["stream"] == "telemetry"
    overview = client.get("/api/overview", params={"since": "min"})
    assert overview.status_code == 200 and overview.json()["state"] == "ok"
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/login", follow_redirects=False).status_code == 303  # already in
    logins = [r for r in audited(settings) if r["action"] == "dashboard.login"]
    key_id = key.split("_")[1]
    assert [(r["actor"], r["target"]) for r in logins] == [(f"apikey:{key_id}", "dashboard")]
    assert logins[0]["details"] == {"address": "testclient", "roles": ["read"], "max_age_s": 28800}
    assert token not in audit_log(settings).path.read_text()
    # An admin key may read too; a script sends its key instead of a cookie.
    assert log_in(client_for(settings), new_key(settings, "admin")).status_code == 303
    script = client_for(settings)
    assert script.get("/api/meta", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert script.get("/api/meta", headers={"X-API-Key": key}).status_code == 200
    bad = script.get("/api/meta", headers={"Authorization": f"Bearer {UNKNOWN_KEY}"})
    assert (bad.status_code, bad.json()) == (401, {"error": "invalid or revoked API key"})


def test_login_session_expires(lake: Settings) -> None:
    settings = with_auth(lake, session_max_age_s=600)
    clock = ManualClock(1000.0)
    client = client_for(settings, clock)
    reply = log_in(client, new_key(settings, "read"))
    assert "Max-Age=600" in reply.headers["set-cookie"]
    clock.now += 599
    assert client.get("/api/meta").status_code == 200
    clock.now += 1
    expired = client.get("/api/meta")
    assert (expired.status_code, expired.json()) == (
        401,
        {"error": "session expired or ended; log in again"},
    )
    assert 'pulsecast_session=""' in expired.headers["set-cookie"]  # cleared
    assert "Max-Age=0" in expired.headers["set-cookie"]
    assert SESSION_COOKIE not in client.cookies
    assert "A login lasts 10 minutes" in client.get("/").text
    # The page's script sends a browser whose session ended to the login page.
    script = client.get("/login?expired")
    assert "Your session expired or ended. Log in again." in script.text


def test_login_ends_when_the_key_is_revoked(lake: Settings) -> None:
    settings = with_auth(lake)
    key = new_key(settings, "read")
    client = client_for(settings)
    log_in(client, key)
    assert client.get("/api/meta").status_code == 200
    ApiKeyStore(settings.data_dir / "security" / "apikeys.json").revoke(key.split("_")[1])
    assert client.get("/api/meta").status_code == 401


def test_login_logout_ends_the_session(lake: Settings) -> None:
    settings = with_auth(lake)
    key = new_key(settings, "read")
    client = client_for(settings)
    token = log_in(client, key).cookies[SESSION_COOKIE]
    assert client.get("/api/meta").status_code == 200
    reply = client.post("/logout", follow_redirects=False)
    assert (reply.status_code, reply.headers["location"]) == (303, "/login")
    assert 'pulsecast_session=""' in reply.headers["set-cookie"]
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/api/meta").status_code == 401
    # The old token is dead on the server, not only forgotten by this browser.
    replay = client_for(settings)
    replay.cookies.set(SESSION_COOKIE, token)
    assert replay.get("/api/meta").status_code == 401
    logouts = [r for r in audited(settings) if r["action"] == "dashboard.logout"]
    assert [r["actor"] for r in logouts] == [f"apikey:{key.split('_')[1]}"]
    assert client.post("/logout", follow_redirects=False).status_code == 303  # idempotent


def test_login_failures_are_rate_limited_per_address(lake: Settings) -> None:
    settings = with_auth(lake)
    key = new_key(settings, "read")
    clock = ManualClock(1000.0)
    client = client_for(settings, clock)
    for _ in range(10):
        assert log_in(client, UNKNOWN_KEY).status_code == 401
    limited = log_in(client, UNKNOWN_KEY)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert "Too many attempts from your address" in limited.text
    assert "try again in 1 s" in limited.text
    # Even the right key waits: the address is out of attempts.
    assert log_in(client, key).status_code == 429
    api = client.get("/api/meta", headers={"Authorization": f"Bearer {UNKNOWN_KEY}"})
    assert (api.status_code, api.headers["retry-after"]) == (429, "1")
    clock.now += 1
    assert log_in(client, key).status_code == 303
    statuses = [
        r["details"]["status"] for r in audited(settings) if r["action"] == "dashboard.login.failed"
    ]
    assert statuses == [401] * 10 + [429, 429]


def test_login_refuses_cross_site_and_oversized_forms(lake: Settings) -> None:
    settings = with_auth(lake)
    key = new_key(settings, "read")
    client = client_for(settings)
    cross = client.post("/login", data={"key": key}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403 and SESSION_COOKIE not in cross.cookies
    same = client.post(
        "/login",
        data={"key": key},
        headers={"Origin": "https://testserver"},
        follow_redirects=False,
    )
    assert same.status_code == 303
    big = client.post("/login", data={"key": "x" * 5000})
    assert big.status_code == 413 and "too large" in big.text
    many = client.post("/login", data={f"f{i}": "1" for i in range(11)})
    assert many.status_code == 413 and "too large" in many.text


@pytest.mark.parametrize(
    "expected", ["response.status === 401", 'location.assign("/login?expired")']
)
def test_login_page_script_sends_an_ended_session_to_the_login_page(expected: str) -> None:
    script = (
        Path(__file__).resolve().parents[3] / "src/pulsecast/dashboard/static/app.js"
    ).read_text()
    assert expected in script

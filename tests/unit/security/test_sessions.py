"""Dashboard sessions and logins, framework-free, and what ``security check`` says of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pulsecast.config import Settings
from pulsecast.security.apikeys import ApiKeyStore
from pulsecast.security.audit import RefusalAuditor, audit_log
from pulsecast.security.check import security_check
from pulsecast.security.guard import Refusal
from pulsecast.security.sessions import DashboardAuth, SessionStore
from pulsecast.testing import ManualClock, settings_for


def with_auth(tmp_path: Path, **sections: Any) -> Settings:
    return settings_for(tmp_path / "state", dashboard={"auth": True}, **sections)


def new_key(settings: Settings, *roles: str) -> str:
    store = ApiKeyStore(settings.data_dir / "security" / "apikeys.json")
    return store.create("test", list(roles))[1]  # type: ignore[arg-type]


def test_sessions_open_expire_and_close() -> None:
    clock = ManualClock(50.0)
    store = SessionStore(max_age_s=60, clock=clock)
    token = store.open("k1")
    other = store.open("k2")
    assert token != other and len(token) >= 43
    session = store.get(token)
    assert session is not None and (session.key_id, session.expires) == ("k1", 110.0)
    assert token.encode() not in repr(store._sessions).encode()  # only digests are held
    assert store.get("guessed") is None
    clock.now = 109.9
    assert store.get(token) is not None
    clock.now = 110.0
    assert store.get(token) is None and len(store) == 1  # an expired session is forgotten
    assert store.close(other) is not None and store.close(other) is None
    assert store.get(other) is None


def test_sessions_are_bounded_oldest_first() -> None:
    store = SessionStore(max_age_s=60, max_sessions=2, clock=ManualClock(50.0))
    first, second, third = (store.open(k) for k in ("a", "b", "c"))
    assert store.get(first) is None
    assert store.get(second) is not None and store.get(third) is not None
    with pytest.raises(ValueError, match="max_age_s must be > 0 and max_sessions >= 1; got 0, 2"):
        SessionStore(max_age_s=0, max_sessions=2)


def test_sessions_auth_is_off_unless_asked_or_secure(tmp_path: Path) -> None:
    assert DashboardAuth.from_settings(settings_for(tmp_path)) is None
    assert DashboardAuth.from_settings(with_auth(tmp_path)) is not None
    secure = settings_for(tmp_path, security={"enabled": True})
    assert secure.dashboard.auth is True
    auth = DashboardAuth.from_settings(secure)
    assert auth is not None and auth.max_age_s == 8 * 3600


def test_sessions_login_authenticate_logout_audited(tmp_path: Path) -> None:
    settings = with_auth(tmp_path)
    key = new_key(settings, "read")
    clock = ManualClock(50.0)
    auth = DashboardAuth.from_settings(settings, clock=clock)
    assert auth is not None
    answer = auth.login(key, "10.0.0.1")
    assert not isinstance(answer, Refusal)
    token, record = answer
    assert record.key_id == key.split("_")[1]
    who = auth.authenticate(token, {}, "10.0.0.1", target="dashboard /api/meta")
    assert not isinstance(who, Refusal) and who.key_id == record.key_id
    nobody = auth.authenticate(None, {}, "10.0.0.2", target="dashboard /api/meta")
    assert isinstance(nobody, Refusal) and nobody.status == 401
    assert auth.logout(token, "10.0.0.1") and not auth.logout(token, "10.0.0.1")
    ended = auth.authenticate(token, {}, "10.0.0.1", target="dashboard /")
    assert isinstance(ended, Refusal)
    assert ended.message == "session expired or ended; log in again"
    records = list(audit_log(settings).records())
    assert [(r["action"], r["actor"]) for r in records] == [
        ("dashboard.login", f"apikey:{record.key_id}"),
        ("http.refused", "address:10.0.0.2"),
        ("dashboard.logout", f"apikey:{record.key_id}"),
        ("http.refused", "address:10.0.0.1"),
    ]
    assert audit_log(settings).verify().ok
    assert key.split("_", 2)[2] not in audit_log(settings).path.read_text()


def test_sessions_audit_off_records_nothing(tmp_path: Path) -> None:
    settings = with_auth(tmp_path, security={"audit": False})
    auth = DashboardAuth.from_settings(settings)
    assert auth is not None
    assert isinstance(auth.login("pck_00000000_" + "A" * 43, "10.0.0.1"), Refusal)
    assert not isinstance(auth.login(new_key(settings, "admin"), "10.0.0.1"), Refusal)
    assert not audit_log(settings).path.exists()


def test_sessions_refusal_summaries_name_their_endpoint(tmp_path: Path) -> None:
    now = [600.0]
    auditor = RefusalAuditor(
        audit_log(settings_for(tmp_path)), per_minute=1, clock=lambda: now[0], name="dashboard"
    )
    auditor.refused(401, actor="a", target="dashboard", reason="r", action="dashboard.login.failed")
    auditor.refused(401, actor="a", target="dashboard", reason="r")
    now[0] += 60
    auditor.tick()
    records = list(audit_log(settings_for(tmp_path)).records())
    assert [(r["action"], r["target"]) for r in records] == [
        ("dashboard.login.failed", "dashboard"),
        ("http.refused.summary", "dashboard"),
    ]


def dashboard_finding(settings: Settings) -> tuple[str, str]:
    (finding,) = [f for f in security_check(settings) if f.area == "dashboard"]
    return finding.status, finding.text


def test_sessions_security_check_reports_the_dashboard_login(tmp_path: Path) -> None:
    assert dashboard_finding(settings_for(tmp_path / "plain")) == (
        "off",
        "no login: whoever reaches it reads it (dashboard.auth)",
    )
    secure = settings_for(tmp_path / "secure", security={"enabled": True})
    assert dashboard_finding(secure) == (
        "warn",
        "login required, but no active key may read: "
        "`pulsecast security apikey create NAME --role read`",
    )
    new_key(secure, "ingest")
    assert dashboard_finding(secure)[0] == "warn"
    new_key(secure, "read")
    assert dashboard_finding(secure) == (
        "ok",
        "login required (API keys with the read role: 1 active); sessions of 8 h in HttpOnly, "
        "Secure, SameSite=Strict cookies; failed logins limited per address; 401 for the API "
        "without a session or key",
    )
    clear = settings_for(tmp_path / "clear", dashboard={"auth": True})
    new_key(clear, "read")
    status, text = dashboard_finding(clear)
    assert status == "warn" and text.startswith("login required, but over plain HTTP")

from __future__ import annotations

from pathlib import Path

from pulsecast.security.apikeys import ApiKeyStore
from pulsecast.security.audit import AuditLog, RefusalAuditor
from pulsecast.security.guard import IngestGuard, Refusal, presented_key
from pulsecast.security.ratelimit import RateLimiter
from pulsecast.testing import ManualClock, settings_for


def guard_for(tmp_path: Path, clock: ManualClock) -> tuple[IngestGuard, str]:
    store = ApiKeyStore(tmp_path / "apikeys.json", cost={"n": 16, "r": 1, "p": 1})
    _, key = store.create("k", ["ingest"])
    guard = IngestGuard(
        store,
        per_key=RateLimiter(0, 1, clock=clock),
        per_address=RateLimiter(0, 1, clock=clock),
        auditor=RefusalAuditor(AuditLog(tmp_path / "audit.jsonl"), per_minute=100),
        clock=clock,
    )
    return guard, key


def test_guard_presented_key_sources() -> None:
    assert presented_key({"authorization": "Bearer abc"}) == "abc"
    assert presented_key({"authorization": "bearer  abc "}) == "abc"
    assert presented_key({"authorization": "Basic abc"}) is None
    assert presented_key({"x-api-key": " abc "}) == "abc"
    assert presented_key({"authorization": "Bearer ", "x-api-key": ""}) is None
    assert presented_key({}) is None


def test_guard_failed_key_checks_are_limited_per_address(tmp_path: Path) -> None:
    clock = ManualClock()
    guard, key = guard_for(tmp_path, clock)
    wrong = {"authorization": f"Bearer {key[:-4]}{'AAAA' if not key.endswith('AAAA') else 'BBBB'}"}
    refusals = [guard.check(wrong, "10.0.0.1", "ingest", target="t") for _ in range(11)]
    assert [r.status for r in refusals if r] == [401] * 10 + [429]
    # Even the right key waits: the address spent its budget of failed checks.
    assert guard.check({"x-api-key": key}, "10.0.0.1", "ingest", target="t") == Refusal(
        429, "too many failed API key checks", {"Retry-After": "1"}
    )
    assert guard.check({"x-api-key": key}, "10.0.0.2", "ingest", target="t") is None
    clock.now += 1
    assert guard.check({"x-api-key": key}, "10.0.0.1", "ingest", target="t") is None
    audited = list(AuditLog(tmp_path / "audit.jsonl").records())
    assert [r["details"]["status"] for r in audited] == [401] * 10 + [429, 429]


def test_guard_is_none_when_security_is_off(tmp_path: Path) -> None:
    assert IngestGuard.from_settings(settings_for(tmp_path)) is None
    guard = IngestGuard.from_settings(settings_for(tmp_path, security={"enabled": True}))
    assert guard is not None and guard.auditor is not None
    assert guard.per_key.rate == 200 and guard.per_address.burst == 200

from __future__ import annotations

import itertools
import json
import logging
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

import pulsecast.security.audit as audit_module
from pulsecast.config import Settings
from pulsecast.security.audit import (
    AUDIT_KEY,
    GENESIS,
    AuditLog,
    RefusalAuditor,
    _digest,
    audit_log,
    record,
)
from pulsecast.security.errors import KeystoreError
from pulsecast.security.keys import LocalKeystore, decode_master_key, keystore_for, new_master_key
from pulsecast.testing import ManualClock, settings_for

NO_MAC = "no MAC: written without the audit key, or its MAC was removed"
BAD_MAC = "MAC does not match: record forged, or keyed with another audit key"
KEYED = "chain intact; keyed: every record's MAC checked"


@pytest.fixture(autouse=True)
def _new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    new_process(monkeypatch)


def new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the audit keys this process read, as a process started afresh would."""
    monkeypatch.setattr(audit_module, "_KEYS", {})


def filled(path: Path, count: int = 5) -> AuditLog:
    log = AuditLog(path)
    for i in range(count):
        log.append("topic.create", f"t{i}.events", actor="tester", details={"i": i})
    return log


def lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines(keepends=True)


def rewrite(log: AuditLog, new: list[str]) -> None:
    log.path.write_text("".join(new))


def problem(log: AuditLog) -> tuple[int, str]:
    result = log.verify()
    assert not result.ok
    return result.problems[0]


def test_audit_records_are_chained(tmp_path: Path) -> None:
    log = filled(tmp_path / "audit" / "audit.jsonl")
    records = list(log.records())
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(records))
    assert set(records[0]) == {
        "seq", "time", "actor", "action", "target", "details", "prev", "hash"
    }  # fmt: skip
    assert records[2]["details"] == {"i": 2} and records[2]["actor"] == "tester"
    assert log.verify().ok and log.verify().records == 5
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.path.parent.stat().st_mode) == 0o700


def test_audit_empty_log_verifies(tmp_path: Path) -> None:
    result = AuditLog(tmp_path / "none.jsonl").verify()
    assert result.ok and result.records == 0


def test_audit_verify_catches_an_edit(tmp_path: Path) -> None:
    log = filled(tmp_path / "a.jsonl")
    text = lines(log)
    rec = json.loads(text[2])
    rec["actor"] = "someone-else"
    text[2] = json.dumps(rec, sort_keys=True) + "\n"
    rewrite(log, text)
    assert problem(log) == (3, "record was modified (its hash does not match its content)")


def test_audit_verify_catches_a_deletion(tmp_path: Path) -> None:
    log = filled(tmp_path / "a.jsonl")
    text = lines(log)
    del text[1]
    rewrite(log, text)
    assert problem(log) == (2, "sequence 3 where 2 was expected: records deleted or moved")


def test_audit_verify_catches_a_cut_end(tmp_path: Path) -> None:
    log = filled(tmp_path / "a.jsonl")
    rewrite(log, lines(log)[:3])
    assert problem(log) == (4, "log ends at sequence 3 but 5 was written: records cut off")


def test_audit_verify_catches_reordering(tmp_path: Path) -> None:
    log = filled(tmp_path / "a.jsonl")
    text = lines(log)
    text[1], text[2] = text[2], text[1]
    rewrite(log, text)
    assert problem(log) == (2, "sequence 3 where 2 was expected: records deleted or moved")
    text = lines(filled(tmp_path / "b.jsonl"))
    text.insert(3, text[1])  # a replayed copy of an earlier record
    rewrite(AuditLog(tmp_path / "b.jsonl"), text)
    assert problem(AuditLog(tmp_path / "b.jsonl")) == (
        4,
        "sequence 2 where 4 was expected: records inserted or moved",
    )


def test_audit_verify_catches_an_insertion(tmp_path: Path) -> None:
    log = filled(tmp_path / "a.jsonl")
    text = lines(log)
    # A forged record with a correct hash of its own, slotted in as number 3.
    forged = AuditLog(tmp_path / "forge.jsonl")
    for _ in range(3):
        forged.append("x", "y")
    fake = lines(forged)[2]
    text.insert(2, fake)
    rewrite(log, text)
    assert problem(log) == (
        3,
        "chain broken: prev is not the hash of the line before (inserted or replaced)",
    )


def test_audit_verify_catches_garbage_and_outside_appends(tmp_path: Path) -> None:
    log = filled(tmp_path / "a.jsonl")
    text = lines(log)
    text[0] = "not json\n"
    rewrite(log, text)
    assert problem(log) == (1, "not a JSON record (edited or corrupted)")
    log2 = filled(tmp_path / "b.jsonl", 2)
    log2.head_path.unlink()
    assert problem(log2) == (3, "head file missing: the end of the log cannot be checked")


def test_audit_append_after_tampering_is_refused(tmp_path: Path) -> None:
    log = filled(tmp_path / "a.jsonl", 2)
    with log.path.open("a") as fh:
        fh.write("junk\n")
    with pytest.raises(Exception, match="last line is not an audit record"):
        log.append("a", "b")


def test_audit_record_follows_settings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(tmp_path / "state")
    record(settings, "model.promote", "telemetry-forecaster", details={"version": 2})
    (rec,) = audit_log(settings).records()
    assert rec["action"] == "model.promote" and "@" in rec["actor"]
    assert audit_log(settings).path == tmp_path / "state" / "security" / "audit" / "audit.jsonl"
    off = settings_for(tmp_path / "off", security={"audit": False})
    record(off, "model.promote", "x")
    assert not audit_log(off).path.exists()
    # A log that cannot be written is reported, not raised.
    broken = settings_for(tmp_path / "broken")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "security").write_text("a file, not a folder")
    with caplog.at_level(logging.ERROR):
        record(broken, "topic.delete", "t.events")
    assert "cannot record topic.delete of t.events in the audit log" in caplog.text


def test_audit_refusals_are_aggregated_per_minute(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC).timestamp())
    auditor = RefusalAuditor(log, per_minute=3, clock=clock)
    for i in range(10):
        auditor.refused(
            401 if i % 2 else 429, actor="address:1.2.3.4", target="telemetry", reason="r"
        )
    assert len(list(log.records())) == 3
    clock.now += 30
    auditor.tick()  # same minute: nothing yet
    assert len(list(log.records())) == 3
    clock.now += 30
    auditor.tick()
    records = list(log.records())
    assert [r["action"] for r in records] == ["http.refused"] * 3 + ["http.refused.summary"]
    assert records[-1]["details"] == {
        "minute": "2026-11-28T12:00:00+00:00",
        "suppressed": 7,
        "by_status": {"401": 4, "429": 3},
    }
    auditor.refused(403, actor="apikey:abc", target="telemetry", reason="r")
    assert list(log.records())[-1]["details"] == {"status": 403, "reason": "r"}
    assert log.verify().ok


# -- the keyed chain ---------------------------------------------------------------------------


def state(tmp_path: Path, *, secure: bool, master: str | None = None) -> Settings:
    security: dict[str, object] = {"enabled": secure}
    if master is not None:
        security["master_key"] = master
    return settings_for(tmp_path / "state", security=security)


def with_audit_key(settings: Settings) -> Settings:
    keystore_for(settings).data_key(AUDIT_KEY)  # what `pulsecast security init` does
    return settings


def keystore_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "security" / "keys" / "keystore.json"


def forge(log: AuditLog, actor: str = "mallory") -> None:
    """Rewrite the whole history consistently, as someone without the key can: no MACs."""
    prev, out = GENESIS, []
    for rec in log.records():
        rec.pop("mac", None)
        rec["actor"], rec["prev"] = actor, prev
        rec["hash"] = prev = _digest(rec)
        out.append(json.dumps(rec, sort_keys=True) + "\n")
    rewrite(log, out)
    log.head_path.write_text(json.dumps({"seq": len(out), "hash": prev}))


def test_audit_secure_verify_requires_the_key_and_every_mac(tmp_path: Path) -> None:
    secure = with_audit_key(state(tmp_path, secure=True))
    for i in range(3):
        record(secure, "topic.create", f"t{i}.events")
    log = audit_log(secure)
    assert all(len(r["mac"]) == 64 for r in log.records())
    assert "mac" in json.loads(log.head_path.read_text())
    result = log.verify()
    assert result.ok and result.keyed and result.summary == f"3 record(s), {KEYED}"
    # The reverted attack: a forged unkeyed history, and the key deleted from the keystore.
    forge(log)
    saved = keystore_file(tmp_path).read_text()
    data = json.loads(saved)
    del data["keys"][AUDIT_KEY]
    keystore_file(tmp_path).write_text(json.dumps(data))
    assert problem(log) == (
        1,
        f"cannot check its MAC: no 'audit' key in {keystore_file(tmp_path)}: "
        "run `pulsecast security init`",
    )
    # With the key back, the missing MACs are named.
    keystore_file(tmp_path).write_text(saved)
    assert problem(log) == (1, NO_MAC)
    # Plain mode accepts the forged log, but does not call it keyed.
    plain = audit_log(state(tmp_path, secure=False)).verify()
    assert plain.ok and not plain.keyed and plain.unkeyed == [1, 2, 3] and plain.head_unkeyed
    assert plain.summary == (
        "3 record(s), chain intact; unkeyed: no MAC on line(s) 1, 2, 3 and the head file "
        "(written without the audit key), other MACs checked"
    )


def test_audit_secure_verify_without_a_keystore_fails_at_line_one(tmp_path: Path) -> None:
    log = filled(audit_log(state(tmp_path, secure=False)).path, 2)  # an old, unkeyed log
    keys = tmp_path / "state" / "security" / "keys"
    plain = audit_log(state(tmp_path, secure=False)).verify()
    assert plain.ok and plain.records == 2 and not plain.keyed
    assert plain.summary == (
        "2 record(s), chain intact; unkeyed: MACs not checked (audit key not readable: "
        f"no master key in {keys}: run `pulsecast security init`); "
        "no MAC on line(s) 1, 2 and the head file"
    )
    assert problem(audit_log(state(tmp_path, secure=True))) == (
        1,
        f"cannot check its MAC: audit key not readable: no master key in {keys}: "
        "run `pulsecast security init`",
    )
    with_audit_key(state(tmp_path, secure=True))
    assert problem(audit_log(state(tmp_path, secure=True))) == (1, NO_MAC)
    assert log.verify().ok  # an AuditLog without a key source is unkeyed, as before
    assert not AuditLog(tmp_path / "empty.jsonl", require_key=True).verify().problems


def test_audit_verify_checks_every_mac_and_the_head(tmp_path: Path) -> None:
    secure = with_audit_key(state(tmp_path, secure=True))
    log = audit_log(secure)
    for i in range(4):
        log.append("topic.create", f"t{i}.events", actor="tester")
    plain = audit_log(state(tmp_path, secure=False))
    assert plain.verify().keyed  # the key is readable: plain mode checks the MACs too
    text = lines(log)
    for bad in ("0" * 64, "é" * 64, 42):
        rec = json.loads(text[1])
        rec["mac"] = bad
        rewrite(log, [text[0], json.dumps(rec) + "\n", *text[2:]])
        assert problem(log) == (2, BAD_MAC)
        assert problem(plain) == (2, BAD_MAC)
    # Lines cut from the end, and the head rewritten to match: no valid MAC can be made.
    rewrite(log, text[:2])
    last = json.loads(text[1])
    log.head_path.write_text(json.dumps({"seq": 2, "hash": last["hash"]}))
    assert problem(log) == (3, "head file has no MAC (rewritten outside pulsecast)")
    unkeyed_head = plain.verify()
    assert unkeyed_head.ok and unkeyed_head.head_unkeyed and not unkeyed_head.keyed
    log.head_path.write_text(json.dumps({"seq": 2, "hash": last["hash"], "mac": last["mac"]}))
    assert problem(log) == (3, "head file's MAC does not match (rewritten outside pulsecast)")
    assert problem(plain) == (3, "head file's MAC does not match (rewritten outside pulsecast)")


def test_audit_mixed_modes_with_a_readable_key_stay_keyed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secure = with_audit_key(state(tmp_path, secure=True))
    plain = state(tmp_path, secure=False)
    for settings in (secure, plain, secure, plain):
        new_process(monkeypatch)
        record(settings, "model.promote", "m")
    assert all("mac" in r for r in audit_log(plain).records())
    for settings in (secure, plain):
        result = audit_log(settings).verify()
        assert result.ok and result.summary == f"4 record(s), {KEYED}"


def test_audit_plain_append_without_the_key_is_reported_unkeyed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    master = new_master_key()  # in the environment of secure processes only
    secure = with_audit_key(state(tmp_path, secure=True, master=master))
    plain_with_key = state(tmp_path, secure=False, master=master)
    plain = state(tmp_path, secure=False)  # no master key: the audit key is not readable
    with caplog.at_level(logging.ERROR):
        for settings in (secure, plain, secure):  # secure -> plain -> secure
            new_process(monkeypatch)
            record(settings, "model.promote", "m")
    assert not caplog.records
    assert ["mac" in r for r in audit_log(secure).records()] == [True, False, True]
    result = audit_log(plain).verify()
    assert result.ok and result.unkeyed == [2] and not result.head_unkeyed
    assert result.summary.startswith("3 record(s), chain intact; unkeyed: MACs not checked (")
    assert result.summary.endswith("); no MAC on line(s) 2")
    result = audit_log(plain_with_key).verify()
    assert result.ok and result.unkeyed == [2]
    assert result.summary == (
        "3 record(s), chain intact; unkeyed: no MAC on line(s) 2 "
        "(written without the audit key), other MACs checked"
    )
    assert problem(audit_log(secure)) == (2, NO_MAC)  # the chain itself is not broken


def test_audit_secure_append_without_the_key_is_kept_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secure = state(tmp_path, secure=True)
    with caplog.at_level(logging.ERROR):
        record(secure, "topic.delete", "t.events")
    assert "audit record 1 in " in caplog.text and "written without a MAC: " in caplog.text
    assert [r["action"] for r in audit_log(secure).records()] == ["topic.delete"]
    assert problem(audit_log(secure))[0] == 1


def test_audit_appends_stay_keyed_across_a_master_key_rotation(tmp_path: Path) -> None:
    old, new = new_master_key(), new_master_key()
    before = with_audit_key(state(tmp_path, secure=True, master=old))
    log = audit_log(before)  # a long-running process, its master key from the environment
    log.append("topic.create", "a.events")
    keystore_for(before).rotate_master(decode_master_key(new))
    log.append("topic.create", "b.events")  # its master key is stale now
    record(before, "topic.create", "c.events")
    result = audit_log(state(tmp_path, secure=True, master=new)).verify()
    assert result.ok and result.summary == f"3 record(s), {KEYED}"
    # A file master key rotated by another process.
    files = with_audit_key(settings_for(tmp_path / "files", security={"enabled": True}))
    log = audit_log(files)
    log.append("topic.create", "a.events")
    LocalKeystore(tmp_path / "files" / "security" / "keys").rotate_master()
    log.append("topic.create", "b.events")
    assert log.verify().summary == f"2 record(s), {KEYED}"


def test_audit_log_creates_no_key(tmp_path: Path) -> None:
    keys = tmp_path / "state" / "security" / "keys"
    for secure in (True, False):
        settings = state(tmp_path, secure=secure)
        log = audit_log(settings)
        record(settings, "topic.create", "a.events")
        log.append("topic.create", "b.events")
        log.verify()
        assert not keys.exists()
    master = state(tmp_path, secure=True, master=new_master_key())
    record(master, "topic.create", "c.events")
    audit_log(master).verify()
    assert not keys.exists()


def test_audit_record_never_raises_on_keystore_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secure = with_audit_key(state(tmp_path, secure=True))
    for broken in ("not json", "[]", json.dumps({"master_id": None, "keys": {AUDIT_KEY: {}}})):
        new_process(monkeypatch)
        keystore_file(tmp_path).write_text(broken)
        record(secure, "topic.create", "t.events")
    assert len(list(audit_log(secure).records())) == 3  # written, unkeyed

    def fail(settings: Settings, *, create: bool) -> LocalKeystore:
        raise KeystoreError("keystore on fire")

    monkeypatch.setattr(audit_module, "keystore_for", fail)
    new_process(monkeypatch)
    record(secure, "topic.create", "u.events")

    def crash(settings: Settings, *, create: bool) -> LocalKeystore:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(audit_module, "keystore_for", crash)
    new_process(monkeypatch)
    with caplog.at_level(logging.ERROR):
        record(secure, "topic.delete", "t.events")
    assert "cannot record topic.delete of t.events in the audit log: unexpected" in caplog.text

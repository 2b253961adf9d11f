from __future__ import annotations

import itertools
import json
import logging
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pulsecast.security.audit import GENESIS, AuditLog, RefusalAuditor, audit_log, record
from pulsecast.testing import ManualClock, settings_for


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

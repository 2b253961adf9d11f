"""The audit trail: an append-only, hash-chained JSON Lines log of control actions.

Each line is one record ``{"seq", "time", "actor", "action", "target",
"details", "prev", "hash"}``, where ``hash`` is the SHA-256 of the record's
canonical JSON without ``hash``, and ``prev`` the hash of the line before
(64 zeros for the first). Editing, deleting, inserting or reordering lines
breaks the chain at a line :func:`verify` names; ``audit.head`` (the last
sequence number and hash, rewritten after every append) also reveals lines cut
from the end. The chain is not keyed: someone able to rewrite the file *and*
the head can forge a consistent history; shipping records off the machine (or
keying the chain with the keystore) is the next step, see docs/security.md.

Appends from several processes are serialised with an exclusive ``flock`` on
the log. Actions recorded: ``security.*`` (init, rotate, API keys),
``http.refused`` and ``dashboard.login.failed`` (aggregated per minute by
:class:`RefusalAuditor`), ``dashboard.login`` / ``dashboard.logout``,
``model.promote`` / ``model.rollback``, ``topic.create`` / ``topic.delete``.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pulsecast.security._files import private_dir, security_dir, write_private
from pulsecast.security.errors import AuditError

if TYPE_CHECKING:
    from pulsecast.config import Settings

__all__ = [
    "GENESIS",
    "AuditLog",
    "RefusalAuditor",
    "Verification",
    "audit_log",
    "default_actor",
    "record",
]

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_FIELDS = ("seq", "time", "actor", "action", "target", "details", "prev")


def _digest(rec: dict[str, Any]) -> str:
    body = {k: rec.get(k) for k in _FIELDS}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_actor() -> str:
    """Who runs this process: ``user@host`` as the operating system says."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{os.uname().nodename}"


@dataclass
class Verification:
    """The result of :meth:`AuditLog.verify`."""

    records: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the chain is intact."""
        return not self.problems


class AuditLog:
    """One audit log file (and its head file next to it).

    Args:
        path: The JSON Lines file; its folder is created ``0700``, the file ``0600``.
        clock: Wall-clock time for records; tests inject theirs.
    """

    def __init__(self, path: Path, *, clock: Callable[[], datetime] | None = None) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head")
        self.clock = clock or (lambda: datetime.now(UTC))

    @staticmethod
    def _last_line(fh: BinaryIO) -> bytes | None:
        end = fh.seek(0, os.SEEK_END)
        if end == 0:
            return None
        chunk, pos, data = 4096, end, b""
        while pos > 0:
            pos = max(0, pos - chunk)
            fh.seek(pos)
            data = fh.read(end - pos)
            lines = data.rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or pos == 0:
                return lines[-1]
        return None

    def append(
        self,
        action: str,
        target: str,
        *,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one record; returns it (with its hash).

        Raises:
            AuditError: The log cannot be written, or its last line is not a record.
        """
        private_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            msg = f"cannot open the audit log {self.path}: {exc.strerror}"
            raise AuditError(msg) from exc
        with os.fdopen(fd, "r+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                last = self._last_line(fh)
                if last is None:
                    seq, prev = 1, GENESIS
                else:
                    try:
                        tail = json.loads(last)
                        seq, prev = int(tail["seq"]) + 1, str(tail["hash"])
                    except (ValueError, KeyError, TypeError) as exc:
                        msg = f"{self.path}: last line is not an audit record; run audit verify"
                        raise AuditError(msg) from exc
                rec: dict[str, Any] = {
                    "seq": seq,
                    "time": self.clock().isoformat(timespec="milliseconds"),
                    "actor": actor or default_actor(),
                    "action": action,
                    "target": target,
                    "details": details or {},
                    "prev": prev,
                }
                rec["hash"] = _digest(rec)
                line = json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n"
                fh.write(line.encode())
                fh.flush()
                os.fsync(fh.fileno())
                write_private(
                    self.head_path, json.dumps({"seq": seq, "hash": rec["hash"]}).encode()
                )
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return rec

    def records(self) -> Iterator[dict[str, Any]]:
        """The records in file order (lines that are not JSON objects are skipped)."""
        if not self.path.is_file():
            return
        with self.path.open("rb") as fh:
            for raw in fh:
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    yield rec

    def verify(self) -> Verification:
        """Check the chain line by line and against the head file.

        Returns:
            How many records were read and the problems found, each with its line
            number (the first break only: what follows it cannot be trusted either).
        """
        result = Verification()
        prev, expected_seq = GENESIS, 1
        if self.path.is_file():
            with self.path.open("rb") as fh:
                for number, raw in enumerate(fh, start=1):
                    problem = self._check_line(raw, prev, expected_seq)
                    if problem:
                        result.problems.append((number, problem))
                        return result
                    rec = json.loads(raw)
                    prev, expected_seq = rec["hash"], rec["seq"] + 1
                    result.records += 1
        problem = self._check_head(prev, expected_seq - 1)
        if problem:
            result.problems.append((result.records + 1 if result.records else 1, problem))
        return result

    @staticmethod
    def _check_line(raw: bytes, prev: str, expected_seq: int) -> str | None:
        try:
            rec = json.loads(raw)
        except ValueError:
            return "not a JSON record (edited or corrupted)"
        if not isinstance(rec, dict) or not all(k in rec for k in (*_FIELDS, "hash")):
            return "not an audit record (fields missing)"
        if _digest(rec) != rec["hash"]:
            return "record was modified (its hash does not match its content)"
        seq = rec["seq"]
        if not isinstance(seq, int):
            return "record has no valid sequence number"
        if seq > expected_seq:
            return f"sequence {seq} where {expected_seq} was expected: records deleted or moved"
        if seq < expected_seq:
            return f"sequence {seq} where {expected_seq} was expected: records inserted or moved"
        if rec["prev"] != prev:
            return "chain broken: prev is not the hash of the line before (inserted or replaced)"
        return None

    def _check_head(self, last_hash: str, last_seq: int) -> str | None:
        if not self.head_path.is_file():
            if last_seq > 0:
                return "head file missing: the end of the log cannot be checked"
            return None
        try:
            head = json.loads(self.head_path.read_text())
            head_seq, head_hash = int(head["seq"]), str(head["hash"])
        except (OSError, ValueError, KeyError, TypeError):
            return "head file unreadable"
        if head_seq > last_seq:
            return f"log ends at sequence {last_seq} but {head_seq} was written: records cut off"
        if head_seq != last_seq or head_hash != last_hash:
            return "last record does not match the head file (appended outside pulsecast)"
        return None


def audit_log(settings: Settings) -> AuditLog:
    """The audit log of these settings: ``<security dir>/audit/audit.jsonl``."""
    return AuditLog(security_dir(settings) / "audit" / "audit.jsonl")


def record(
    settings: Settings,
    action: str,
    target: str,
    *,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append a control action to the audit log, when ``security.audit`` is on.

    A failure to write is logged, not raised: the action it records has already
    happened and must not be reported as failed.
    """
    if not settings.security.audit:
        return
    try:
        audit_log(settings).append(action, target, actor=actor, details=details)
    except (AuditError, OSError) as exc:
        log.error("cannot record %s of %s in the audit log: %s", action, target, exc)


class RefusalAuditor:
    """Records refused HTTP requests without letting a flood of them fill the disk.

    The first ``per_minute`` refusals of each clock minute are recorded one by
    one; the others are only counted, and one ``http.refused.summary`` record
    per minute (written on the first refusal or :meth:`tick` of a later
    minute) says how many there were, by status code.

    Args:
        audit: The audit log.
        per_minute: Refusals recorded individually per minute.
        clock: Seconds since the epoch; tests inject theirs.
        name: The endpoint (``ingest``, ``dashboard``): the summaries' target.
    """

    def __init__(
        self,
        audit: AuditLog,
        *,
        per_minute: int,
        clock: Callable[[], float] = time.time,
        name: str = "ingest",
    ) -> None:
        self.audit = audit
        self.per_minute = per_minute
        self.clock = clock
        self.name = name
        self._minute = -1
        self._recorded = 0
        self._suppressed: Counter[int] = Counter()

    def tick(self) -> None:
        """Write the summary of a finished minute, if one is pending."""
        minute = int(self.clock() // 60)
        if minute == self._minute:
            return
        if self._suppressed:
            started = datetime.fromtimestamp(self._minute * 60, UTC).isoformat()
            details = {
                "minute": started,
                "suppressed": sum(self._suppressed.values()),
                "by_status": {str(k): v for k, v in sorted(self._suppressed.items())},
            }
            self._safe_append("http.refused.summary", self.name, "pulsecast", details)
        self._minute, self._recorded = minute, 0
        self._suppressed = Counter()

    def refused(
        self, status: int, *, actor: str, target: str, reason: str, action: str = "http.refused"
    ) -> None:
        """Count one refused request (recorded in full while under the minute's budget).

        ``action`` names the record: ``http.refused``, or ``dashboard.login.failed``
        for a failed login (both share the budget).
        """
        self.tick()
        if self._recorded < self.per_minute:
            self._recorded += 1
            self._safe_append(action, target, actor, {"status": status, "reason": reason})
        else:
            self._suppressed[status] += 1

    def _safe_append(self, action: str, target: str, actor: str, details: dict[str, Any]) -> None:
        try:
            self.audit.append(action, target, actor=actor, details=details)
        except (AuditError, OSError) as exc:
            log.error("cannot record %s in the audit log: %s", action, exc)

"""The audit trail: an append-only, hash-chained JSON Lines log of control actions.

Each line is one record ``{"seq", "time", "actor", "action", "target",
"details", "prev", "hash"}`` plus, when keyed, ``"mac"``. ``hash`` is the
SHA-256 of the record's canonical JSON without ``hash`` and ``mac``, and
``prev`` the hash of the line before (64 zeros for the first). Editing,
deleting, inserting or reordering lines breaks the chain at a line
:meth:`AuditLog.verify` names; ``audit.head`` (the last sequence number and
hash, rewritten after every append) also reveals lines cut from the end.

Keying: ``mac`` is the HMAC-SHA256 of the record's hash under the keystore's
``audit`` data key (:data:`AUDIT_KEY`, made by ``pulsecast security init``),
and the head file carries the HMAC of its sequence number and hash. Whenever
that key is readable, every append MACs its record and the head, in plain
mode too; the audit path opens the keystore read-only and never creates a key
(:class:`AuditKey`), and keeps the key it read for the life of the process, so
appends stay keyed across a master-key rotation. In secure mode
(``security.enabled``) :meth:`AuditLog.verify` requires the key and a valid
MAC on every record and on the head of a non-empty log: a missing key or MAC
fails at the line concerned. In plain mode it checks the MACs it can and
reports which records carry none; old unkeyed logs still verify there. Not
protected: whoever holds the master key (and the keystore) can forge a keyed
history; deleting the log *and* its head, or putting back an older copy of
both, leaves a log that verifies (ship records off the machine for that).

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
import hmac
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
from pulsecast.security.errors import AuditError, KeystoreError
from pulsecast.security.keys import keystore_for

if TYPE_CHECKING:
    from pulsecast.config import Settings

__all__ = [
    "AUDIT_KEY",
    "GENESIS",
    "AuditKey",
    "AuditLog",
    "RefusalAuditor",
    "Verification",
    "audit_log",
    "default_actor",
    "record",
]

log = logging.getLogger(__name__)

GENESIS = "0" * 64
#: The keystore's data key that MACs the audit log (created by ``pulsecast security init``).
AUDIT_KEY = "audit"
_FIELDS = ("seq", "time", "actor", "action", "target", "details", "prev")
_NO_MAC = "no MAC: written without the audit key, or its MAC was removed"
_BAD_MAC = "MAC does not match: record forged, or keyed with another audit key"

# Audit keys read in this process, by keystore folder: the plaintext does not
# change when the master key is rotated (only its wrapping does), so appends
# stay keyed even when this process's master key has gone stale.
_KEYS: dict[Path, bytes] = {}


def _digest(rec: dict[str, Any]) -> str:
    body = {k: rec.get(k) for k in _FIELDS}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _record_mac(key: bytes, digest: str) -> str:
    return hmac.new(key, b"pulsecast-audit-record\0" + digest.encode(), hashlib.sha256).hexdigest()


def _head_mac(key: bytes, seq: int, digest: str) -> str:
    message = b"pulsecast-audit-head\0" + f"{seq}\0{digest}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _mac_matches(mac: object, expected: str) -> bool:
    # Bytes, not str: compare_digest refuses non-ASCII strings, which a forger controls.
    return isinstance(mac, str) and hmac.compare_digest(mac.encode(), expected.encode())


class AuditKey:
    """The audit log's HMAC key: the keystore's :data:`AUDIT_KEY` data key.

    The keystore is opened only when the key is needed, read-only: no master
    key and no data key is ever created from here (``pulsecast security init``
    makes the key).

    Args:
        settings: Where the keystore is and which master key opens it.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = (security_dir(settings) / "keys").resolve()

    def read(self) -> bytes:
        """Read the key from the keystore now (and keep it for :meth:`get`).

        Raises:
            AuditError: The keystore has no audit key, or cannot be read.
        """
        try:
            store = keystore_for(self.settings, create=False)
            key = store.existing_key(AUDIT_KEY)
        except (KeystoreError, OSError) as exc:
            msg = f"audit key not readable: {exc}"
            raise AuditError(msg) from exc
        if key is None:
            msg = f"no {AUDIT_KEY!r} key in {store.path}: run `pulsecast security init`"
            raise AuditError(msg)
        _KEYS[self.folder] = key
        return key

    def get(self) -> bytes:
        """The key this process read before, else :meth:`read`."""
        cached = _KEYS.get(self.folder)
        return cached if cached is not None else self.read()


def default_actor() -> str:
    """Who runs this process: ``user@host`` as the operating system says."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{os.uname().nodename}"


def _some(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:5]))
    return f"{shown} and {len(numbers) - 5} more" if len(numbers) > 5 else shown


@dataclass
class Verification:
    """The result of :meth:`AuditLog.verify`.

    Attributes:
        records: Records read.
        problems: ``(line, problem)``: the first break, if any.
        key_read: Whether the audit key was read (then every MAC present was checked).
        key_problem: Why the key was not read.
        unkeyed: Lines of records without a MAC (plain mode; in secure mode they are problems).
        head_unkeyed: The head file carries no MAC (plain mode).
    """

    records: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)
    key_read: bool = False
    key_problem: str | None = None
    unkeyed: list[int] = field(default_factory=list)
    head_unkeyed: bool = False

    @property
    def ok(self) -> bool:
        """Whether the chain is intact."""
        return not self.problems

    @property
    def keyed(self) -> bool:
        """Whether every record's MAC, and the head's, was checked with the key."""
        return self.key_read and not self.unkeyed and not self.head_unkeyed

    @property
    def summary(self) -> str:
        """One line: how many records, and whether the chain was checked with the key."""
        text = f"{self.records} record(s), chain intact"
        if self.keyed:
            return f"{text}; keyed: every record's MAC checked"
        missing = [f"line(s) {_some(self.unkeyed)}"] if self.unkeyed else []
        missing += ["the head file"] if self.head_unkeyed else []
        without = f"no MAC on {' and '.join(missing)}" if missing else ""
        if not self.key_read:
            checked = f"MACs not checked ({self.key_problem})"
            return f"{text}; unkeyed: " + "; ".join(filter(None, [checked, without]))
        return f"{text}; unkeyed: {without} (written without the audit key), other MACs checked"


class AuditLog:
    """One audit log file (and its head file next to it).

    Args:
        path: The JSON Lines file; its folder is created ``0700``, the file ``0600``.
        clock: Wall-clock time for records; tests inject theirs.
        key: Where the HMAC key comes from; None: the log is not keyed.
        require_key: Secure mode: :meth:`verify` requires the key and a MAC
            on every record and on the head.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], datetime] | None = None,
        key: AuditKey | None = None,
        require_key: bool = False,
    ) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head")
        self.clock = clock or (lambda: datetime.now(UTC))
        self.key = key
        self.require_key = require_key

    def _append_key(self) -> tuple[bytes | None, str]:
        """The key to MAC an append with (None when not readable), and why not."""
        if self.key is None:
            return None, "no audit key given"
        try:
            return self.key.get(), ""
        except AuditError as exc:
            return None, str(exc)

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
        """Append one record; returns it (with its hash, and its MAC when the key is readable).

        Without a readable key the record is written unkeyed (in secure mode
        with an error logged: :meth:`verify` will fail at that line there).

        Raises:
            AuditError: The log cannot be written, or its last line is not a record.
        """
        mac_key, why = self._append_key()
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
                head: dict[str, Any] = {"seq": seq, "hash": rec["hash"]}
                if mac_key is not None:
                    rec["mac"] = _record_mac(mac_key, rec["hash"])
                    head["mac"] = _head_mac(mac_key, seq, rec["hash"])
                line = json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n"
                fh.write(line.encode())
                fh.flush()
                os.fsync(fh.fileno())
                write_private(self.head_path, json.dumps(head).encode())
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        if mac_key is None and self.require_key:
            log.error("audit record %d in %s written without a MAC: %s", seq, self.path, why)
        elif mac_key is None:
            log.debug("audit record %d in %s written unkeyed: %s", seq, self.path, why)
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
        """Check the chain line by line, the MACs, and the head file.

        The key is read from the keystore afresh (not the key kept for appends).
        With it, every MAC present is checked; in secure mode (``require_key``)
        a missing key, or a record or head without a MAC, is a problem too.

        Returns:
            How many records were read, whether the key was used, which records
            carry no MAC, and the problems found, each with its line number (the
            first break only: what follows it cannot be trusted either).
        """
        result = Verification()
        key: bytes | None = None
        if self.key is None:
            result.key_problem = "no audit key given"
        else:
            try:
                key = self.key.read()
            except AuditError as exc:
                result.key_problem = str(exc)
        result.key_read = key is not None
        prev, expected_seq = GENESIS, 1
        if self.path.is_file():
            with self.path.open("rb") as fh:
                for number, raw in enumerate(fh, start=1):
                    problem = self._check_line(raw, prev, expected_seq)
                    rec = json.loads(raw) if problem is None else {}
                    problem = problem or self._check_mac(rec, key, number, result)
                    if problem:
                        result.problems.append((number, problem))
                        return result
                    prev, expected_seq = rec["hash"], rec["seq"] + 1
                    result.records += 1
        problem = self._check_head(prev, expected_seq - 1, key, result)
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

    def _check_mac(
        self, rec: dict[str, Any], key: bytes | None, number: int, result: Verification
    ) -> str | None:
        mac = rec.get("mac")
        if key is None and self.require_key:
            return f"cannot check its MAC: {result.key_problem}"
        if mac is None:
            if self.require_key:
                return _NO_MAC
            result.unkeyed.append(number)
            return None
        if key is not None and not _mac_matches(mac, _record_mac(key, rec["hash"])):
            return _BAD_MAC
        return None

    def _check_head(
        self, last_hash: str, last_seq: int, key: bytes | None, result: Verification
    ) -> str | None:
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
        mac = head.get("mac")
        if mac is None and last_seq > 0:
            if self.require_key:
                return "head file has no MAC (rewritten outside pulsecast)"
            result.head_unkeyed = True
        elif mac is not None and key is not None:
            if not _mac_matches(mac, _head_mac(key, head_seq, head_hash)):
                return "head file's MAC does not match (rewritten outside pulsecast)"
        return None


def audit_log(settings: Settings) -> AuditLog:
    """The audit log of these settings: ``<security dir>/audit/audit.jsonl``.

    Keyed with the keystore's audit key whenever it is readable (the keystore
    is opened only then, read-only); in secure mode ``verify`` requires it.
    Creates nothing.
    """
    return AuditLog(
        security_dir(settings) / "audit" / "audit.jsonl",
        key=AuditKey(settings),
        require_key=settings.security.enabled,
    )


def record(
    settings: Settings,
    action: str,
    target: str,
    *,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append a control action to the audit log, when ``security.audit`` is on.

    A failure to write (of the log, of the keystore, of anything) is logged,
    never raised: the action it records has already happened and must not be
    reported as failed.
    """
    if not settings.security.audit:
        return
    try:
        audit_log(settings).append(action, target, actor=actor, details=details)
    except Exception as exc:  # never raise: see above
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

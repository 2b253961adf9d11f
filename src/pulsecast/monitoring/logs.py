"""Reading the platform's log files: list them, show their tail, follow them.

Every local server writes ``<data_dir>/logs/<service>.log`` (see
:mod:`pulsecast.services.base`) and the pulsecast process its own JSON lines to
``<data_dir>/logs/pulsecast.log`` (:mod:`pulsecast.logging`, rotated). This
module backs ``pulsecast logs``: :func:`list_logs` lists the files,
:func:`log_path` checks a service name, :func:`tail` reads the last lines and
:func:`follow` keeps yielding new ones (like ``tail -F``: it survives rotation
and truncation, and waits for a file that does not exist yet) until its
``stop`` callable says so. Pure standard library; no server is contacted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from pulsecast.errors import PulsecastError

__all__ = [
    "KNOWN_LOGS",
    "LogFile",
    "UnknownLogError",
    "as_json_line",
    "follow",
    "known_logs",
    "list_logs",
    "log_path",
    "logs_dir",
    "tail",
]

#: Log names pulsecast's launchers write (``<name>.log``), besides any found on disk.
KNOWN_LOGS = (
    "pulsecast",
    "kafka",
    "postgres",
    "ingest",
    "hdfs-namenode",
    "hdfs-datanode",
    "spark-master",
    "spark-worker",
    "prometheus",
    "alertmanager",
    "monitor",
)

_BLOCK = 64 * 1024


class UnknownLogError(PulsecastError):
    """A log was asked for by a name no component writes.

    Attributes:
        service: The name asked for.
        known: The names that exist.
    """

    def __init__(self, service: str, known: list[str]) -> None:
        super().__init__(f"unknown service {service!r}; known logs: {', '.join(known)}")
        self.service = service
        self.known = known


@dataclass(frozen=True)
class LogFile:
    """One log file on disk."""

    service: str
    path: Path
    size_bytes: int
    modified: datetime

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-able values."""
        return {
            "service": self.service,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "modified": self.modified.isoformat(),
        }


def logs_dir(data_dir: Path) -> Path:
    """The folder holding every log file of a data directory."""
    return data_dir / "logs"


def list_logs(folder: Path) -> list[LogFile]:
    """The ``*.log`` files in ``folder`` by name (rotated ``.log.N`` copies left out)."""
    found = []
    for path in sorted(folder.glob("*.log")):
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed while listing
            continue
        modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        found.append(LogFile(path.stem, path, stat.st_size, modified))
    return found


def known_logs(folder: Path) -> list[str]:
    """Every log name: those pulsecast writes and any other found in ``folder``."""
    return sorted(set(KNOWN_LOGS) | {f.service for f in list_logs(folder)})


def log_path(folder: Path, service: str) -> Path:
    """The log file of ``service`` (it may not exist yet).

    Raises:
        UnknownLogError: No component writes a log of that name.
    """
    known = known_logs(folder)
    if service not in known:
        raise UnknownLogError(service, known)
    return folder / f"{service}.log"


def _decode(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", errors="replace")


def _last_lines(handle: BinaryIO, count: int) -> list[str]:
    """The last ``count`` complete lines; leaves ``handle`` at the end of the last one."""
    end = handle.seek(0, os.SEEK_END)
    data = b""
    pos = end
    while pos > 0 and data.count(b"\n") <= count:
        step = min(_BLOCK, pos)
        pos -= step
        handle.seek(pos)
        data = handle.read(step) + data
    complete, newline, partial = data.rpartition(b"\n")
    # A line still being written is left for the follower to finish.
    handle.seek(end - len(partial))
    if not newline:
        return []
    lines = complete.split(b"\n")
    return [_decode(line) for line in lines[-count:]] if count > 0 else []


def tail(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a file (a trailing unfinished line included).

    Raises:
        FileNotFoundError: The file does not exist.
    """
    with path.open("rb") as handle:
        lines = _last_lines(handle, count)
        rest = handle.read()
    if rest:
        lines = [*lines, _decode(rest)][-count:] if count > 0 else []
    return lines


def _replaced(path: Path, handle: BinaryIO) -> bool:
    """Whether ``path`` now names another file than ``handle`` (it was rotated)."""
    try:
        current = path.stat()
    except FileNotFoundError:
        return False  # renamed, not yet re-created: keep the old one
    return current.st_ino != os.fstat(handle.fileno()).st_ino


def follow(
    path: Path,
    *,
    stop: Callable[[], bool],
    lines: int = 0,
    poll_s: float = 0.2,
) -> Iterator[str]:
    """Yield the last ``lines`` lines of ``path``, then each line appended to it.

    Like ``tail -F``: a missing file is waited for, a rotated one (renamed and
    re-created, as :class:`logging.handlers.RotatingFileHandler` does) is read
    to its end and then the new one from its start, a truncated one is read
    again from its start. Blocks between lines, polling every ``poll_s``.

    Args:
        path: The log file.
        stop: Called between polls; once it returns True, what was already
            written is yielded and the generator ends.
        lines: Lines of history to start with.
        poll_s: Pause when nothing new was written.

    Yields:
        Each line, without its newline.
    """
    handle: BinaryIO | None = None
    pending = b""
    first = True

    def drain(handle: BinaryIO) -> Iterator[str]:
        nonlocal pending
        chunk = handle.read()
        if chunk:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            yield from (_decode(line) for line in complete)

    try:
        while True:
            stopping = stop()
            if handle is None:
                try:
                    handle = path.open("rb")
                except FileNotFoundError:
                    handle = None  # a file created later is read from its start
                else:
                    if first:
                        yield from _last_lines(handle, lines)
                first = False
            if handle is not None:
                got = False
                for line in drain(handle):
                    got = True
                    yield line
                if got and not stopping:
                    continue
                if _replaced(path, handle):
                    yield from drain(handle)
                    if pending:
                        yield _decode(pending)
                        pending = b""
                    handle.close()
                    handle = None
                    continue
                if os.fstat(handle.fileno()).st_size < handle.tell():  # truncated in place
                    handle.seek(0)
                    pending = b""
                    continue
            if stopping:
                if pending:
                    yield _decode(pending)
                return
            time.sleep(poll_s)
    finally:
        if handle is not None:
            handle.close()


def as_json_line(service: str, line: str) -> str:
    """One log line as a JSON object with its ``service``.

    A JSON object line (pulsecast's own format) keeps its fields; any other
    line becomes ``{"service": ..., "message": line}``.
    """
    try:
        parsed = json.loads(line)
    except ValueError:
        parsed = None
    fields = parsed if isinstance(parsed, dict) else {"message": line}
    return json.dumps({"service": service, **fields})

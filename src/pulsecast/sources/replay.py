"""Replay files of events into a stream, preserving event time.

Reads CSV (with a header) or JSON Lines, one file or a folder of them (the
Numenta Anomaly Benchmark layout ``timestamp,value`` included), and yields
events in event-time order across files. A row becomes an event with
``event_time`` from the time column, the stream's key field from the key
column or else the file's path relative to the folder (``realKnownCause/
machine_temperature_system_failure``), and the stream's other fields from the
columns of the same name. JSON Lines objects that already have ``event_time``
and ``payload`` are taken as they are.

A row whose time does not parse is not dropped: it is passed on unchanged so
validation rejects it and it lands in the dead-letter topic with the reason.
"""

from __future__ import annotations

import csv
import heapq
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pulsecast.config import StreamSpec
from pulsecast.sources.errors import SourceError

__all__ = ["SUFFIXES", "discover", "replay_events"]

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")
TIME_COLUMNS = ("event_time", "timestamp", "time", "ts")
_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)


def discover(paths: list[Path]) -> list[tuple[Path, str]]:
    """Expand files and folders into ``(file, series name)`` pairs, sorted.

    Raises:
        SourceError: A path does not exist or holds no replayable file.
    """
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_file():
            found.append((path, path.stem))
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
            if not files:
                msg = f"{path}: no {', '.join(SUFFIXES)} files found"
                raise SourceError(msg)
            found.extend((f, str(f.relative_to(path).with_suffix(""))) for f in files)
        else:
            msg = f"{path}: no such file or folder"
            raise SourceError(msg)
    return found


def parse_time(text: Any) -> datetime | None:
    """Parse an ISO 8601 time (a naive one is taken as UTC) or epoch seconds/millis."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = text / 1000 if text > 1e11 else text
        return datetime.fromtimestamp(seconds, UTC)
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        if path.suffix == ".csv":
            for line, row in enumerate(csv.DictReader(fh), start=2):
                yield line, row
        else:
            for line, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError:
                    obj = {"_raw": text.rstrip("\n")}
                yield line, obj if isinstance(obj, dict) else {"_raw": text.rstrip("\n")}


def _events_of(
    path: Path,
    series: str,
    spec: StreamSpec,
    *,
    time_field: str | None,
    key_field: str | None,
) -> Iterator[tuple[datetime, int, dict[str, Any]]]:
    order = 0
    for line, row in _rows(path):
        order += 1
        if "_raw" in row:
            # Not an object: hand it on as is, validation will say why.
            yield _FAR_FUTURE, order, {"event_time": None, "payload": row["_raw"]}
            continue
        if "payload" in row and "event_time" in row:
            yield parse_time(row["event_time"]) or _FAR_FUTURE, order, row
            continue
        column = time_field or next((c for c in TIME_COLUMNS if c in row), None)
        if column is None:
            msg = f"{path}:{line}: no time column (looked for {', '.join(TIME_COLUMNS)})"
            raise SourceError(msg)
        raw_time = row.get(column)
        when = parse_time(raw_time)
        payload = {name: row[name] for name in spec.fields if name in row and row[name] != ""}
        key = row.get(key_field) if key_field else None
        payload.setdefault(spec.key_field, key if key is not None else series)
        event = {"event_time": when if when is not None else raw_time, "payload": payload}
        yield when or _FAR_FUTURE, order, event


def replay_events(
    paths: list[Path],
    spec: StreamSpec,
    *,
    time_field: str | None = None,
    key_field: str | None = None,
) -> Iterator[tuple[datetime | None, dict[str, Any]]]:
    """Events of every file, merged in event-time order.

    Each file is read lazily and assumed sorted by time (as NAB files are);
    events of different files interleave by time.

    Args:
        paths: Files or folders.
        spec: The target stream's schema (which columns are payload fields).
        time_field: The time column; default the first of :data:`TIME_COLUMNS`.
        key_field: A column holding each row's key; default the series name.

    Yields:
        ``(event time or None when unparseable, event mapping)``.
    """
    files = discover(paths)
    streams = [
        _events_of(f, series, spec, time_field=time_field, key_field=key_field)
        for f, series in files
    ]
    # Tie-break on file index and row order so equal times keep file order.
    tagged = (
        ((when, idx, order, event) for when, order, event in stream)
        for idx, stream in enumerate(streams)
    )
    for when, _idx, _order, event in heapq.merge(*tagged, key=lambda t: (t[0], t[1], t[2])):
        yield (None if when is _FAR_FUTURE else when), event

"""A tiny, deterministic lake of ``telemetry`` for the named analyses, written with deltalake.

Two entities (m-1, m-2), known times on Monday 2026-05-04 and Tuesday 2026-05-05
(UTC), and one row on 2026-05-01 that a ``since`` of 2026-05-02 leaves out.
The tables have the columns the streaming job writes; the scores table has the
forecast columns of live forecasting (forecast, horizon_min, model_version).
The silver files' write times in the Delta log are set to known instants, so
``lake_files`` is deterministic; the batches table holds what the streaming
job records of the same two micro-batches.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from pulsecast.bench.query import set_write_times
from pulsecast.config import Settings
from pulsecast.testing import settings_for

SINCE = "2026-05-02"
UTC_TS = pa.timestamp("us", tz="UTC")


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """An instant in May 2026, UTC."""
    return datetime(2026, 5, day, hour, minute, second, tzinfo=UTC)


def _gold() -> pa.Table:
    # key, metric, window start, count, mean, min, max
    windows = [
        ("m-1", "temperature_c", at(4, 10, 0), 2, 60.0, 59.0, 61.0),
        ("m-1", "temperature_c", at(4, 10, 1), 2, 62.0, 61.0, 63.0),
        ("m-1", "temperature_c", at(4, 11, 0), 4, 64.0, 63.0, 65.0),
        ("m-1", "cpu_util", at(4, 10, 0), 2, 40.0, 38.0, 42.0),
        ("m-2", "temperature_c", at(4, 10, 0), 1, 70.0, 70.0, 70.0),
        ("m-2", "temperature_c", at(5, 9, 30), 3, 71.0, 70.0, 72.0),
        ("m-2", "temperature_c", at(1, 0, 0), 5, 50.0, 49.0, 51.0),  # before SINCE
    ]
    starts = [w[2] for w in windows]
    return pa.table(
        {
            "key": [w[0] for w in windows],
            "window_start": pa.array(starts, UTC_TS),
            "window_end": pa.array([s.replace(minute=s.minute + 1) for s in starts], UTC_TS),
            "metric": [w[1] for w in windows],
            "count": pa.array([w[3] for w in windows], pa.int64()),
            "mean": [w[4] for w in windows],
            "min": [w[5] for w in windows],
            "max": [w[6] for w in windows],
            "stddev": [1.0] * len(windows),
            "p50": [w[4] for w in windows],
            "p95": [w[6] for w in windows],
            "window_name": ["1m"] * len(windows),
            "is_final": [True] * len(windows),
            "window_date": pa.array([s.date() for s in starts], pa.date32()),
            "window_hour": pa.array([s.hour for s in starts], pa.int32()),
        }
    )


def _scores() -> pa.Table:
    # key, metric, window start, value, count, score, forecast, horizon_min, model_version
    rows: list[tuple[Any, ...]] = [
        ("m-1", "temperature_c", at(4, 10, 0), 60.0, 2, 0.1, 61.0, 2, 3),
        ("m-1", "temperature_c", at(4, 10, 1), 62.0, 2, 0.9, 63.0, 2, 4),
        ("m-1", "temperature_c", at(4, 10, 2), 66.0, 2, 0.2, None, None, None),
        ("m-1", "temperature_c", at(4, 10, 3), 70.0, 2, 0.5, 67.0, 5, 4),  # horizon not over
        ("m-2", "events", at(4, 10, 0), 3.0, 3, 0.7, None, None, None),
        ("m-2", "temperature_c", at(4, 10, 0), 70.0, 1, 0.3, 72.0, 1, 3),
        ("m-2", "temperature_c", at(4, 10, 1), 0.0, 1, 0.95, None, None, None),
        ("m-1", "temperature_c", at(1, 0, 0), 50.0, 5, 0.99, None, None, None),  # before SINCE
    ]
    starts = [r[2] for r in rows]
    return pa.table(
        {
            "key": [r[0] for r in rows],
            "metric": [r[1] for r in rows],
            "window_start": pa.array(starts, UTC_TS),
            "window_end": pa.array([s.replace(minute=s.minute + 1) for s in starts], UTC_TS),
            "value": [r[3] for r in rows],
            "count": pa.array([r[4] for r in rows], pa.int64()),
            "score": [r[5] for r in rows],
            "flagged": [r[5] >= 0.5 for r in rows],
            "window_date": pa.array([s.date() for s in starts], pa.date32()),
            "detector": ["novelty-1"] * len(rows),
            "forecast": pa.array([r[6] for r in rows], pa.float64()),
            "horizon_min": pa.array([r[7] for r in rows], pa.int32()),
            "model_version": pa.array([r[8] for r in rows], pa.int64()),
        }
    )


# The forecasts of _scores whose horizon has passed, as the job resolves them (key, metric,
# window start, model version, horizon, forecast, actual): 10:00's forecast of m-1 covers
# 10:01 and 10:02, (62*2 + 66*2)/4 = 64; 10:01's covers 10:02 and 10:03, 68; m-2's covers
# 10:01, whose mean is 0. 10:03's (5 minutes) is pending: the newest window starts at 10:03.
RESOLVED: list[tuple[Any, ...]] = [
    ("m-1", "temperature_c", at(4, 10, 0), 3, 2, 61.0, 64.0),
    ("m-1", "temperature_c", at(4, 10, 1), 4, 2, 63.0, 68.0),
    ("m-2", "temperature_c", at(4, 10, 0), 3, 1, 72.0, 0.0),
]


def _forecast_errors() -> pa.Table:
    from pulsecast.ml.live_error import ERRORS_SCHEMA

    errors = [r[6] - r[5] for r in RESOLVED]
    return pa.table(
        {
            "key": [r[0] for r in RESOLVED],
            "metric": [r[1] for r in RESOLVED],
            "window_start": pa.array([r[2] for r in RESOLVED], UTC_TS),
            "window_date": pa.array([r[2].date() for r in RESOLVED], pa.date32()),
            "model_version": pa.array([r[3] for r in RESOLVED], pa.int64()),
            "horizon_min": pa.array([r[4] for r in RESOLVED], pa.int32()),
            "forecast": [r[5] for r in RESOLVED],
            "actual": [r[6] for r in RESOLVED],
            "error": errors,
            "abs_error": [abs(e) for e in errors],
            "pct_error": [
                100 * abs(e) / abs(r[6]) if r[6] else None
                for e, r in zip(errors, RESOLVED, strict=True)
            ],
        },
        schema=ERRORS_SCHEMA,
    )


# Kafka records: partition, offset, Kafka timestamp.
RECORDS = [
    (0, 0, at(4, 10, 0, 5)),
    (0, 1, at(4, 10, 0, 6)),
    (0, 2, at(4, 10, 0, 7)),
    (0, 3, at(4, 10, 0, 8)),  # invalid: not in silver
    (0, 4, at(4, 11, 0, 1)),
    (0, 5, at(4, 11, 0, 2)),  # a repeated event id: not in silver
    (1, 0, at(4, 11, 0, 3)),
]

# Silver events per batch: (partition, offset), event time.
BATCHES = {
    0: [((0, 0), at(4, 10, 0, 0)), ((0, 1), at(4, 10, 0, 1)), ((0, 2), at(4, 10, 0, 2))],
    # the second event is older than batch 0's newest: accepted late
    1: [((0, 4), at(4, 11, 0, 0)), ((1, 0), at(4, 9, 59, 0))],
}
# When each batch's silver files were written (their Delta log's modificationTime, and
# the end of the batch's silver commit in the batches table).
WRITTEN = {0: at(4, 10, 0, 12), 1: at(4, 11, 0, 10)}
# The records of each batch, and why the job rejected those it did not write to silver.
BATCH_RECORDS = {0: [(0, 0), (0, 1), (0, 2), (0, 3)], 1: [(0, 4), (0, 5), (1, 0)]}
REJECTED = {(0, 3): "malformed_json", (0, 5): "duplicate"}


def _bronze() -> pa.Table:
    return pa.table(
        {
            "key": ["m-1"] * len(RECORDS),
            "value": pa.array([b"{}"] * len(RECORDS), pa.binary()),
            "topic": ["telemetry.events"] * len(RECORDS),
            "partition": pa.array([r[0] for r in RECORDS], pa.int32()),
            "offset": pa.array([r[1] for r in RECORDS], pa.int64()),
            "kafka_timestamp": pa.array([r[2] for r in RECORDS], UTC_TS),
            "ingest_date": pa.array([r[2].date() for r in RECORDS], pa.date32()),
        }
    )


def _silver(batch: int) -> pa.Table:
    sent = {(p, o): ts for p, o, ts in RECORDS}
    events = BATCHES[batch]
    n = len(events)
    return pa.table(
        {
            "event_id": [f"e-{p}-{o}" for (p, o), _ in events],
            "key": ["m-1"] * n,
            "event_time": pa.array([t for _, t in events], UTC_TS),
            "ingest_time": pa.array([sent[c] for c, _ in events], UTC_TS),
            "entity_id": ["m-1"] * n,
            "temperature_c": [60.0] * n,
            "cpu_util": [40.0] * n,
            "vibration_mm_s": [3.0] * n,
            "power_kw": [20.0] * n,
            "kafka_partition": pa.array([p for (p, _), _ in events], pa.int32()),
            "kafka_offset": pa.array([o for (_, o), _ in events], pa.int64()),
            "batch_id": pa.array([batch] * n, pa.int64()),
            "event_date": pa.array([t.date() for _, t in events], pa.date32()),
            "event_hour": pa.array([t.hour for _, t in events], pa.int32()),
        }
    )


def _batch_stats(batch: int) -> pa.Table:
    """What the streaming job records of ``batch`` (``batch_stats_rows``)."""
    from pulsecast.stream.batch_stats import batch_stats_rows

    sent = {(p, o): ts for p, o, ts in RECORDS}
    times = {c: t for events in BATCHES.values() for c, t in events}
    records = BATCH_RECORDS[batch]
    reasons = [REJECTED.get(c) for c in records]
    reasons = [None if r == "duplicate" else r for r in reasons]
    verdict = pa.table(
        {
            "reason": pa.array(reasons, pa.string()),
            "event_id": [
                None if r else f"e-{p}-{o}" for (p, o), r in zip(records, reasons, strict=True)
            ],
            "event_time": pa.array([times.get(c, sent[c]) for c in records], UTC_TS),
            "ingest_time": pa.array([sent[c] for c in records], UTC_TS),
            "kafka_timestamp": pa.array([sent[c] for c in records], UTC_TS),
        }
    )
    newest = [t for b in BATCHES if b < batch for _, t in BATCHES[b]]
    return batch_stats_rows(
        verdict,
        batch_id=batch,
        fresh=pa.array([c not in REJECTED for c in records]),
        written_at=WRITTEN[batch],
        newest_before=max(newest) if newest else None,
        entities=1,
    )


def write_lake(root: Path) -> None:
    """The fixture lake of ``telemetry`` under ``root``."""
    write_deltalake(
        root / "gold/telemetry_1m", _gold(), partition_by=["window_date", "window_hour"]
    )
    write_deltalake(root / "gold/telemetry_scores", _scores(), partition_by=["window_date"])
    write_deltalake(
        root / "gold/telemetry_forecast_errors", _forecast_errors(), partition_by=["window_date"]
    )
    write_deltalake(root / "bronze/telemetry", _bronze(), partition_by=["ingest_date"])
    for batch in BATCHES:
        write_deltalake(
            root / "silver/telemetry",
            _silver(batch),
            partition_by=["event_date", "event_hour"],
            mode="append",
        )
    set_write_times(root / "silver/telemetry", WRITTEN)
    for batch in BATCHES:
        write_deltalake(
            root / "state/telemetry_batches",
            _batch_stats(batch),
            partition_by=["batch_date"],
            mode="append",
        )


@pytest.fixture(scope="session")
def lake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture lake, written once for the session."""
    root = tmp_path_factory.mktemp("analytics") / "lake"
    write_lake(root)
    return root


@pytest.fixture
def lake(lake_root: Path, tmp_path: Path) -> Settings:
    """Settings whose lake is the fixture lake."""
    return settings_for(tmp_path / "state", lake={"uri": lake_root.as_uri()})


@pytest.fixture
def empty_lake(tmp_path: Path) -> Settings:
    """Settings whose lake has no table yet."""
    return settings_for(tmp_path / "state", lake={"uri": (tmp_path / "lake").as_uri()})


def config_file(settings: Settings, folder: Path) -> Path:
    """A pulsecast.toml pointing at ``settings``' lake (for CLI tests)."""
    path = folder / "pulsecast.toml"
    path.write_text(f'[lake]\nuri = "{settings.lake_uri}"\n')
    return path

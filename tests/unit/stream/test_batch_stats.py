"""One micro-batch's statistics, computed in Arrow (no Spark) and appended once."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from pulsecast.security.lake_crypto import LakeCrypto
from pulsecast.stream.batch_stats import (
    BATCH_STATS_SCHEMA,
    RELATIVE_ACCURACY,
    BatchStatsWriter,
    batch_stats_rows,
    first_occurrences,
    histogram,
)
from pulsecast.testing import settings_for

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def at(minute: int, second: float) -> datetime:
    return T0 + timedelta(minutes=minute, seconds=second)


def verdict(rows: list[tuple[str | None, str | None, datetime, datetime, datetime]]) -> pa.Table:
    reason, event_id, event_time, ingest_time, kafka = zip(*rows, strict=True)
    stamp = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "reason": pa.array(reason, pa.string()),
            "event_id": pa.array(event_id, pa.string()),
            "event_time": pa.array(event_time, stamp),
            "ingest_time": pa.array(ingest_time, stamp),
            "kafka_timestamp": pa.array(kafka, stamp),
        }
    )


def measures(rows: pa.Table) -> dict[tuple[str, object, object], int]:
    return {
        (r["measure"], r["minute"], r["reason"]): r["n"]
        for r in rows.to_pylist()
        if r["measure"] not in ("lag", "pipeline", "lag_max")
    }


def test_histogram_quantiles_are_within_the_relative_accuracy() -> None:
    values = [0.0005, 0.3, 1.0, 2.5, 7.0, 7.5, 60.0, 3600.0]
    seconds, counts = histogram(pa.array(values))
    assert sum(counts.to_pylist()) == len(values)
    estimates = dict(zip(seconds.to_pylist(), counts.to_pylist(), strict=True))
    for value in values:
        true = max(value, 0.001)  # shorter lags count as a millisecond
        near = [s for s in estimates if abs(s - true) <= RELATIVE_ACCURACY * true * (1 + 1e-9)]
        assert near, value
    # values further apart than a bucket (7.5 / 7.0 > g) never share one
    assert len(estimates) == len(values)


def test_first_occurrences_marks_the_first_row_of_each_id() -> None:
    mask = first_occurrences(pa.array(["a", "b", "a", None, "c", "b", None]))
    assert mask.to_pylist() == [True, True, False, True, True, False, False]


def test_first_occurrences_in_an_order_mark_each_ids_first_row_in_it() -> None:
    ids = pa.array(["a", "b", "a", "a", "b"])
    partitions = pa.array([1, 0, 0, 0, 0])
    offsets = pa.array([5, 9, 7, 3, 2])
    mask = first_occurrences(ids, [partitions, offsets])
    assert mask.to_pylist() == [False, False, False, True, True]
    assert first_occurrences(ids, [partitions]).to_pylist() == [False, True, True, False, False]


def test_batch_rows_count_each_outcome_per_kafka_minute() -> None:
    table = verdict(
        [
            (None, "e1", at(0, 50), at(0, 55), at(0, 56)),
            (None, "e2", at(0, 58), at(1, 0), at(1, 1)),
            (
                None,
                "e3",
                at(0, 30),
                at(1, 2),
                at(1, 3),
            ),  # older than the newest before: out of order
            (None, "e1", at(0, 50), at(0, 55), at(1, 4)),  # silver holds it: duplicate
            ("malformed_json", None, at(0, 0), at(0, 0), at(0, 57)),
            ("late", "e9", at(0, 0), at(1, 4), at(1, 5)),
        ]
    )
    fresh = pa.array([True, True, True, False, False, False])
    written_at = at(1, 10)
    rows = batch_stats_rows(
        table,
        batch_id=7,
        fresh=fresh,
        written_at=written_at,
        newest_before=at(0, 40),
        entities=2,
    )
    assert rows.schema == BATCH_STATS_SCHEMA
    assert set(rows["batch_id"].to_pylist()) == {7}
    assert set(rows["written_at"].to_pylist()) == {written_at}
    assert set(rows["batch_date"].to_pylist()) == {written_at.date()}
    m0, m1 = at(0, 0), at(1, 0)
    expected = {
        ("received", m0, None): 2,
        ("received", m1, None): 4,
        ("accepted", m0, None): 1,
        ("accepted", m1, None): 2,
        ("rejected", m0, "malformed_json"): 1,
        ("rejected", m1, "duplicate"): 1,
        ("rejected", m1, "late"): 1,
        ("entities", None, None): 2,
    }
    got = measures(rows)
    # e3 (event time 12:00:30, Kafka minute 12:01) is older than the batches before (12:00:40)
    assert got == {**expected, ("out_of_order", m1, None): 1}
    lags = [(written_at - e).total_seconds() for e in (at(0, 50), at(0, 58), at(0, 30))]
    by = {m: [r for r in rows.to_pylist() if r["measure"] == m] for m in ("lag", "pipeline")}
    assert sum(r["n"] for r in by["lag"]) == 3
    assert sum(r["n"] for r in by["pipeline"]) == 3
    for lag in lags:
        assert any(math.isclose(r["seconds"], lag, rel_tol=RELATIVE_ACCURACY) for r in by["lag"])
    (top,) = [r for r in rows.to_pylist() if r["measure"] == "lag_max"]
    assert top["seconds"] == pytest.approx(max(lags))
    assert all(r["minute"] is None for r in by["lag"] + by["pipeline"])


def test_a_batch_of_rejects_only_has_no_lags() -> None:
    table = verdict([("wrong_type", "x", at(0, 0), at(0, 1), at(0, 2))])
    rows = batch_stats_rows(
        table,
        batch_id=1,
        fresh=pa.array([False]),
        written_at=at(0, 5),
        newest_before=None,
        entities=0,
    )
    assert measures(rows) == {
        ("received", at(0, 0), None): 1,
        ("rejected", at(0, 0), "wrong_type"): 1,
    }


def one_event(batch_id: int) -> pa.Table:
    """The rows of a batch of one event, written."""
    table = verdict([(None, "e1", at(0, 50), at(0, 55), at(0, 56))])
    return batch_stats_rows(
        table,
        batch_id=batch_id,
        fresh=pa.array([True]),
        written_at=at(1, 0),
        newest_before=None,
        entities=1,
    )


@pytest.mark.parametrize("secure", [False, True])
def test_appends_once_per_batch_and_compacts(tmp_path: Path, secure: bool) -> None:
    uri = str(tmp_path / "state" / "telemetry_batches")
    settings = settings_for(tmp_path, security={"encrypt_lake": secure})
    crypto = LakeCrypto.from_settings(settings)
    writer = BatchStatsWriter(uri, "telemetry", compact_every=3, crypto=crypto)
    writer.ensure_table()
    writer.ensure_table()  # idempotent
    for batch_id in (0, 1, 1, 2):
        writer.append(one_event(batch_id), batch_id)
    delta = DeltaTable(uri)
    dataset = delta.to_pyarrow_dataset()
    data = (dataset if crypto is None else crypto.readable(dataset)).to_table()
    received = [r for r in data.to_pylist() if r["measure"] == "received"]
    assert sorted(r["batch_id"] for r in received) == [0, 1, 2]  # batch 1 once
    assert len(delta.file_uris()) == 1  # three appends compacted into one file
    footer = Path(delta.file_uris()[0]).read_bytes()[-4:]
    assert footer == (b"PARE" if secure else b"PAR1")  # compacted encrypted when encrypted


def test_a_failing_compaction_is_logged_and_the_stream_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from deltalake.exceptions import CommitFailedError
    from deltalake.table import TableOptimizer

    def conflict(*_args: object, **_kwargs: object) -> None:
        raise CommitFailedError("a concurrent transaction deleted the same data")

    monkeypatch.setattr(TableOptimizer, "compact", conflict)  # lake optimize got there first
    uri = str(tmp_path / "state" / "telemetry_batches")
    writer = BatchStatsWriter(uri, "telemetry", compact_every=1)
    writer.ensure_table()
    for batch_id in (0, 1, 2):
        assert writer.append(one_event(batch_id), batch_id)  # every batch written, none raises
    assert caplog.text.count("left to the next compaction") == 3
    data = DeltaTable(uri).to_pyarrow_table()
    received = data.filter(pa.compute.equal(data["measure"], "received"))
    assert sorted(received["batch_id"].to_pylist()) == [0, 1, 2]

"""Gold's partition terms: the hours a replace or mark_final reads, and never fewer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from pulsecast.stream.job import gold_partitions


def test_gold_partitions_names_the_hours_of_a_span() -> None:
    first = datetime(2026, 11, 29, 22, 59, tzinfo=UTC)
    assert gold_partitions(first, first + timedelta(minutes=62)) == (
        "window_date BETWEEN '2026-11-29' AND '2026-11-30' AND window_hour IN (0, 22, 23)"
    )
    # A day or more: every hour, so no hour term.
    assert gold_partitions(first, first + timedelta(hours=30)) == (
        "window_date BETWEEN '2026-11-29' AND '2026-12-01'"
    )


def test_gold_partitions_prune_to_the_touched_hours_and_keep_every_match(tmp_path: Path) -> None:
    uri = str(tmp_path / "gold")
    starts = [datetime(2026, 11, 29, h, 30, tzinfo=UTC) for h in range(24)]
    rows = pa.table(
        {
            "window_start": pa.array(starts, pa.timestamp("us", tz="UTC")),
            "window_date": pa.array([s.date() for s in starts], pa.date32()),
            "window_hour": pa.array([s.hour for s in starts], pa.int32()),
        }
    )
    write_deltalake(uri, rows, partition_by=["window_date", "window_hour"])
    table = DeltaTable(uri)
    first, last = starts[9], starts[11]
    files = table.file_uris(file_pruning_predicate=gold_partitions(first, last))
    # 9:00, 10:00 and 11:00 of 24 hourly files: every start from first to last, no other.
    assert sorted(f.split("window_hour=")[1].split("/")[0] for f in files) == ["10", "11", "9"]

"""Commits to small lake tables through delta-rs: once per version, upserts, finality."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from pulsecast.lake import small_tables

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("window_start", pa.timestamp("us", "UTC")),
        ("value", pa.float64()),
        ("is_final", pa.bool_()),
    ]
)


def rows(keys: list[str], values: list[float]) -> pa.Table:
    """Row i starts at 12:0i."""
    starts = [datetime(2026, 5, 1, 12, i, tzinfo=UTC) for i in range(len(keys))]
    return pa.table([keys, starts, values, [False] * len(keys)], schema=SCHEMA)


def table(tmp_path: Path) -> str:
    uri = str(tmp_path / "t")
    write_deltalake(uri, SCHEMA.empty_table())
    return uri


def test_append_once_appends_each_version_once(tmp_path: Path) -> None:
    uri = table(tmp_path)
    assert small_tables.append_once(uri, rows(["a"], [1.0]), "app", 0)
    assert small_tables.append_once(uri, rows(["b"], [2.0]), "app", 1)
    assert not small_tables.append_once(uri, rows(["b"], [2.0]), "app", 1)  # a replay
    assert not small_tables.append_once(uri, rows(["a"], [1.0]), "app", 0)
    assert small_tables.append_once(uri, rows(["c"], [3.0]), "other", 0)  # another writer
    assert sorted(DeltaTable(uri).to_pyarrow_table()["key"].to_pylist()) == ["a", "b", "c"]


def test_replace_swaps_the_matching_rows_in_one_commit(tmp_path: Path) -> None:
    uri = table(tmp_path)
    small_tables.replace(uri, rows(["a", "b", "c"], [1.0, 2.0, 3.0]), "TRUE")
    version = DeltaTable(uri).version()
    small_tables.replace(uri, rows(["a", "b"], [10.0, 20.0]), "key IN ('a', 'b')")
    assert DeltaTable(uri).version() == version + 1
    result = DeltaTable(uri).to_pyarrow_table().sort_by("key")
    assert result["key"].to_pylist() == ["a", "b", "c"]
    assert result["value"].to_pylist() == [10.0, 20.0, 3.0]


def test_rewritten_tables_stay_readable_with_filters(tmp_path: Path) -> None:
    """What DuckDB does over the lake: a filtered scan of a pyarrow dataset."""
    import pyarrow.dataset as ds

    uri = table(tmp_path)
    small_tables.replace(uri, rows(["a", "b"], [1.0, 2.0]), "TRUE")
    small_tables.replace(uri, rows(["a"], [5.0]), "key = 'a'")
    small_tables.mark_final(uri, "TRUE")
    dataset = DeltaTable(uri).to_pyarrow_dataset()
    assert dataset.to_table(filter=ds.field("key") == "a")["value"].to_pylist() == [5.0]


def test_quote_escapes_quotes() -> None:
    assert small_tables.quote("o'neil") == "'o''neil'"


def test_mark_final_sets_only_matching_open_rows(tmp_path: Path) -> None:
    uri = table(tmp_path)
    small_tables.replace(uri, rows(["a", "b", "c"], [1.0, 2.0, 3.0]), "TRUE")
    before = small_tables.literal(datetime(2026, 5, 1, 12, 2, tzinfo=UTC))
    assert small_tables.mark_final(uri, f"window_start < {before}") == 2
    assert small_tables.mark_final(uri, f"window_start < {before}") == 0  # already final
    result = DeltaTable(uri).to_pyarrow_table().sort_by("key")
    assert result["is_final"].to_pylist() == [True, True, False]


def day_table(tmp_path: Path) -> str:
    """Rows a, b, c at 12:00, 12:01, 12:02, partitioned by ``day``."""
    uri = str(tmp_path / "p")
    data = rows(["a", "b", "c"], [1.0, 2.0, 3.0]).append_column(
        "day", pa.array([datetime(2026, 5, 1).date()] * 3, pa.date32())
    )
    write_deltalake(uri, data, partition_by=["day"])
    return uri


def test_read_since_filters_on_the_column(tmp_path: Path) -> None:
    uri = day_table(tmp_path)
    after = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    recent = small_tables.read_since(uri, "window_start", after, date_column="day")
    assert sorted(recent["key"].to_pylist()) == ["b", "c"]
    assert small_tables.read_since(uri, "window_start", None, date_column="day").num_rows == 3


def test_newest_tagged_finds_the_newest_tag_past_other_commits(tmp_path: Path) -> None:
    from deltalake import CommitProperties

    uri = table(tmp_path)
    assert small_tables.newest_tagged(uri, "job:") is None
    for n in (0, 1, 2):
        write_deltalake(
            uri,
            rows(["a"], [1.0]),
            mode="append",
            commit_properties=CommitProperties(custom_metadata={"userMetadata": f"job:{n}"}),
        )
    for _ in range(3):  # commits of another writer since (maintenance, say)
        small_tables.replace(uri, rows(["a"], [1.0]), "TRUE")
    assert small_tables.newest_tagged(uri, "job:") == 2
    assert small_tables.newest_tagged(uri, "job:", recent=2) == 2  # past the newest 2
    assert small_tables.newest_tagged(uri, "other:") is None


def batches_table(tmp_path: Path) -> tuple[str, dict[int, datetime]]:
    """Three appends, batch b's rows at 10:0b:00.000123 to 10:0b:00.000125; then one file
    compacted from batches 3 and 5 (its rows at 11:00 and 09:00)."""
    uri = str(tmp_path / "silver")
    newest: dict[int, datetime] = {}
    for b in range(3):
        times = [datetime(2026, 5, 1, 10, b, 0, 123 + i, tzinfo=UTC) for i in range(3)]
        newest[b] = times[-1]
        data = pa.table({"batch_id": pa.array([b] * 3, pa.int64()), "event_time": times})
        write_deltalake(uri, data, mode="append")
    mixed = pa.table(
        {
            "batch_id": pa.array([3, 5], pa.int64()),
            "event_time": [
                datetime(2026, 5, 1, 11, tzinfo=UTC),
                datetime(2026, 5, 1, 9, tzinfo=UTC),
            ],
        }
    )
    write_deltalake(uri, mixed, mode="append")
    return uri, newest


def test_newest_before_is_the_max_of_earlier_batches(tmp_path: Path) -> None:
    uri, newest = batches_table(tmp_path)
    read = small_tables.newest_before
    assert read(uri, "event_time", batch_column="batch_id", before=0) is None
    for before in (1, 2, 3):  # to the microsecond, though the log's statistics keep ms
        assert read(uri, "event_time", batch_column="batch_id", before=before) == newest[before - 1]
    # Batch 3's row sits in a file that holds batch 5's too: it is read, not its statistics.
    eleven = datetime(2026, 5, 1, 11, tzinfo=UTC)
    assert read(uri, "event_time", batch_column="batch_id", before=4) == eleven
    assert read(uri, "event_time", batch_column="batch_id", before=9) == eleven


def test_newest_before_opens_only_files_that_may_hold_it(tmp_path: Path) -> None:
    uri, newest = batches_table(tmp_path)
    actions = pa.table(DeltaTable(uri).get_add_actions(flatten=True)).to_pylist()
    first = next(a["path"] for a in actions if a["max.batch_id"] == 0)
    (tmp_path / "silver" / first).unlink()  # batch 0's file: its statistics suffice
    got = small_tables.newest_before(uri, "event_time", batch_column="batch_id", before=3)
    assert got == newest[2]


def test_read_since_reads_the_columns_asked_at_or_after(tmp_path: Path) -> None:
    uri = day_table(tmp_path)
    after = datetime(2026, 5, 1, 12, 1, tzinfo=UTC)
    recent = small_tables.read_since(
        uri, "window_start", after, date_column="day", columns=["key"], inclusive=True
    )
    assert recent.column_names == ["key"]
    assert sorted(recent["key"].to_pylist()) == ["b", "c"]


def test_newest_before_when_the_statistics_hold_the_answer(tmp_path: Path) -> None:
    # Times in whole milliseconds: the log's statistics keep them exactly, so the bound is
    # the answer, and the file holding it must still be read.
    uri = str(tmp_path / "ms")
    for b in range(3):
        at = datetime(2026, 5, 1, 10, b, 0, 5000, tzinfo=UTC)
        data = pa.table({"batch_id": pa.array([b, b], pa.int64()), "event_time": [at, at]})
        write_deltalake(uri, data, mode="append")
    got = small_tables.newest_before(uri, "event_time", batch_column="batch_id", before=2)
    assert got == datetime(2026, 5, 1, 10, 1, 0, 5000, tzinfo=UTC)

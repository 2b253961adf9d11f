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


def test_read_since_filters_on_the_column(tmp_path: Path) -> None:
    uri = str(tmp_path / "p")
    data = rows(["a", "b", "c"], [1.0, 2.0, 3.0]).append_column(
        "day", pa.array([datetime(2026, 5, 1).date()] * 3, pa.date32())
    )
    write_deltalake(uri, data, partition_by=["day"])
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

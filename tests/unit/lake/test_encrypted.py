"""Encrypted commits to the small tables: pyarrow writes the files, delta-rs commits them."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from pulsecast.config import Settings
from pulsecast.lake import encrypted, small_tables
from pulsecast.security.errors import UnwrapError
from pulsecast.security.lake_crypto import LakeCrypto
from pulsecast.testing import settings_for

MARKER = "pulsecast-unit-secret-4711"

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("window_start", pa.timestamp("us", "UTC")),
        ("window_end", pa.timestamp("us", "UTC")),
        ("value", pa.float64()),
        ("is_final", pa.bool_()),
        ("batch_id", pa.int64()),
        ("window_date", pa.date32()),
        ("window_hour", pa.int32()),
    ]
)


def secure(tmp_path: Path) -> Settings:
    return settings_for(tmp_path, security={"enabled": True})


def crypto_of(tmp_path: Path) -> LakeCrypto:
    crypto = LakeCrypto.from_settings(secure(tmp_path))
    assert crypto is not None
    return crypto


def rows(keys: list[str], values: list[float], *, hour: int = 12) -> pa.Table:
    """Row i is the minute window starting at <hour>:0i of 2026-05-01."""
    starts = [datetime(2026, 5, 1, hour, i, tzinfo=UTC) for i in range(len(keys))]
    ends = [datetime(2026, 5, 1, hour, i + 1, tzinfo=UTC) for i in range(len(keys))]
    n = len(keys)
    columns = [keys, starts, ends, values, [False] * n, [7] * n, [date(2026, 5, 1)] * n, [hour] * n]
    return pa.table(columns, schema=SCHEMA)


def table(tmp_path: Path) -> str:
    uri = str(tmp_path / "gold")
    write_deltalake(uri, SCHEMA.empty_table(), partition_by=["window_date", "window_hour"])
    return uri


def read(uri: str, crypto: LakeCrypto) -> pa.Table:
    return small_tables.read_since(
        uri, "window_start", None, date_column="window_date", crypto=crypto
    ).sort_by([("window_hour", "ascending"), ("key", "ascending")])


def data_files(uri: str) -> list[Path]:
    return sorted(p for p in Path(uri).rglob("*.parquet") if "_delta_log" not in p.parts)


def assert_sealed(uri: str) -> None:
    """No file holds the marker in plaintext; every data file has an encrypted footer."""
    files = data_files(uri)
    assert files
    for path in files:
        raw = path.read_bytes()
        assert MARKER.encode() not in raw
        assert raw[-4:] == b"PARE"  # Parquet's magic of an encrypted footer
    for path in (Path(uri) / "_delta_log").glob("*.json"):
        assert MARKER not in path.read_text()


def test_encrypted_append_once_appends_each_version_once(tmp_path: Path) -> None:
    uri, crypto = table(tmp_path), crypto_of(tmp_path)
    assert small_tables.append_once(uri, rows([MARKER], [1.0]), "app", 0, crypto=crypto)
    assert small_tables.append_once(uri, rows(["b"], [2.0], hour=13), "app", 1, crypto=crypto)
    assert not small_tables.append_once(uri, rows(["b"], [2.0]), "app", 1, crypto=crypto)
    assert small_tables.append_once(uri, rows(["c"], [3.0]), "other", 0, crypto=crypto)
    assert DeltaTable(uri).transaction_version("app") == 1
    result = read(uri, crypto)
    assert result["key"].to_pylist() == ["c", MARKER, "b"]
    assert result["window_hour"].to_pylist() == [12, 12, 13]
    assert_sealed(uri)
    # Hive partition folders, as Spark and delta-rs lay them out.
    assert {p.parent.relative_to(uri).as_posix() for p in data_files(uri)} == {
        "window_date=2026-05-01/window_hour=12",
        "window_date=2026-05-01/window_hour=13",
    }


def test_encrypted_files_keep_no_statistics_in_the_log(tmp_path: Path) -> None:
    uri, crypto = table(tmp_path), crypto_of(tmp_path)
    small_tables.append_once(uri, rows([MARKER, "b"], [1.0, 2.0]), "app", 0, crypto=crypto)
    adds = [
        json.loads(line)["add"]
        for path in sorted((Path(uri) / "_delta_log").glob("*.json"))
        for line in path.read_text().splitlines()
        if '"add"' in line
    ]
    assert [json.loads(a["stats"]) for a in adds] == [{"numRecords": 2}]
    assert adds[0]["partitionValues"] == {"window_date": "2026-05-01", "window_hour": "12"}


def test_encrypted_files_do_not_open_without_the_key(tmp_path: Path) -> None:
    uri, crypto = table(tmp_path), crypto_of(tmp_path)
    small_tables.append_once(uri, rows([MARKER], [1.0]), "app", 0, crypto=crypto)
    with pytest.raises(OSError, match="encrypted"):
        pq.read_table(data_files(uri)[0])
    with pytest.raises(OSError):
        DeltaTable(uri).to_pyarrow_table()
    other = crypto_of(tmp_path / "other")
    with pytest.raises(UnwrapError, match=r"^cannot decrypt 'lake': wrong key or tampered data$"):
        read(uri, other)


def test_encrypted_replace_swaps_the_matching_rows_in_one_commit(tmp_path: Path) -> None:
    uri, crypto = table(tmp_path), crypto_of(tmp_path)
    small_tables.replace(uri, rows([MARKER, "r", "s"], [1.0, 2.0, 3.0]), "TRUE", crypto=crypto)
    small_tables.replace(uri, rows(["t"], [4.0], hour=13), "window_hour = 13", crypto=crypto)
    other_hour = {p for p in data_files(uri) if "window_hour=13" in str(p)}
    version = DeltaTable(uri).version()
    new = rows([MARKER, "r"], [10.0, 20.0])
    small_tables.replace(uri, new, f"window_hour = 12 AND key IN ('{MARKER}', 'r')", crypto=crypto)
    assert DeltaTable(uri).version() == version + 1
    result = read(uri, crypto)
    assert result["key"].to_pylist() == [MARKER, "r", "s", "t"]
    assert result["value"].to_pylist() == [10.0, 20.0, 3.0, 4.0]
    live = set(DeltaTable(uri).file_uris())
    assert {str(p) for p in other_hour} <= live  # a partition the predicate misses is kept
    assert_sealed(uri)


def test_encrypted_replace_with_timestamp_predicates(tmp_path: Path) -> None:
    """The job's gold predicate: dates, keys and window starts as UTC literals."""
    uri, crypto = table(tmp_path), crypto_of(tmp_path)
    small_tables.replace(uri, rows(["a", "b"], [1.0, 2.0]), "TRUE", crypto=crypto)
    start = small_tables.literal(datetime(2026, 5, 1, 12, 1, tzinfo=UTC))
    predicate = (
        "window_date BETWEEN '2026-05-01' AND '2026-05-01'"
        f" AND key IN ('b') AND window_start IN ({start})"
    )
    changed = rows(["a", "b"], [0.0, 5.0]).slice(1)
    small_tables.replace(uri, changed, predicate, crypto=crypto)
    assert read(uri, crypto)["value"].to_pylist() == [1.0, 5.0]


def test_encrypted_mark_final_sets_only_matching_open_rows(tmp_path: Path) -> None:
    uri, crypto = table(tmp_path), crypto_of(tmp_path)
    small_tables.replace(uri, rows(["a", "b", "c"], [1.0, 2.0, 3.0]), "TRUE", crypto=crypto)
    before = small_tables.literal(datetime(2026, 5, 1, 12, 2, tzinfo=UTC))
    assert small_tables.mark_final(uri, f"window_end <= {before}", crypto=crypto) == 2
    assert small_tables.mark_final(uri, f"window_end <= {before}", crypto=crypto) == 0
    assert read(uri, crypto)["is_final"].to_pylist() == [True, True, False]
    assert small_tables.mark_final(uri, "TRUE", crypto=crypto) == 1
    assert_sealed(uri)


def test_encrypted_read_since_filters_on_the_column(tmp_path: Path) -> None:
    uri, crypto = table(tmp_path), crypto_of(tmp_path)
    small_tables.append_once(uri, rows(["a", "b", "c"], [1.0, 2.0, 3.0]), "app", 0, crypto=crypto)
    after = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    recent = small_tables.read_since(
        uri, "window_start", after, date_column="window_date", crypto=crypto
    )
    assert sorted(recent["key"].to_pylist()) == ["b", "c"]


def test_encrypted_compact_packs_each_partitions_small_files(tmp_path: Path) -> None:
    uri, crypto = table(tmp_path), crypto_of(tmp_path)
    for n in range(3):
        small_tables.append_once(uri, rows([f"k{n}"], [1.0]), "app", n, crypto=crypto)
    small_tables.append_once(uri, rows([MARKER], [2.0], hour=13), "app", 3, crypto=crypto)
    before = read(uri, crypto)
    sizes = [p.stat().st_size for p in data_files(uri)]
    result = encrypted.compact(uri, crypto, partition_filters=[("window_date", ">=", "2026-05-01")])
    assert {k: v for k, v in result.items() if not k.startswith("files")} == {
        "numFilesRemoved": 3,
        "numFilesAdded": 1,
        "partitionsOptimized": 1,
        "totalConsideredFiles": 4,
        "totalFilesSkipped": 1,
    }
    removed = json.loads(result["filesRemoved"])
    assert (removed["totalFiles"], removed["totalSize"]) == (3, sum(sizes) - max(sizes))
    assert json.loads(result["filesAdded"])["totalFiles"] == 1
    assert len(DeltaTable(uri).file_uris()) == 2  # hour 12 packed, hour 13 alone
    assert read(uri, crypto).equals(before)
    assert DeltaTable(uri).transaction_version("app") == 3
    assert_sealed(uri)
    again = encrypted.compact(uri, crypto, partition_filters=[("window_date", ">=", "2026-05-01")])
    assert (again["numFilesRemoved"], again["numFilesAdded"]) == (0, 0)


def test_encrypted_compact_tells_apart_files_named_alike_in_two_partitions(
    tmp_path: Path,
) -> None:
    """One write names its file in each partition alike: each partition packs its own."""
    uri, crypto = table(tmp_path), crypto_of(tmp_path)
    for n in range(2):
        both = pa.concat_tables([rows([f"a{n}"], [1.0]), rows([f"b{n}"], [2.0], hour=13)])
        small_tables.append_once(uri, both, "app", n, crypto=crypto)
    names = [p.name for p in data_files(uri)]
    assert len(set(names)) == 2 < len(names)  # two per name: one in each hour
    before = read(uri, crypto)
    result = encrypted.compact(uri, crypto)
    assert (result["numFilesRemoved"], result["numFilesAdded"]) == (4, 2)
    assert read(uri, crypto).equals(before)  # no row twice, none lost
    assert len(DeltaTable(uri).file_uris()) == 2


def test_encrypted_compact_bin_packs_up_to_the_target_size(tmp_path: Path) -> None:
    uri, crypto = table(tmp_path), crypto_of(tmp_path)
    for n in range(5):
        small_tables.append_once(uri, rows([f"k{n}"], [1.0]), "app", n, crypto=crypto)
    before = read(uri, crypto)
    largest = max(p.stat().st_size for p in data_files(uri))
    result = encrypted.compact(uri, crypto, target_size=2 * largest + 1)
    # Largest first, first fit: two bins of two files, the fifth file left alone.
    assert (result["numFilesRemoved"], result["numFilesAdded"]) == (4, 2)
    assert len(DeltaTable(uri).file_uris()) == 3
    assert read(uri, crypto).equals(before)


def test_plaintext_path_writes_plaintext_files(tmp_path: Path) -> None:
    """Without ``crypto`` nothing changes: delta-rs writes, any Parquet reader opens."""
    uri = table(tmp_path)
    small_tables.append_once(uri, rows([MARKER], [1.0]), "app", 0)
    assert MARKER.encode() in data_files(uri)[0].read_bytes()
    assert DeltaTable(uri).to_pyarrow_table()["key"].to_pylist() == [MARKER]


def test_lake_crypto_is_none_for_a_plaintext_lake(tmp_path: Path) -> None:
    assert LakeCrypto.from_settings(settings_for(tmp_path)) is None
    assert "key" not in repr(crypto_of(tmp_path)).replace("LakeCrypto", "")


def test_encrypted_commits_to_an_unpartitioned_table(tmp_path: Path) -> None:
    uri, crypto = str(tmp_path / "flat"), crypto_of(tmp_path)
    write_deltalake(uri, SCHEMA.empty_table())
    small_tables.append_once(uri, rows([MARKER, "b"], [1.0, 2.0]), "app", 0, crypto=crypto)
    small_tables.replace(uri, rows(["b"], [5.0]).slice(0), "key = 'b'", crypto=crypto)
    result = read(uri, crypto)
    assert result["key"].to_pylist() == ["b", MARKER]
    assert result["value"].to_pylist() == [5.0, 1.0]
    assert [p.parent for p in data_files(uri)] == [Path(uri)] * len(data_files(uri))
    assert_sealed(uri)


def test_encrypted_replace_reads_every_file_when_the_log_cannot_prune(tmp_path: Path) -> None:
    """A predicate delta-rs cannot prune by (LIKE) is still evaluated, over every file."""
    uri, crypto = table(tmp_path), crypto_of(tmp_path)
    small_tables.replace(uri, rows(["ab", "b"], [1.0, 2.0]), "TRUE", crypto=crypto)
    small_tables.replace(uri, rows(["ab"], [9.0]), "key LIKE 'a%'", crypto=crypto)
    assert read(uri, crypto)["value"].to_pylist() == [9.0, 2.0]


def test_newest_before_reads_an_encrypted_table_without_statistics(tmp_path: Path) -> None:
    uri, crypto = table(tmp_path), crypto_of(tmp_path)
    for batch, hour in ((0, 12), (1, 14), (2, 13)):
        data = rows([MARKER], [1.0], hour=hour)
        data = data.set_column(5, "batch_id", pa.array([batch], pa.int64()))
        small_tables.append_once(uri, data, "app", batch, crypto=crypto)
    log = pa.table(DeltaTable(uri).get_add_actions(flatten=True))
    assert log["max.batch_id"].null_count == log.num_rows  # every file below the batch is read
    newest = small_tables.newest_before
    got = newest(uri, "window_start", batch_column="batch_id", before=3, crypto=crypto)
    assert got == datetime(2026, 5, 1, 14, tzinfo=UTC)
    got = newest(uri, "window_start", batch_column="batch_id", before=1, crypto=crypto)
    assert got == datetime(2026, 5, 1, 12, tzinfo=UTC)

"""``lake optimize`` in an encrypted lake: gold and panes compacted without Spark, still sealed."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from pulsecast.config import Settings
from pulsecast.lake import small_tables
from pulsecast.lake.errors import LakeError, MaintenanceConflictError
from pulsecast.lake.maintenance import SCORES_FILE_BYTES, maintained_tables, optimize
from pulsecast.lake.tables import LakeTables
from pulsecast.security.lake_crypto import LakeCrypto
from pulsecast.testing import settings_for

MARKER = "pulsecast-unit-secret-4711"
DAYS = (date(2026, 5, 1), date(2026, 5, 2))
HOURS = (10, 11)
BATCHES = 3
KEYS = [MARKER, "m-0001", "m-0002"]
GOLD = pa.schema(
    [
        ("key", pa.string()),
        ("window_start", pa.timestamp("us", "UTC")),
        ("value", pa.float64()),
        ("batch_id", pa.int64()),
        ("window_date", pa.date32()),
        ("window_hour", pa.int32()),
    ]
)
PANES = pa.schema(
    [
        ("key", pa.string()),
        ("pane_start", pa.timestamp("us", "UTC")),
        ("count", pa.int64()),
        ("pane_date", pa.date32()),
    ]
)
SCORES = pa.schema(
    [
        ("key", pa.string()),
        ("metric", pa.string()),
        ("score", pa.float64()),
        ("window_date", pa.date32()),
    ]
)
CONFLICT = (
    "optimize of gold_telemetry_1m conflicted with a concurrent write (CommitFailedError); "
    "rerun it, or limit it to days the streaming job no longer writes (--until)"
)


def gold_batch(day: date, batch: int, *, hours: tuple[int, ...] = HOURS) -> pa.Table:
    """Every key in every hour of ``day``: one file per hour partition once appended."""
    data = [
        (key, datetime(day.year, day.month, day.day, hour, batch, tzinfo=UTC), hour)
        for hour in hours
        for key in KEYS
    ]
    n = len(data)
    return pa.table(
        [
            [k for k, _, _ in data],
            [w for _, w, _ in data],
            [float(i + batch) for i in range(n)],
            [batch] * n,
            [day] * n,
            [h for _, _, h in data],
        ],
        schema=GOLD,
    )


def pane_batch(day: date, batch: int) -> pa.Table:
    start = datetime(day.year, day.month, day.day, 10, batch, tzinfo=UTC)
    return pa.table([KEYS, [start] * 3, [batch + 1] * 3, [day] * 3], schema=PANES)


def score_batch(day: date, batch: int) -> pa.Table:
    return pa.table([KEYS, ["cpu_util"] * 3, [0.1 * batch] * 3, [day] * 3], schema=SCORES)


class Lake:
    """An encrypted lake whose gold and panes the job's commits left in small files."""

    def __init__(self, tmp_path: Path) -> None:
        self.settings = settings_for(
            tmp_path / "state",
            lake={"uri": (tmp_path / "lake").as_uri()},
            security={"enabled": True},
        )
        crypto = LakeCrypto.from_settings(self.settings)
        assert crypto is not None
        self.crypto = crypto
        tables = LakeTables.from_settings(self.settings)
        self.gold = tables.gold("telemetry", "1m")
        self.panes = tables.panes("telemetry")
        self.scores = tables.scores("telemetry")
        write_deltalake(self.gold, GOLD.empty_table(), partition_by=["window_date", "window_hour"])
        write_deltalake(self.panes, PANES.empty_table(), partition_by=["pane_date"])
        write_deltalake(self.scores, SCORES.empty_table(), partition_by=["window_date"])
        version = 0
        for day in DAYS:
            for batch in range(BATCHES):
                self.append(self.gold, gold_batch(day, batch), version)
                self.append(self.panes, pane_batch(day, batch), version)
                version += 1
        for batch in range(2):
            self.append(self.scores, score_batch(DAYS[0], batch), batch)

    def append(self, uri: str, rows: pa.Table, version: int) -> None:
        assert small_tables.append_once(uri, rows, "job", version, crypto=self.crypto)

    def rows(self, uri: str) -> list[dict[str, object]]:
        """The table's rows, decrypted, in a stable order."""
        return ordered(self.crypto.readable(DeltaTable(uri).to_pyarrow_dataset()).to_table())


def ordered(table: pa.Table) -> list[dict[str, object]]:
    return sorted(table.to_pylist(), key=lambda r: [(k, str(v)) for k, v in r.items()])


def folder(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def live(uri: str, *, where: str = "") -> set[str]:
    """The table's files (paths) whose path contains ``where``."""
    return {u.removeprefix("file://") for u in DeltaTable(uri).file_uris() if where in u}


def size(paths: set[str]) -> int:
    return sum(Path(p).stat().st_size for p in paths)


def assert_sealed(uri: str) -> None:
    """No file under the table holds an entity key in plaintext; data files are encrypted."""
    files = [p for p in folder(uri).rglob("*") if p.is_file()]
    data = [p for p in files if p.suffix == ".parquet" and "_delta_log" not in p.parts]
    assert data
    for path in files:
        assert MARKER.encode() not in path.read_bytes(), path
    for path in data:
        assert path.read_bytes()[-4:] == b"PARE", path  # an encrypted footer


def last_commit(uri: str) -> list[dict[str, dict[str, object]]]:
    newest = max((folder(uri) / "_delta_log").glob("*.json"))
    return [json.loads(line) for line in newest.read_text().splitlines()]


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path)


def test_optimize_encrypted_packs_gold_and_panes_and_keeps_them_sealed(lake: Lake) -> None:
    before = {uri: lake.rows(uri) for uri in (lake.gold, lake.panes, lake.scores)}
    old = live(lake.gold)
    lines: list[str] = []
    results = optimize(
        None, lake.settings, streams=["telemetry"], zones=["gold", "panes"], progress=lines.append
    )
    done = {r.table: r for r in results}
    # The 5m gold, the forecast errors and the batch statistics do not exist: skipped.
    assert sorted(done) == ["gold_telemetry_1m", "gold_telemetry_scores", "panes_telemetry"]
    gold, panes, scores = (
        done["gold_telemetry_1m"],
        done["panes_telemetry"],
        done["gold_telemetry_scores"],
    )
    # 2 days x 2 hours x 3 batches -> one file per partition.
    assert (gold.files_before, gold.files_after, gold.files_removed, gold.files_added) == (
        12, 4, 12, 4
    )  # fmt: skip
    assert gold.partitions_optimized == 4
    assert (gold.bytes_removed, gold.bytes_added) == (size(old), size(live(lake.gold)))
    assert (panes.files_before, panes.files_after, panes.partitions_optimized) == (6, 2, 2)
    assert (scores.files_before, scores.files_after) == (2, 1)
    assert [r.zorder for r in results] == [(), (), ()]  # no statistics to skip by
    assert lines[:2] == [
        "optimizing gold_telemetry_1m (compaction, encrypted)...",
        "optimizing gold_telemetry_scores (compaction, encrypted, "
        "no Z-order by key, metric: no statistics in an encrypted lake)...",
    ]
    for uri, rows in before.items():
        assert lake.rows(uri) == rows
        assert_sealed(uri)
    # One rewrite without data change; the new files carry row counts only.
    actions = last_commit(lake.gold)
    removes = [a["remove"] for a in actions if "remove" in a]
    adds = [a["add"] for a in actions if "add" in a]
    assert len(removes) == 12 and len(adds) == 4
    assert {a["dataChange"] for a in [*removes, *adds]} == {False}
    assert [json.loads(str(a["stats"])) for a in adds] == [{"numRecords": 3 * BATCHES}] * 4
    # The replaced files stay until a vacuum; the job's application transaction survives.
    assert len(list(folder(lake.gold).rglob("*.parquet"))) == 16
    assert DeltaTable(lake.gold).transaction_version("job") == len(DAYS) * BATCHES - 1
    # Nothing left to pack: no commit.
    version = DeltaTable(lake.gold).version()
    again = optimize(None, lake.settings, streams=["telemetry"], zones=["gold"])[0]
    assert again.table == "gold_telemetry_1m"
    assert (again.files_before, again.files_after, again.files_removed) == (4, 4, 0)
    assert DeltaTable(lake.gold).version() == version


def test_optimize_encrypted_since_until_rewrites_only_those_days(lake: Lake) -> None:
    first, second = (f"window_date={d.isoformat()}" for d in DAYS)
    kept = live(lake.gold, where=first)
    lines: list[str] = []
    results = optimize(
        None,
        lake.settings,
        streams=["telemetry"],
        zones=["gold"],
        since=DAYS[1],
        until=DAYS[1],
        progress=lines.append,
    )
    gold, scores = results  # the scores: none of that day
    assert (scores.table, scores.files_removed) == ("gold_telemetry_scores", 0)
    assert (gold.files_removed, gold.files_added, gold.files_after) == (6, 2, 8)
    assert gold.partitions_optimized == 2
    assert live(lake.gold, where=first) == kept
    assert len(live(lake.gold, where=second)) == 2
    assert lines[0] == (
        "optimizing gold_telemetry_1m (compaction, encrypted, window_date >= DATE'2026-05-02' "
        "AND window_date <= DATE'2026-05-02')..."
    )
    (earlier,) = [
        r
        for r in optimize(None, lake.settings, zones=["gold"], until=DAYS[0])
        if r.table == "gold_telemetry_1m"
    ]
    assert (earlier.files_removed, earlier.files_after) == (6, 4)
    assert live(lake.gold, where=first) != kept


def test_optimize_encrypted_reports_a_concurrent_rewrite_of_its_files(lake: Lake) -> None:
    """The job replaced a window in files the optimize was packing: the optimize loses."""
    day = DAYS[0]
    window = gold_batch(day, 9, hours=(10,)).slice(0, 1)  # the marker's window, recomputed
    assert window["key"].to_pylist() == [MARKER]
    versions: list[int] = []

    def job_replaces_a_window(line: str) -> None:
        if line.startswith("optimizing gold_telemetry_1m"):
            predicate = f"window_date = '{day}' AND window_hour = 10 AND key = '{MARKER}'"
            small_tables.replace(lake.gold, window, predicate, crypto=lake.crypto)
            versions.append(DeltaTable(lake.gold).version())

    with pytest.raises(MaintenanceConflictError) as info:
        optimize(None, lake.settings, zones=["gold"], until=day, progress=job_replaces_a_window)
    assert str(info.value) == CONFLICT
    assert info.value.table == "gold_telemetry_1m"
    # The job's commit stands; nothing of the optimize was committed.
    assert DeltaTable(lake.gold).version() == versions[0]
    assert len(live(lake.gold)) == 12 - BATCHES + 1  # the replace rewrote the hour's 3 files
    rows = [r for r in lake.rows(lake.gold) if r["key"] == MARKER and r["window_date"] == day]
    assert [(r["window_hour"], r["batch_id"]) for r in rows] == [(10, 9)] + [
        (11, b) for b in range(BATCHES)
    ]
    assert_sealed(lake.gold)


def test_optimize_encrypted_leaves_a_concurrent_append_alone(lake: Lake) -> None:
    """An append (the job's next batch) between plan and commit is kept, not packed."""
    late = gold_batch(DAYS[0], 7, hours=(10,))

    def job_appends(line: str) -> None:
        if line.startswith("optimizing gold_telemetry_1m"):
            lake.append(lake.gold, late, 100)

    before = lake.rows(lake.gold)
    (gold,) = [
        r
        for r in optimize(None, lake.settings, zones=["gold"], progress=job_appends)
        if r.table == "gold_telemetry_1m"
    ]
    assert (gold.files_before, gold.files_removed, gold.files_after) == (12, 12, 5)
    assert lake.rows(lake.gold) == ordered(
        pa.concat_tables([pa.Table.from_pylist(before, GOLD), late])
    )
    assert_sealed(lake.gold)


def test_optimize_encrypted_encrypts_files_written_before_encryption(lake: Lake) -> None:
    """A plaintext file (encryption switched on later), packed with encrypted ones, is sealed."""
    plaintext = gold_batch(DAYS[0], 5, hours=(10,))
    assert small_tables.append_once(lake.gold, plaintext, "before", 0)  # no crypto
    assert any(MARKER.encode() in Path(p).read_bytes() for p in live(lake.gold))
    before = lake.rows(lake.gold)
    optimize(None, lake.settings, zones=["gold"], until=DAYS[0])
    assert lake.rows(lake.gold) == before
    for path in live(lake.gold):
        raw = Path(path).read_bytes()
        assert MARKER.encode() not in raw
        assert raw[-4:] == b"PARE"


def test_optimize_without_spark_only_for_an_encrypted_lakes_gold_and_panes(
    lake: Lake, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"^optimizing silver_telemetry needs a SparkSession$"):
        optimize(None, lake.settings, streams=["telemetry"], zones=["silver", "gold"])
    plain = settings_for(tmp_path / "plain", lake={"uri": (tmp_path / "plain").as_uri()})
    with pytest.raises(ValueError, match=r"^optimizing panes_series, batches_series needs"):
        optimize(None, plain, streams=["series"], zones=["panes"])


def test_maintained_tables_max_file_bytes(settings: Settings) -> None:
    tables = {t.name: t for t in maintained_tables(settings, streams=["telemetry"])}
    assert tables["gold_telemetry_1m"].max_file_bytes(settings) == 1 << 30  # Delta's default
    assert tables["gold_telemetry_scores"].max_file_bytes(settings) == SCORES_FILE_BYTES
    key = "spark.databricks.delta.optimize.maxFileSize"

    def conf(value: str) -> Settings:
        spark = settings.spark.model_copy(update={"conf": {key: value}})
        return settings.model_copy(update={"spark": spark})

    assert tables["gold_telemetry_scores"].max_file_bytes(conf("4096")) == 4096
    with pytest.raises(LakeError) as info:
        tables["panes_telemetry"].max_file_bytes(conf("1g"))
    assert str(info.value) == f"{key} must be a number of bytes, got '1g'"


def test_optimize_encrypted_bin_packs_to_the_configured_size(lake: Lake) -> None:
    """Spark's maxFileSize setting limits the encrypted files too: more, smaller files."""
    largest = max(size({p}) for p in live(lake.panes))
    key = "spark.databricks.delta.optimize.maxFileSize"
    spark = lake.settings.spark.model_copy(update={"conf": {key: str(2 * largest + 1)}})
    small = lake.settings.model_copy(update={"spark": spark})
    before = lake.rows(lake.panes)
    (panes,) = optimize(None, small, streams=["telemetry"], zones=["panes"])  # no batches yet
    # Three files a day, two fit in a file: each day keeps one packed file and one alone.
    assert (panes.files_removed, panes.files_added, panes.files_after) == (4, 2, 4)
    assert lake.rows(lake.panes) == before

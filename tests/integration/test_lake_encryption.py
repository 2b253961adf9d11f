"""The lake encrypted at rest: real Spark writes, real files, read by Spark and by DuckDB.

Uses the suite's SparkSession: each test switches encryption on for its own
lake (through ``spark_session`` with encryption-enabled Settings, the way the
platform does) and the fixtures switch it off again, so no other test writes
encrypted files.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from pulsecast.analytics.sql import QueryError, lake_tables, run_sql
from pulsecast.bus import EventProducer
from pulsecast.config import Settings
from pulsecast.lake.tables import LakeTables
from pulsecast.security.keys import keystore_for
from pulsecast.security.lake_crypto import (
    LAKE_KEY,
    LakeCrypto,
    disable_on_session,
    enable_on_session,
    encryption_config,
)
from pulsecast.stream.job import StreamJob
from pulsecast.stream.session import spark_session
from pulsecast.testing import telemetry_event
from tests.integration.conftest import StreamFactory, job_settings, small_spark

NUMBER = 918273.645
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@dataclass
class Lake:
    settings: Settings
    name: str  # SQL name of the table
    path: Path
    marker: str
    rows: list[tuple[int, str, float, int]]

    def data_files(self) -> list[Path]:
        return sorted(p for p in self.path.rglob("*.parquet") if "_delta_log" not in p.parts)

    def fingerprints(self) -> dict[Path, tuple[int, str]]:
        return {
            p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in self.data_files()
        }


def lake_settings(base: Settings, root: Path, *, encrypt: bool) -> Settings:
    settings = small_spark(base)
    return settings.model_copy(
        update={
            "lake": settings.lake.model_copy(update={"uri": (root / "lake").as_uri()}),
            "security": settings.security.model_copy(
                update={"dir": root / "security", "encrypt_lake": encrypt}
            ),
        }
    )


def needles(marker: str) -> list[bytes]:
    """Plaintext forms of the test's values: text, its first 24 characters, number as text
    and as a double (Delta's statistics keep a string's first 32 characters only)."""
    return [marker.encode(), marker[:24].encode(), repr(NUMBER).encode(), struct.pack("<d", NUMBER)]


def leaks(folder: Path, marker: str) -> dict[str, list[str]]:
    """Files under ``folder`` holding a needle, by needle."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for needle in needles(marker):
            if needle in data:
                found.setdefault(repr(needle), []).append(str(path.relative_to(folder)))
    return found


def write_lake(spark, base: Settings, root: Path, *, encrypt: bool) -> Lake:  # type: ignore[no-untyped-def]
    settings = lake_settings(base, root, encrypt=encrypt)
    assert spark_session(settings) is spark  # the suite's session, encryption switched by it
    name, uri = next((n, u) for n, u in lake_tables(settings).items() if n.startswith("bronze_"))
    marker = f"pulsecast-secret-{uuid.uuid4().hex}"
    rows = [(i, f"{marker}-{i}", NUMBER + i, 7) for i in range(40)]
    frame = spark.createDataFrame(rows, "id long, name string, value double, batch_id long")
    path = Path(uri.removeprefix("file://"))
    frame.repartition(2).write.format("delta").save(str(path))
    # A checkpoint, so that the log's Parquet files are on disk too.
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.checkpointInterval' = '1')")
    return Lake(settings, name, path, marker, rows)


@pytest.fixture(scope="module")
def lake(
    spark, stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lake]:  # type: ignore[no-untyped-def]
    try:
        yield write_lake(spark, stack_settings, tmp_path_factory.mktemp("enc"), encrypt=True)
    finally:
        disable_on_session(spark)


@pytest.fixture
def plain_session(spark, lake: Lake) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The suite's session without the lake key for one test."""
    disable_on_session(spark)
    try:
        yield
    finally:
        enable_on_session(spark, lake.settings)


def test_lake_encryption_control_plain_files_show_the_values(
    spark,  # type: ignore[no-untyped-def]
    lake: Lake,
    stack_settings: Settings,
    tmp_path: Path,
) -> None:
    disable_on_session(spark)
    try:
        plain = write_lake(spark, stack_settings, tmp_path, encrypt=False)
    finally:
        enable_on_session(spark, lake.settings)
    found = leaks(plain.path, plain.marker)
    # Without encryption the values are in the data files and the log's statistics.
    assert set(found) == {repr(n) for n in needles(plain.marker)}
    for needle in (plain.marker[:24].encode(), repr(NUMBER).encode()):
        assert any("_delta_log" in f for f in found[repr(needle)]), needle
    assert all(p.read_bytes()[:4] == b"PAR1" for p in plain.data_files())


def test_lake_encryption_no_plaintext_value_on_disk(lake: Lake) -> None:
    assert len(lake.data_files()) >= 2
    assert leaks(lake.path, lake.marker) == {}
    for path in lake.data_files():
        data = path.read_bytes()
        assert data[:4] == b"PARE" and data[-4:] == b"PARE", path  # encrypted footer
    checkpoints = list((lake.path / "_delta_log").glob("*.checkpoint.parquet"))
    assert checkpoints and all(p.read_bytes()[:4] == b"PAR1" for p in checkpoints)


def test_lake_encryption_spark_encrypts_the_job_zones_too(
    spark,  # type: ignore[no-untyped-def]
    lake: Lake,
) -> None:
    # The history backfill writes gold and pane state with Spark: encrypted as the job's
    # own commits are, and read back (decrypted) by the job's readers.
    uri = LakeTables.from_settings(lake.settings).panes("enc")
    spark.createDataFrame([(1, lake.marker)], "id long, name string").write.format("delta").save(
        uri
    )
    files = list(Path(uri.removeprefix("file://")).rglob("*.parquet"))
    assert files and all(p.read_bytes()[:4] == b"PARE" for p in files)
    crypto = LakeCrypto.from_settings(lake.settings)
    assert crypto is not None
    assert crypto.readable(DeltaTable(uri).to_pyarrow_dataset()).to_table().num_rows == 1


def test_lake_encryption_statistics_kept_for_batch_id_only(lake: Lake) -> None:
    actions = DeltaTable(str(lake.path)).get_add_actions(flatten=True)
    columns = set(actions.schema.names)
    assert {"min.batch_id", "max.batch_id"} <= columns
    assert not {c for c in columns if c.startswith(("min.", "max.")) and "batch_id" not in c}


def test_lake_encryption_files_do_not_open_without_the_key(lake: Lake) -> None:
    for path in lake.data_files():
        with pytest.raises(OSError, match="Could not read encrypted metadata"):
            pq.read_table(path)


def test_lake_encryption_spark_without_the_key_fails(
    spark,  # type: ignore[no-untyped-def]
    lake: Lake,
    plain_session: None,
) -> None:
    with pytest.raises(Exception, match="encrypted footer"):
        spark.read.format("delta").load(str(lake.path)).collect()


def test_lake_encryption_spark_reads_the_rows(spark, lake: Lake) -> None:  # type: ignore[no-untyped-def]
    got = spark.read.format("delta").load(str(lake.path)).orderBy("id").collect()
    assert [tuple(r) for r in got] == lake.rows


def test_lake_encryption_duckdb_reads_the_rows(lake: Lake) -> None:
    result = run_sql(lake.settings, f"SELECT * FROM {lake.name} ORDER BY id")
    assert result.columns == ["id", "name", "value", "batch_id"]
    assert result.rows == lake.rows


def test_lake_encryption_explain_reads_and_counts_files(lake: Lake) -> None:
    from pulsecast.analytics.explain import explain

    got = explain(lake.settings, f"SELECT * FROM {lake.name} WHERE id >= 30")
    assert got.rows == sum(1 for row in lake.rows if row[0] >= 30)
    # No statistics of ``id`` in the log: every file is opened.
    assert [s.files_read for s in got.scans] == [len(lake.data_files())]


def test_lake_encryption_duckdb_without_the_key_fails(lake: Lake) -> None:
    settings = lake.settings.model_copy(
        update={"security": lake.settings.security.model_copy(update={"encrypt_lake": False})}
    )
    with pytest.raises(QueryError, match="Could not read encrypted metadata"):
        run_sql(settings, f"SELECT * FROM {lake.name}")


def test_lake_encryption_pyarrow_written_file_opens_in_spark(
    spark,  # type: ignore[no-untyped-def]
    lake: Lake,
    tmp_path: Path,
) -> None:
    """pulsecast's Python KMS client wraps keys as parquet-mr's does: Spark unwraps them."""
    import pyarrow as pa

    factory, kms, config = encryption_config(lake.settings)
    table = pa.table({"id": [1, 2], "name": [lake.marker, "b"]})
    path = tmp_path / "from-pyarrow.parquet"
    pq.write_table(
        table, path, encryption_properties=factory.file_encryption_properties(kms, config)
    )
    assert lake.marker.encode() not in path.read_bytes()
    got = spark.read.parquet(str(path)).orderBy("id").collect()
    assert [tuple(r) for r in got] == [(1, lake.marker), (2, "b")]


def test_lake_encryption_survives_master_key_rotation(
    spark,  # type: ignore[no-untyped-def]
    lake: Lake,
) -> None:
    keystore = keystore_for(lake.settings)
    before = lake.fingerprints()
    stored = (keystore.path.read_bytes(), keystore.master_file.read_bytes())
    old_master = keystore.master_id
    assert keystore.rotate_master() >= 1
    # The lake key is now wrapped by another master key; no data file changed.
    assert keystore_for(lake.settings).master_id != old_master
    assert (keystore.path.read_bytes(), keystore.master_file.read_bytes()) != stored
    assert LAKE_KEY in keystore.names()
    assert lake.fingerprints() == before
    # Fresh reads unwrap the lake key with the new master key.
    result = run_sql(lake.settings, f"SELECT * FROM {lake.name} ORDER BY id")
    assert result.rows == lake.rows
    disable_on_session(spark)
    enable_on_session(spark, lake.settings)
    got = spark.read.format("delta").load(str(lake.path)).orderBy("id").collect()
    assert [tuple(r) for r in got] == lake.rows
    assert leaks(lake.path, lake.marker) == {}


def test_lake_encryption_stream_job_encrypts_every_table(
    spark,  # type: ignore[no-untyped-def]
    lake: Lake,
    stream_factory: StreamFactory,
    tmp_path: Path,
) -> None:
    """The job's own commits (gold, panes, scores, batch statistics) are encrypted, and read."""
    base, stream = stream_factory()
    settings = job_settings(small_spark(base), tmp_path)
    detector = settings.ml.detector.model_copy(
        update={"trigger_interval_s": 1.0, "delay_s": 0, "warmup_points": 0, "min_slot_obs": 0}
    )
    settings = settings.model_copy(
        update={
            "security": lake.settings.security,  # the lake fixture's keystore, key on the session
            "ml": settings.ml.model_copy(update={"detector": detector}),
        }
    )
    enable_on_session(spark, settings)
    marker = f"pulsecast-secret-{uuid.uuid4().hex}"
    keys = [f"{marker}-m{m}" for m in range(3)]
    events = [
        telemetry_event(key, when=T0 + timedelta(seconds=4 * i), event_id=f"{key}-{i}")
        for i in range(45)
        for key in keys
    ]
    with EventProducer(settings) as producer:
        assert producer.send(stream, events).accepted == len(events)
    stats = StreamJob(spark, settings, streams=[stream]).run(until_idle=True, max_seconds=240)
    assert stats[stream].valid == len(events)

    tables = LakeTables.from_settings(settings)
    uris = {
        "gold_1m": tables.gold(stream, "1m"),
        "panes": tables.panes(stream),
        "scores": tables.scores(stream),
        "batches": tables.batches(stream),
    }
    root = Path(settings.lake_uri.removeprefix("file://"))
    for name, uri in uris.items():
        files = [
            p
            for p in Path(uri.removeprefix("file://")).rglob("*.parquet")
            if "_delta_log" not in p.parts
        ]
        assert files, name
        for path in files:
            data = path.read_bytes()
            assert data[:4] == b"PARE" and data[-4:] == b"PARE", path
        with pytest.raises(OSError, match="Could not read encrypted metadata"):
            pq.read_table(files[0])
    # No key in plaintext anywhere in the lake: data files, logs, checkpoints.
    found = {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and marker[:24].encode() in p.read_bytes()
    }
    assert found == set()

    # DuckDB (the analyses and the dashboard's engine) and Spark read them.
    gold = run_sql(
        settings,
        f"SELECT key, count(*), sum(count) FROM gold_{stream}_1m "
        "WHERE metric = 'temperature_c' GROUP BY key ORDER BY key",
    )
    assert gold.rows == [(key, 3, 45) for key in keys]  # 12:00, 12:01 and 12:02
    assert run_sql(settings, f"SELECT count(*) FROM panes_{stream}").rows[0][0] > 0
    scored = run_sql(settings, f"SELECT count(DISTINCT key) FROM gold_{stream}_scores")
    assert scored.rows == [(len(keys),)]
    batches = run_sql(settings, f"SELECT sum(n) FROM batches_{stream} WHERE measure = 'accepted'")
    assert batches.rows == [(len(events),)]
    frame = spark.read.format("delta").load(uris["gold_1m"])
    assert frame.where("metric = 'temperature_c'").count() == 3 * len(keys)
    assert spark.read.format("delta").load(uris["scores"]).count() > 0

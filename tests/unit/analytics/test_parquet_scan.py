"""DuckDB's own Parquet reader over Delta tables: the rows of the Arrow datasets, or refused."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from pulsecast.analytics import DuckDBEngine, analyses, run_analysis
from pulsecast.analytics.parquet_scan import parquet_view_sql
from pulsecast.analytics.sql import lake_tables
from pulsecast.config import Settings
from pulsecast.testing import settings_for

from .conftest import SINCE, at

NOW = at(5, 12)


def _rows(engine: DuckDBEngine, name: str) -> list[dict[str, object]]:
    params = {"since": SINCE} if "since" in {p.name for p in analyses()[name].params} else {}
    result = run_analysis(engine.settings, name, params, engine=engine, now=NOW)
    return result.table.to_pylist()


def test_every_analysis_gives_the_same_rows_natively_and_through_arrow(lake: Settings) -> None:
    native, arrow = DuckDBEngine(lake), DuckDBEngine(lake, parquet_reader=False)
    try:
        for name in analyses():
            assert _rows(native, name) == _rows(arrow, name), name
        # Every table of the fixture lake was read by DuckDB's reader, none by the other.
        assert native._native == set(native._tables) == set(lake_tables(lake)) & set(native._tables)
        assert len(native._native) >= 4
        assert arrow._native == set()
    finally:
        native.close()
        arrow.close()


def _table(root: Path, rows: pa.Table, **kwargs: object) -> DeltaTable:
    write_deltalake(str(root), rows, partition_by=["day"], **kwargs)  # type: ignore[arg-type]
    return DeltaTable(str(root))


def _rows_table(values: list[int], *, day: date = date(2026, 5, 4)) -> pa.Table:
    return pa.table(
        {
            "key": [f"k-{v}" for v in values],
            "t": pa.array(
                [datetime(2026, 5, 4, v, tzinfo=UTC) for v in values], pa.timestamp("us", tz="UTC")
            ),
            "value": pa.array(values, pa.int32()),
            "day": pa.array([day] * len(values), pa.date32()),
        }
    )


def _view(con: duckdb.DuckDBPyConnection, name: str, table: DeltaTable, settings: Settings) -> str:
    sql = parquet_view_sql(con, name, table, settings)
    assert sql is not None
    con.execute(sql)
    return name


def test_partition_values_and_types_come_from_the_delta_schema(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    table = _table(tmp_path / "t", _rows_table([1, 2]))
    table = _table(tmp_path / "t", _rows_table([3], day=date(2026, 5, 5)), mode="append")
    con = duckdb.connect()
    view = _view(con, "gold_x_1m", table, settings)
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {view})").fetchall())
    assert types == {
        "key": "VARCHAR",
        "t": "TIMESTAMP WITH TIME ZONE",
        "value": "INTEGER",
        "day": "DATE",
    }
    rows = con.execute(f"SELECT key, value, day FROM {view} ORDER BY value").fetchall()
    assert rows == [
        ("k-1", 1, date(2026, 5, 4)),
        ("k-2", 2, date(2026, 5, 4)),
        ("k-3", 3, date(2026, 5, 5)),
    ]
    # A partition filter prunes by path: the other day's files are not opened.
    plan = con.execute(f"EXPLAIN ANALYZE SELECT key FROM {view} WHERE day = '2026-05-05'")
    assert "Scanning Files: 1/2" in plan.fetchall()[0][1]


def test_a_column_added_later_falls_back_to_arrow_with_the_right_rows(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    root = tmp_path / "lake" / "gold" / "telemetry_scores"
    _table(root, _rows_table([1]))
    wider = _rows_table([2]).append_column("extra", pa.array([7.5]))
    write_deltalake(str(root), wider, partition_by=["day"], mode="append", schema_mode="merge")
    engine = DuckDBEngine(settings_for(tmp_path, lake={"uri": (tmp_path / "lake").as_uri()}))
    try:
        assert "gold_telemetry_scores" in lake_tables(engine.settings)
        rows = engine.query("SELECT value, extra FROM gold_telemetry_scores ORDER BY value").rows
        assert rows == [(1, None), (2, 7.5)]
        assert "gold_telemetry_scores" not in engine._native
        # Until the table's next version: then its files are tried natively again.
        write_deltalake(str(root), wider, partition_by=["day"], mode="overwrite")
        assert engine.query("SELECT value, extra FROM gold_telemetry_scores").rows == [(2, 7.5)]
        assert "gold_telemetry_scores" in engine._native
    finally:
        engine.close()
    assert settings.lake.uri != engine.settings.lake.uri


def test_refused_null_partition_values_and_empty_tables(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    con = duckdb.connect()
    rows = _rows_table([1]).set_column(3, "day", pa.array([None], pa.date32()))
    assert parquet_view_sql(con, "gold_x_1m", _table(tmp_path / "nulls", rows), settings) is None
    empty = _table(tmp_path / "empty", _rows_table([]))
    assert parquet_view_sql(con, "gold_x_1m", empty, settings) is None


def test_refused_for_every_table_of_an_encrypted_lake(tmp_path: Path) -> None:
    table = _table(tmp_path / "t", _rows_table([1]))
    con = duckdb.connect()
    plain = settings_for(tmp_path)
    encrypted = settings_for(tmp_path, security={"encrypt_lake": True})
    assert parquet_view_sql(con, "silver_telemetry", table, plain) is not None
    assert parquet_view_sql(con, "silver_telemetry", table, encrypted) is None
    assert parquet_view_sql(con, "bronze_telemetry", table, encrypted) is None
    # The tables committed from the job's driver are encrypted too.
    for name in ("gold_telemetry_1m", "gold_telemetry_scores", "panes_telemetry"):
        assert parquet_view_sql(con, name, table, encrypted) is None
    assert parquet_view_sql(con, "batches_telemetry", table, encrypted) is None
    assert parquet_view_sql(con, "gold_telemetry_1m", table, plain) is not None

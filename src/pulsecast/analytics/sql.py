"""SQL over the lake: DuckDB embedded (no JVM start) or Spark SQL, same table names.

Every Delta table of every configured stream is visible under its SQL name
(``bronze_<stream>``, ``silver_<stream>``, ``gold_<stream>_<window>``, see
:mod:`pulsecast.lake.tables`); tables not created yet are simply absent. DuckDB
reads Delta through the ``deltalake`` package (delta-rs) as Arrow datasets, so
filters are pushed down to the Parquet files; it reads ``hdfs://`` lakes with
its own HDFS client (no JVM).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from pulsecast.config import Settings
from pulsecast.errors import PulsecastError
from pulsecast.lake.tables import LakeTables

__all__ = ["QueryError", "QueryResult", "lake_tables", "run_sql"]

log = logging.getLogger(__name__)

Engine = Literal["duckdb", "spark"]


class QueryError(PulsecastError):
    """A query failed (syntax, unknown table or column...)."""


@dataclass
class QueryResult:
    """Columns and rows of a query."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def lake_tables(settings: Settings) -> dict[str, str]:
    """SQL name → URI of every lake table of every configured stream."""
    lake = LakeTables.from_settings(settings)
    windows = [w.name for w in settings.stream.windows]
    names: dict[str, str] = {}
    for stream in settings.streams:
        names.update(lake.names(stream, windows))
    return names


def _one_line(exc: Exception) -> str:
    """delta-rs's nested, colored error report as one plain line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    parts = [p.strip().lstrip("↳").strip() for p in text.splitlines()]
    return ": ".join(p for p in parts if p)


def _duckdb(settings: Settings, query: str) -> QueryResult:
    import duckdb
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    con = duckdb.connect()
    for name, uri in lake_tables(settings).items():
        try:
            dataset = DeltaTable(uri).to_pyarrow_dataset()
        except TableNotFoundError:
            continue
        except OSError as exc:  # the lake's storage does not answer (HDFS down...)
            msg = f"cannot read {name} at {uri}: {_one_line(exc)}"
            raise QueryError(msg) from exc
        con.register(name, dataset)
    try:
        cursor = con.execute(query)
        columns = [d[0] for d in cursor.description or []]
        return QueryResult(columns, cursor.fetchall())
    except duckdb.Error as exc:
        raise QueryError(str(exc).splitlines()[0]) from exc
    finally:
        con.close()


def _spark(settings: Settings, query: str) -> QueryResult:
    from delta.tables import DeltaTable
    from pyspark.errors import PySparkException

    from pulsecast.stream.session import spark_session

    spark = spark_session(settings, app_name="pulsecast-sql")
    for name, uri in lake_tables(settings).items():
        if DeltaTable.isDeltaTable(spark, uri):
            spark.read.format("delta").load(uri).createOrReplaceTempView(name)
    try:
        frame = spark.sql(query)
        rows = [tuple(r) for r in frame.collect()]
    except PySparkException as exc:
        raise QueryError(str(exc).splitlines()[0]) from exc
    return QueryResult(frame.columns, rows)


def run_sql(settings: Settings, query: str, *, engine: Engine = "duckdb") -> QueryResult:
    """Run ``query`` over the lake.

    Raises:
        QueryError: The engine refused the query.
    """
    if engine == "spark":
        return _spark(settings, query)
    return _duckdb(settings, query)

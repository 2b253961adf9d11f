"""SQL over the lake: DuckDB embedded (no JVM start) or Spark SQL, same table names.

Every Delta table of every configured stream is visible under its SQL name
(``bronze_<stream>``, ``silver_<stream>``, ``gold_<stream>_<window>``,
``gold_<stream>_scores``, ``panes_<stream>``; see :mod:`pulsecast.lake.tables`).
DuckDB finds each Delta table's current files through the ``deltalake``
package (delta-rs) and reads them with its own Parquet reader where it can
(local, unencrypted files: :mod:`pulsecast.analytics.parquet_scan`), otherwise
as ``deltalake`` Arrow datasets (``hdfs://`` lakes through delta-rs's own HDFS
client, no JVM; the encrypted zones, decrypted by pyarrow); either way filters
are pushed down to the Parquet files.

Both engines also get:

- ``lake_files``: one row per data file of every lake table (``table_name``,
  ``path``, ``size_bytes``, ``rows``, ``written_at``, ``min_batch_id``,
  ``max_batch_id``), from the tables' Delta logs, built only for a query that
  names it (:class:`DuckDBEngine` builds it again only when a table has a new
  version);
- the portable functions of :data:`PORTABLE_FUNCTIONS`, so that one query text
  runs on both engines where their dialects differ (``pc_seconds``,
  ``pc_weekday``);
- UTC as the session time zone.

:class:`DuckDBEngine` keeps its connection and the tables it opened between
queries and brings each table up to its latest version before a query that
reads it, so a live application (the dashboard) pays for opening a table once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pulsecast.analytics.errors import MissingTableError, QueryError
from pulsecast.analytics.parquet_scan import is_schema_mismatch, parquet_view_sql, quote_identifier
from pulsecast.config import Settings
from pulsecast.lake.tables import LakeTables

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    from pyspark.sql import SparkSession

__all__ = [
    "LAKE_FILES",
    "PORTABLE_FUNCTIONS",
    "DuckDBEngine",
    "Engine",
    "MissingTableError",
    "QueryError",
    "QueryResult",
    "SparkEngine",
    "SqlEngine",
    "lake_files",
    "lake_tables",
    "one_line",
    "open_engine",
    "prepare_duckdb",
    "prepare_spark",
    "referenced",
    "run_sql",
]

log = logging.getLogger(__name__)

Engine = Literal["duckdb", "spark"]

#: The virtual table of the lake's data files.
LAKE_FILES = "lake_files"

#: Functions defined on both engines, so that one query text runs on both:
#: name → (signature and meaning, DuckDB macro body, Spark SQL function body).
PORTABLE_FUNCTIONS: dict[str, tuple[str, str, str]] = {
    "pc_seconds": (
        "pc_seconds(start, end): seconds from start to end (double)",
        "epoch(b) - epoch(a)",
        "(unix_micros(b) - unix_micros(a)) / 1e6",
    ),
    "pc_weekday": (
        "pc_weekday(ts): day of the week, 0 = Monday ... 6 = Sunday (int)",
        "CAST(isodow(t) - 1 AS INTEGER)",
        "weekday(t)",
    ),
}
_ARGS = {"pc_seconds": ("a", "b"), "pc_weekday": ("t",)}
_SPARK_ARGS = {"pc_seconds": "a TIMESTAMP, b TIMESTAMP", "pc_weekday": "t TIMESTAMP"}
_SPARK_RETURNS = {"pc_seconds": "DOUBLE", "pc_weekday": "INT"}


@dataclass(frozen=True)
class QueryResult:
    """A query's result: an Arrow table, with its columns and rows as Python values."""

    table: pa.Table

    @property
    def columns(self) -> list[str]:
        """Column names, in order."""
        return list(self.table.column_names)

    @cached_property
    def rows(self) -> list[tuple[Any, ...]]:
        """Rows as tuples of Python values (converted column by column)."""
        columns = [column.to_pylist() for column in self.table.columns]
        if not columns:
            return [() for _ in range(self.table.num_rows)]
        return list(zip(*columns, strict=True))

    def to_arrow(self) -> pa.Table:
        """The result as an Arrow table."""
        return self.table


class SqlEngine(Protocol):
    """An engine answering SQL over the lake (see the module's description).

    ``query`` blocks until the result is in memory. An engine may keep state
    between queries (connections, opened tables); ``close`` releases it and
    may be called more than once.
    """

    name: str

    def query(self, sql: str) -> QueryResult:
        """Run ``sql`` over the lake tables it names.

        Raises:
            MissingTableError: ``sql`` names a lake table that does not exist yet.
            QueryError: The engine refused the query or the lake cannot be read.
        """
        ...

    def close(self) -> None:
        """Release the engine's resources."""
        ...


def lake_tables(settings: Settings) -> dict[str, str]:
    """SQL name → URI of every lake table of every configured stream."""
    lake = LakeTables.from_settings(settings)
    windows = [w.name for w in settings.stream.windows]
    names: dict[str, str] = {}
    for stream in settings.streams:
        names.update(lake.names(stream, windows))
    return names


def referenced(sql: str, names: Iterable[str]) -> list[str]:
    """The names in ``names`` that ``sql`` mentions as whole words (case-insensitive)."""
    return [n for n in names if re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", sql, re.IGNORECASE)]


def one_line(exc: BaseException) -> str:
    """delta-rs's nested, colored error report (or any error) as one plain line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    parts = [p.strip().lstrip("↳").strip() for p in text.splitlines()]
    return ": ".join(p for p in parts if p)


#: Spark failures that mean the result did not fit the driver, and what to do about each.
_TOO_LARGE = {
    "TaskResultLost": "raise spark.driver_memory",
    "spark.driver.maxResultSize": "raise spark.driver.maxResultSize in spark.conf",
}


def spark_failure(text: str) -> str:
    """A Java exception's report from Spark (py4j's many lines) as one line.

    The innermost ``Caused by:`` says what happened (the outer ones only say
    where); a result too large for the driver gets what to do about it.
    """
    lines = text.splitlines()
    causes = [line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by: ")]
    # Without a cause, py4j's report is "An error occurred while calling ...", then ": <error>".
    thrown = [line.removeprefix(": ") for line in lines if line.startswith(": ")]
    line = (causes[-1:] or thrown[:1] or [text.strip()])[0].strip()
    line = re.sub(r"^(org\.apache\.spark\.|java\.\w+\.)\S*?(\w+Exception): ", r"\2: ", line)
    for marker, advice in _TOO_LARGE.items():
        if marker in text:
            line += (
                f" (the result is too large for the Spark driver: filter the query, or {advice})"
            )
            break
    return line


def _open_delta(name: str, uri: str) -> Any:
    """The Delta table at ``uri``; None when there is none yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(uri)
    except TableNotFoundError:
        return None
    except OSError as exc:  # the lake's storage does not answer (HDFS down...)
        msg = f"cannot read {name} at {uri}: {one_line(exc)}"
        raise QueryError(msg) from exc


def lake_files(tables: dict[str, Any]) -> pa.Table:
    """One row per data file of each Delta table in ``tables`` (SQL name → DeltaTable).

    ``written_at`` is the file's modification time as its Delta log records it
    (when the writer created it); ``min_batch_id``/``max_batch_id`` are the
    file's statistics of a ``batch_id`` column (null for tables without one).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = pa.schema(
        [
            ("table_name", pa.string()),
            ("path", pa.string()),
            ("size_bytes", pa.int64()),
            ("rows", pa.int64()),
            ("written_at", pa.timestamp("ms", tz="UTC")),
            ("min_batch_id", pa.int64()),
            ("max_batch_id", pa.int64()),
        ]
    )
    parts = [schema.empty_table()]
    for name, table in sorted(tables.items()):
        actions = pa.table(table.get_add_actions(flatten=True))
        n = actions.num_rows
        nulls = pa.nulls(n, pa.int64())
        columns = {
            "table_name": pa.array([name] * n, pa.string()),
            "path": actions["path"],
            "size_bytes": actions["size_bytes"],
            "rows": actions["num_records"],
            "written_at": pc.cast(actions["modification_time"], pa.timestamp("ms", tz="UTC")),
            "min_batch_id": actions["min.batch_id"]
            if "min.batch_id" in actions.column_names
            else nulls,
            "max_batch_id": actions["max.batch_id"]
            if "max.batch_id" in actions.column_names
            else nulls,
        }
        parts.append(pa.table(columns).cast(schema))
    return pa.concat_tables(parts)


# -- DuckDB ------------------------------------------------------------------------------------


def prepare_duckdb(con: duckdb.DuckDBPyConnection) -> None:
    """UTC and the portable functions on a DuckDB connection."""
    con.execute("SET TimeZone = 'UTC'")
    for name, (_, body, _) in PORTABLE_FUNCTIONS.items():
        con.execute(f"CREATE OR REPLACE MACRO {name}({', '.join(_ARGS[name])}) AS {body}")


def _duckdb_arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    import pyarrow as pa

    relation = con.sql(sql)
    if relation is None:  # a statement without a result (SET, CREATE...)
        return pa.table({})
    fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
    table: pa.Table = fetch()
    return table


@dataclass
class DuckDBEngine:
    """DuckDB over the lake, one connection kept between queries (see the module's description).

    Args:
        settings: Where the lake is and which streams it holds.
        parquet_reader: Read the tables DuckDB can read alone with its own
            Parquet reader (False: every table as an Arrow dataset).
    """

    settings: Settings
    name: str = "duckdb"
    parquet_reader: bool = True
    _con: Any = field(default=None, init=False, repr=False)
    _tables: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _registered: set[str] = field(default_factory=set, init=False, repr=False)
    #: Tables registered as views over their Parquet files (the others are Arrow datasets).
    _native: set[str] = field(default_factory=set, init=False, repr=False)
    #: (table, version) whose files DuckDB's reader refused: read through Arrow.
    _arrow_only: set[tuple[str, int]] = field(default_factory=set, init=False, repr=False)
    #: The table versions the registered ``lake_files`` was built from (None: not built).
    _files_versions: tuple[tuple[str, int], ...] | None = field(
        default=None, init=False, repr=False
    )

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection (opened on first use)."""
        if self._con is None:
            import duckdb

            self._con = duckdb.connect()
            prepare_duckdb(self._con)
            # Parquet footers stay in memory between queries (Delta's files never change).
            self._con.execute("SET parquet_metadata_cache = true")
        con: duckdb.DuckDBPyConnection = self._con
        return con

    def _refresh(self, name: str, uri: str) -> bool:
        """Register ``name`` at its latest version; False when the table does not exist."""
        table = self._tables.get(name)
        if table is None:
            table = _open_delta(name, uri)
            if table is None:
                return False
            self._tables[name] = table
        else:
            version = table.version()
            try:
                table.update_incremental()
            except OSError as exc:
                msg = f"cannot read {name} at {uri}: {one_line(exc)}"
                raise QueryError(msg) from exc
            if table.version() == version and name in self._registered:
                return True
        self._register(name, table)
        return True

    def _register(self, name: str, table: Any) -> None:
        """Register ``table`` under ``name``: over its Parquet files, else as an Arrow dataset."""
        import duckdb

        if self.parquet_reader and (name, table.version()) not in self._arrow_only:
            try:
                view = parquet_view_sql(self.connection, name, table, self.settings)
                if view is not None:
                    self.connection.execute(view)
                    self._native.add(name)
                    self._registered.add(name)
                    return
            except duckdb.Error as exc:  # a file DuckDB's reader cannot open: Arrow reads it
                log.warning("%s v%d: %s; reading it through Arrow", name, table.version(), exc)
        from pulsecast.security.lake_crypto import readable_dataset

        # Decrypts the lake's Parquet files when it is encrypted (security.encrypt_lake).
        dataset = readable_dataset(table.to_pyarrow_dataset(), self.settings)
        if name in self._native:
            self.connection.execute(f"DROP VIEW {quote_identifier(name)}")
        self.connection.register(name, dataset)
        self._native.discard(name)
        self._registered.add(name)

    def open_all(self) -> None:
        """Register every existing lake table, whether a query names it or not."""
        for name, uri in lake_tables(self.settings).items():
            self._refresh(name, uri)

    def query(self, sql: str) -> QueryResult:
        """See :class:`SqlEngine`."""
        import duckdb

        known = lake_tables(self.settings)
        names = referenced(sql, list(known))
        for name in names:
            if not self._refresh(name, known[name]):
                raise MissingTableError(name)
        if referenced(sql, [LAKE_FILES]):
            self._register_lake_files(known)
        try:
            return QueryResult(_duckdb_arrow(self.connection, sql))
        except duckdb.Error as exc:
            if is_schema_mismatch(exc) and self._through_arrow(names):
                return self.query(sql)
            raise QueryError(str(exc).splitlines()[0]) from exc

    def _through_arrow(self, names: list[str]) -> bool:
        """Read the tables of ``names`` read natively through Arrow until their next version.

        Their files differ in columns (written before a column was added).
        False when there was none.
        """
        switched = [name for name in names if name in self._native]
        for name in switched:
            table = self._tables[name]
            log.info(
                "%s v%d: files with other columns; reading it through Arrow", name, table.version()
            )
            self._arrow_only.add((name, table.version()))
            self._register(name, table)
        return bool(switched)

    def _register_lake_files(self, known: dict[str, str]) -> None:
        """Register ``lake_files``, built again only when a table has a new version."""
        for name, uri in known.items():
            self._refresh(name, uri)
        versions = tuple(sorted((name, table.version()) for name, table in self._tables.items()))
        if versions != self._files_versions:
            self.connection.register(LAKE_FILES, lake_files(self._tables))
            self._files_versions = versions

    def close(self) -> None:
        """See :class:`SqlEngine`."""
        if self._con is not None:
            self._con.close()
            self._con = None
        self._tables.clear()
        self._registered.clear()
        self._native.clear()
        self._arrow_only.clear()
        self._files_versions = None


# -- Spark -------------------------------------------------------------------------------------


def prepare_spark(spark: SparkSession) -> None:
    """The portable functions in a Spark session (temporary: this session only)."""
    for name, (_, _, body) in PORTABLE_FUNCTIONS.items():
        spark.sql(
            f"CREATE OR REPLACE TEMPORARY FUNCTION {name}({_SPARK_ARGS[name]}) "
            f"RETURNS {_SPARK_RETURNS[name]} RETURN {body}"
        )


@dataclass
class SparkEngine:
    """Spark SQL over the lake, in the process's Spark session.

    Args:
        settings: Where the lake is and how to start Spark.
    """

    settings: Settings
    name: str = "spark"

    @cached_property
    def session(self) -> SparkSession:
        """The Spark session (started on first use: several seconds)."""
        from pulsecast.stream.session import spark_session

        spark = spark_session(self.settings, app_name="pulsecast-sql")
        prepare_spark(spark)
        return spark

    def register(self, sql: str | None) -> dict[str, str]:
        """Register the lake tables ``sql`` names (all when None); returns name → URI.

        Raises:
            MissingTableError: ``sql`` names a lake table that does not exist yet.
        """
        from delta.tables import DeltaTable

        known = lake_tables(self.settings)
        wanted = list(known) if sql is None else referenced(sql, list(known))
        found: dict[str, str] = {}
        for name in wanted:
            if DeltaTable.isDeltaTable(self.session, known[name]):
                self.session.read.format("delta").load(known[name]).createOrReplaceTempView(name)
                found[name] = known[name]
            elif sql is not None:
                raise MissingTableError(name)
        if sql is not None and referenced(sql, [LAKE_FILES]):
            tables = {n: t for n, u in known.items() if (t := _open_delta(n, u)) is not None}
            frame = self.session.createDataFrame(lake_files(tables))
            frame.createOrReplaceTempView(LAKE_FILES)
        return found

    def query(self, sql: str) -> QueryResult:
        """See :class:`SqlEngine`."""
        from py4j.protocol import Py4JJavaError
        from pyspark.errors import PySparkException

        self.register(sql)
        try:
            return QueryResult(self.session.sql(sql).toArrow())
        except PySparkException as exc:
            raise QueryError(str(exc).splitlines()[0]) from exc
        except Py4JJavaError as exc:  # a failure pyspark does not translate (a lost result)
            raise QueryError(spark_failure(str(exc))) from exc

    def close(self) -> None:
        """Nothing to release: the session is the process's, shared."""


def open_engine(settings: Settings, engine: Engine = "duckdb") -> SqlEngine:
    """A new engine of kind ``engine`` over the lake of ``settings``."""
    if engine == "spark":
        return SparkEngine(settings)
    return DuckDBEngine(settings)


def run_sql(settings: Settings, query: str, *, engine: Engine = "duckdb") -> QueryResult:
    """Run ``query`` over the lake, every table of every stream registered.

    Raises:
        MissingTableError: ``query`` names a lake table that does not exist yet.
        QueryError: The engine refused the query, or the lake cannot be read.
    """
    if engine == "spark":
        return SparkEngine(settings).query(query)
    duck = DuckDBEngine(settings)
    try:
        duck.open_all()
        return duck.query(query)
    finally:
        duck.close()

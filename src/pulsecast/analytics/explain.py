"""``pulsecast sql --explain``: what a query read from the lake, table by table, and its plan.

For each lake table a query reads, the report gives partitions, files and bytes:
in the table, and read by the query after partition pruning and data skipping
(each Delta file's min/max statistics). The numbers are measured on a real run
of the query, not predicted:

- DuckDB: the tables are ``deltalake`` Arrow datasets (what :func:`run_sql`
  reads when DuckDB's own Parquet reader cannot; see
  :mod:`pulsecast.analytics.parquet_scan`), whose fragments carry each file's
  partition values and min/max statistics, so pyarrow skips a file without
  opening it when the filter DuckDB pushes down cannot match. The dataset's
  file system is wrapped to record every file opened. A file that is opened
  counts as read, even when its row groups are then skipped; a ``LIMIT`` can
  stop a scan before it opened every matching file.
- Spark: the metrics of the executed plan's scans (``number of files read``,
  ``number of partitions read``, ``size of files read``), plus what Delta's
  planner kept after partition filters and after data skipping.

The plan is DuckDB's ``EXPLAIN`` (pushed filters show in the scan) or Spark's
executed plan.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from pulsecast.analytics.sql import (
    LAKE_FILES,
    Engine,
    MissingTableError,
    QueryError,
    SparkEngine,
    lake_files,
    lake_tables,
    one_line,
    prepare_duckdb,
)
from pulsecast.analytics.sql import referenced as mentioned
from pulsecast.config import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["Explanation", "TableScan", "explain"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableScan:
    """What one query read from one lake table.

    Attributes:
        table: SQL name.
        partitions_total: Partitions in the table (the version the query read).
        partitions_read: Partitions with at least one file read.
        files_total: Data files in the table.
        files_read: Data files the query opened.
        bytes_total: Size of all data files.
        bytes_read: Size of the files read (whole files, whatever columns were read).
        files_after_partition_filters: Spark only: files Delta's planner kept
            after partition filters (None with DuckDB).
        files_after_data_skipping: Spark only: files kept after the min/max
            statistics too (None with DuckDB).
    """

    table: str
    partitions_total: int
    partitions_read: int
    files_total: int
    files_read: int
    bytes_total: int
    bytes_read: int
    files_after_partition_filters: int | None = None
    files_after_data_skipping: int | None = None


@dataclass(frozen=True)
class Explanation:
    """A query's scans of the lake, its plan, and how long it took.

    Attributes:
        engine: ``duckdb`` or ``spark``.
        query: The query.
        scans: One entry per lake table the query reads.
        plan: The engine's plan as text.
        rows: Rows the query returned.
        seconds: Wall time of the query (opening the tables not included).
    """

    engine: str
    query: str
    scans: list[TableScan] = field(default_factory=list)
    plan: str = ""
    rows: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return asdict(self)


# -- DuckDB ------------------------------------------------------------------------------------


def _counting_handler(inner: Any) -> Any:
    """A pyarrow file system handler forwarding to ``inner`` that records files opened."""
    import pyarrow.fs as pa_fs

    class CountingHandler(pa_fs.FileSystemHandler):  # type: ignore[misc]
        def __init__(self) -> None:
            self.opened: set[str] = set()
            self._lock = threading.Lock()

        def _note(self, path: str) -> None:
            with self._lock:
                self.opened.add(path)

        def open_input_file(self, path: str) -> Any:
            self._note(path)
            return inner.open_input_file(path)

        def open_input_stream(self, path: str) -> Any:
            self._note(path)
            return inner.open_input_stream(path)

        def get_type_name(self) -> str:
            return f"counting+{inner.get_type_name()}"

        def normalize_path(self, path: str) -> Any:
            return inner.normalize_path(path)

        def get_file_info(self, paths: Any) -> Any:
            return inner.get_file_info(paths)

        def get_file_info_selector(self, selector: Any) -> Any:
            return inner.get_file_info_selector(selector)

        def create_dir(self, path: str, recursive: bool) -> Any:
            return inner.create_dir(path, recursive)

        def delete_dir(self, path: str) -> Any:
            return inner.delete_dir(path)

        def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> Any:
            return inner.delete_dir_contents(path, missing_dir_ok)

        def delete_root_dir_contents(self) -> Any:
            return inner.delete_root_dir_contents()

        def delete_file(self, path: str) -> Any:
            return inner.delete_file(path)

        def move(self, src: str, dest: str) -> Any:
            return inner.move(src, dest)

        def copy_file(self, src: str, dest: str) -> Any:
            return inner.copy_file(src, dest)

        def open_output_stream(self, path: str, metadata: Any) -> Any:
            return inner.open_output_stream(path, metadata)

        def open_append_stream(self, path: str, metadata: Any) -> Any:
            return inner.open_append_stream(path, metadata)

    return CountingHandler()


def _file_key(path: str) -> str:
    return unquote(path).lstrip("/")


@dataclass
class _DuckTable:
    name: str
    delta: Any
    handler: Any
    files: dict[str, tuple[tuple[Any, ...], int]]  # path -> (partition values, size)

    def scan(self) -> TableScan:
        opened = {_file_key(p) for p in self.handler.opened}
        read = [info for path, info in self.files.items() if path in opened]
        unknown = opened - self.files.keys()
        if unknown:
            log.warning("%s: opened files not in the table: %s", self.name, sorted(unknown)[:3])
        return TableScan(
            table=self.name,
            partitions_total=len({part for part, _ in self.files.values()}),
            partitions_read=len({part for part, _ in read}),
            files_total=len(self.files),
            files_read=len(read),
            bytes_total=sum(size for _, size in self.files.values()),
            bytes_read=sum(size for _, size in read),
        )


def _add_files(actions: Any) -> dict[str, tuple[tuple[Any, ...], int]]:
    partition_columns = [c for c in actions.column_names if c.startswith("partition.")]
    paths = actions.column("path").to_pylist()
    sizes = actions.column("size_bytes").to_pylist()
    parts = list(zip(*(actions.column(c).to_pylist() for c in partition_columns), strict=True))
    if not parts:
        parts = [()] * len(paths)
    return {
        _file_key(p): (tuple(part), int(size))
        for p, part, size in zip(paths, parts, sizes, strict=True)
    }


def _open_duckdb_tables(settings: Settings, con: Any) -> Iterator[_DuckTable]:
    import pyarrow as pa
    import pyarrow.fs as pa_fs
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from pulsecast.security.lake_crypto import readable_dataset

    for name, uri in lake_tables(settings).items():
        try:
            table = DeltaTable(uri)
            plain = table.to_pyarrow_dataset()
        except TableNotFoundError:
            continue
        except OSError as exc:  # the lake's storage does not answer
            msg = f"cannot read {name} at {uri}: {one_line(exc)}"
            raise QueryError(msg) from exc
        handler = _counting_handler(plain.filesystem.handler)
        dataset = table.to_pyarrow_dataset(filesystem=pa_fs.PyFileSystem(handler))
        con.register(name, readable_dataset(dataset, settings))
        yield _DuckTable(
            name, table, handler, _add_files(pa.table(table.get_add_actions(flatten=True)))
        )


def _table_refs(node: Any) -> Iterator[str]:
    """Names of the base tables in DuckDB's serialized syntax tree."""
    if isinstance(node, dict):
        if node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
            yield node["table_name"]
        for value in node.values():
            yield from _table_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _table_refs(value)


def _referenced(con: Any, query: str) -> set[str] | None:
    """Lower-cased names of the tables ``query`` reads; None when DuckDB cannot tell."""
    row = con.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
    tree = json.loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        return None
    return {name.lower() for name in _table_refs(tree)}


def _explain_duckdb(settings: Settings, query: str) -> Explanation:
    import duckdb

    con = duckdb.connect()
    try:
        prepare_duckdb(con)
        tables = {t.name: t for t in _open_duckdb_tables(settings, con)}
        for name in mentioned(query, lake_tables(settings)):
            if name not in tables:
                raise MissingTableError(name)
        if mentioned(query, [LAKE_FILES]):
            con.register(LAKE_FILES, lake_files({n: t.delta for n, t in tables.items()}))
        try:
            referenced = _referenced(con, query)
            started = time.perf_counter()
            rows = con.execute(query).fetchall()
            seconds = time.perf_counter() - started
            plan_rows = con.execute(f"EXPLAIN {query}").fetchall()
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from exc
        plan = "\n".join(str(r[1]) for r in plan_rows)
        scans = [
            t.scan()
            for name, t in sorted(tables.items())
            if (name.lower() in referenced if referenced is not None else t.handler.opened)
        ]
        return Explanation("duckdb", query, scans, plan, len(rows), seconds)
    finally:
        con.close()


# -- Spark -------------------------------------------------------------------------------------


def _norm_uri(uri: str) -> str:
    parsed = urlparse(uri)
    scheme = parsed.scheme or "file"
    return f"{scheme}://{parsed.netloc}/{unquote(parsed.path).strip('/')}"


def _children(node: Any) -> list[Any]:
    """A physical plan node's children, looking through adaptive and query-stage wrappers."""
    kind = node.getClass().getSimpleName()
    out: list[Any] = []
    if kind == "AdaptiveSparkPlanExec":
        out.append(node.executedPlan())
    elif kind.endswith("QueryStageExec"):
        out.append(node.plan())
    iterator = node.children().iterator()
    while iterator.hasNext():
        out.append(iterator.next())
    subqueries = node.subqueries().iterator()
    while subqueries.hasNext():
        out.append(subqueries.next())
    return out


def _file_scans(plan: Any) -> list[Any]:
    found: list[Any] = []
    stack = [plan]  # a tree: no node is reached twice
    while stack:
        node = stack.pop()
        if node.getClass().getSimpleName() == "FileSourceScanExec":
            found.append(node)
        stack.extend(_children(node))
    return found


def _metric(node: Any, name: str) -> int:
    metrics = node.metrics()
    return int(metrics.apply(name).value()) if metrics.contains(name) else 0


def _spark_totals(
    spark: SparkSession, location: Any
) -> tuple[int, int, int, int | None, int | None]:
    """Partitions, files and bytes of the scanned Delta version; planner's files kept."""
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    log_ = location.deltaLog()
    prepared = None
    if location.getClass().getSimpleName() == "PreparedDeltaFileIndex":
        prepared = location.preparedScan()
    if prepared is not None:
        version = int(prepared.version())
        snapshot = log_.getSnapshotAt(
            version,
            getattr(log_, "getSnapshotAt$default$2")(),
            getattr(log_, "getSnapshotAt$default$3")(),
            getattr(log_, "getSnapshotAt$default$4")(),
        )
    else:
        snapshot = log_.unsafeVolatileSnapshot()
    files = DataFrame(snapshot.allFiles().toDF(), spark)
    row = files.agg(
        F.count_distinct(F.to_json(F.col("partitionValues"))).alias("partitions"),
        F.count(F.lit(1)).alias("files"),
        F.coalesce(F.sum("size"), F.lit(0)).alias("bytes"),
    ).first()
    assert row is not None  # noqa: S101 (an aggregate has one row)
    return (
        int(row["partitions"]),
        int(row["files"]),
        int(row["bytes"]),
        _files_of(prepared.partition()) if prepared is not None else None,
        _files_of(prepared.scanned()) if prepared is not None else None,
    )


def _files_of(size: Any) -> int | None:
    """The file count of a Delta ``DataSize`` (None when the planner did not record one)."""
    if size is None or size.files().isEmpty():
        return None
    return int(size.files().get())


def _explain_spark(settings: Settings, query: str) -> Explanation:
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    engine = SparkEngine(settings)
    spark = engine.session
    names = {_norm_uri(uri): name for name, uri in engine.register(query).items()}
    try:
        frame = spark.sql(query)
        started = time.perf_counter()
        rows = frame.collect()
        seconds = time.perf_counter() - started
    except PySparkException as exc:
        raise QueryError(str(exc).splitlines()[0]) from exc
    executed = frame._jdf.queryExecution().executedPlan()
    per_table: dict[str, list[Any]] = {}
    for scan in _file_scans(executed):
        location = scan.relation().location()
        try:
            root = location.deltaLog().dataPath().toString()
        except Py4JError:  # not a Delta table's file index
            continue
        table = names.get(_norm_uri(root))
        if table is not None:
            per_table.setdefault(table, []).append(scan)
    scans = []
    for name, nodes in sorted(per_table.items()):
        partitions, files, size, after_partitions, after_skipping = _spark_totals(
            spark, nodes[0].relation().location()
        )
        scans.append(
            TableScan(
                table=name,
                partitions_total=partitions,
                partitions_read=sum(_metric(n, "numPartitions") for n in nodes),
                files_total=files,
                files_read=sum(_metric(n, "numFiles") for n in nodes),
                bytes_total=size,
                bytes_read=sum(_metric(n, "filesSize") for n in nodes),
                files_after_partition_filters=after_partitions,
                files_after_data_skipping=after_skipping,
            )
        )
    return Explanation("spark", query, scans, executed.toString(), len(rows), seconds)


def explain(settings: Settings, query: str, *, engine: Engine = "duckdb") -> Explanation:
    """Run ``query`` over the lake and report, per table it reads, what it read.

    Raises:
        QueryError: The engine refused the query, or the lake cannot be read.
    """
    if engine == "spark":
        return _explain_spark(settings, query)
    return _explain_duckdb(settings, query)

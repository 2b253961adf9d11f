"""Lake maintenance: compact small files, Z-order silver and scores by key, vacuum unused files.

The streaming job appends at least one small file per partition and
micro-batch, so a day of silver is thousands of files and every query opens
them all. :func:`optimize` rewrites them with Delta's ``OPTIMIZE``: bin-packing
into files of up to ``spark.databricks.delta.optimize.maxFileSize`` (1 GiB by
default), and for silver a Z-order by :data:`~pulsecast.lake.tables.SILVER_ZORDER`
so that each file's min/max statistics of ``key`` let a query for one entity
skip the files of the others. The live scores (``gold_<stream>_scores``, one
partition per day) are Z-ordered by :data:`SCORES_ZORDER` into files of at most
:data:`SCORES_FILE_BYTES`, so that the dashboard's entity view (one key, one
series) reads one file of each day instead of the whole day. (Delta's Z-order
range-partitions the rows into files but does not sort them within a file:
row-group statistics skip nothing, file statistics do.) A ``since``/``until``
date range limits the work to some partitions, so a daily run does not rewrite
history. The files replaced stay (time travel, running readers) until
:func:`vacuum` deletes the ones a table stopped using more than
``lake.vacuum_retain_hours`` ago.

Both run on Spark with Delta, the engine that writes the tables (on a cluster,
spread over the cluster). The caller passes the SparkSession; nothing here
imports Spark until called. One exception: in an encrypted lake, gold, the
scores, forecast errors, pane state and batch statistics are compacted the
way the job compacts them (:func:`pulsecast.lake.small_tables.compact`):
read decrypted, written encrypted, committed by delta-rs with row counts as
their only statistics. Bronze and silver, which the job also commits from
its driver for batches of up to ``stream.driver_commit_rows`` records, are
rewritten by Spark's OPTIMIZE in every lake (Spark reads pyarrow's encrypted
files, and writes their ``batch_id`` min/max into the log).
docs/lake.md explains the choices and measures them.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Final, Literal

from pulsecast.config import Settings
from pulsecast.events.errors import UnknownStreamError
from pulsecast.lake.errors import LakeError, MaintenanceConflictError, UnsafeRetentionError
from pulsecast.lake.tables import (
    BRONZE_PARTITIONS,
    GOLD_PARTITIONS,
    PANE_PARTITIONS,
    SILVER_PARTITIONS,
    SILVER_ZORDER,
    LakeTables,
)
from pulsecast.security.lake_crypto import LakeCrypto

if TYPE_CHECKING:
    from delta.tables import DeltaTable
    from pyspark.sql import SparkSession

__all__ = [
    "DEFAULT_RETENTION_HOURS",
    "SCORES_FILE_BYTES",
    "SCORES_ZORDER",
    "ZONES",
    "MaintainedTable",
    "OptimizeResult",
    "VacuumResult",
    "maintained_tables",
    "optimize",
    "retention_hours",
    "vacuum",
]

log = logging.getLogger(__name__)

Zone = Literal["bronze", "silver", "gold", "panes"]
ZONES: Final[tuple[Zone, ...]] = ("bronze", "silver", "gold", "panes")
#: Zones only the job's driver writes (delta-rs); bronze and silver are Spark's too.
_DELTA_RS_ZONES: Final[frozenset[Zone]] = frozenset({"gold", "panes"})
#: Delta's default ``spark.databricks.delta.optimize.maxFileSize`` (1 GiB).
_DELTA_MAX_FILE_BYTES: Final = 1 << 30
#: Delta's default ``delta.deletedFileRetentionDuration`` (7 days), in hours.
DEFAULT_RETENTION_HOURS: Final = 168.0
_RETENTION_PROPERTY: Final = "delta.deletedFileRetentionDuration"
_HOURS_PER_UNIT: Final = {
    "week": 168.0,
    "day": 24.0,
    "hour": 1.0,
    "minute": 1 / 60,
    "second": 1 / 3600,
    "millisecond": 1 / 3_600_000,
}
_CHECK_CONF: Final = "spark.databricks.delta.retentionDurationCheck.enabled"
_VACUUM_LOGGING_CONF: Final = "spark.databricks.delta.vacuum.logging.enabled"
_LISTING_CONF: Final = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
_ZORDER_NOISE_CONF: Final = "spark.databricks.io.skipping.mdc.addNoise"
_MAX_FILE_CONF: Final = "spark.databricks.delta.optimize.maxFileSize"
_TIMESTAMP_CONF: Final = "spark.sql.parquet.outputTimestampType"
#: The scores table's clustering: the entity view reads one key's one series.
SCORES_ZORDER: Final = ("key", "metric")
#: Largest file ``optimize`` writes for the scores table: a day of 166 machines
#: (about 35 MiB) becomes 15 to 20 files, each a narrow range of keys and series.
SCORES_FILE_BYTES: Final = 2 * 2**20

Progress = Callable[[str], None]


@dataclass(frozen=True)
class MaintainedTable:
    """One lake table as maintenance sees it.

    Attributes:
        name: SQL name (``silver_telemetry``).
        uri: Where the Delta table lives.
        zone: ``bronze``, ``silver``, ``gold`` or ``panes`` (the job's state: pane partials
            and batch statistics).
        date_column: The date partition column that ``since``/``until`` filter on.
        zorder: Columns ``optimize`` Z-orders by (empty: compaction only).
        file_bytes: Largest file ``optimize`` writes (None: Delta's default, 1 GiB).
    """

    name: str
    uri: str
    zone: Zone
    date_column: str
    zorder: tuple[str, ...] = ()
    file_bytes: int | None = None

    def write_conf(self, settings: Settings) -> dict[str, str]:
        """The Spark SQL configuration ``optimize`` sets for this table.

        What ``spark.conf`` of ``settings`` sets itself is left to it.
        """
        conf = {
            # Delta appends a random byte to each row's Z-order value against skew;
            # with a few hundred keys that splits one key over two files and halves
            # the skipping. Keys are many rows each and roughly balanced: no noise.
            _ZORDER_NOISE_CONF: "false",
            _MAX_FILE_CONF: None if self.file_bytes is None else str(self.file_bytes),
            # Spark's default INT96 timestamps read back as naive nanoseconds in Arrow
            # (delta-rs, DuckDB); microseconds adjusted to UTC read as what they are.
            _TIMESTAMP_CONF: "TIMESTAMP_MICROS",
        }
        return {
            key: value
            for key, value in conf.items()
            if value is not None and key not in settings.spark.conf
        }

    def max_file_bytes(self, settings: Settings) -> int:
        """Largest file ``optimize`` writes, as Spark's would: the configuration's, ours, Delta's.

        Raises:
            LakeError: ``spark.conf`` sets the size to something other than a number of bytes.
        """
        value = settings.spark.conf.get(_MAX_FILE_CONF)
        if value is None:
            return self.file_bytes or _DELTA_MAX_FILE_BYTES
        try:
            return int(value)
        except ValueError:
            msg = f"{_MAX_FILE_CONF} must be a number of bytes, got {value!r}"
            raise LakeError(msg) from None


@dataclass(frozen=True)
class OptimizeResult:
    """What ``optimize`` did to one table (Delta's OPTIMIZE metrics).

    Attributes:
        table: SQL name.
        zorder: Columns it Z-ordered by (empty: compaction only).
        files_before: Files in the table before.
        files_after: Files in the table after.
        files_removed: Files the rewrite replaced (still on storage until vacuumed).
        files_added: Files it wrote.
        bytes_removed: Size of the replaced files.
        bytes_added: Size of the files written.
        partitions_optimized: Partitions rewritten.
        seconds: Wall time.
    """

    table: str
    zorder: tuple[str, ...]
    files_before: int
    files_after: int
    files_removed: int
    files_added: int
    bytes_removed: int
    bytes_added: int
    partitions_optimized: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        data = asdict(self)
        data["zorder"] = list(self.zorder)
        return data


@dataclass(frozen=True)
class VacuumResult:
    """What ``vacuum`` deleted, or would delete, from one table.

    Attributes:
        table: SQL name.
        retain_hours: The retention used.
        minimum_hours: The table's safe minimum (``delta.deletedFileRetentionDuration``).
        dry_run: Whether nothing was deleted (``paths`` lists what would go).
        files: Files deleted (or that would be); None when Delta did not log the count.
        bytes: Their size; None when unknown.
        paths: Dry run only: the files, relative to the table's root.
        seconds: Wall time.
    """

    table: str
    retain_hours: float
    minimum_hours: float
    dry_run: bool
    files: int | None
    bytes: int | None
    paths: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def below_minimum(self) -> bool:
        """Whether the retention is below the table's safe minimum."""
        return self.retain_hours < self.minimum_hours

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        data = asdict(self)
        data["paths"] = list(self.paths)
        return data


def maintained_tables(
    settings: Settings,
    *,
    streams: Sequence[str] | None = None,
    zones: Sequence[str] | None = None,
) -> list[MaintainedTable]:
    """Every lake table of ``streams`` (default: all) in ``zones`` (default: all).

    Raises:
        UnknownStreamError: A stream no configuration declares.
        LakeError: A zone other than bronze, silver, gold or panes.
    """
    for stream in streams or ():
        if stream not in settings.streams:
            raise UnknownStreamError(stream, list(settings.streams))
    for zone in zones or ():
        if zone not in ZONES:
            msg = f"unknown table zone {zone!r}; choose bronze, silver, gold or panes"
            raise LakeError(msg)
    wanted = set(zones or ZONES)
    lake = LakeTables.from_settings(settings)
    tables: list[MaintainedTable] = []
    for stream in streams or list(settings.streams):
        if "bronze" in wanted:
            tables.append(
                MaintainedTable(
                    f"bronze_{stream}", lake.bronze(stream), "bronze", BRONZE_PARTITIONS[0]
                )
            )
        if "silver" in wanted:
            tables.append(
                MaintainedTable(
                    f"silver_{stream}",
                    lake.silver(stream),
                    "silver",
                    SILVER_PARTITIONS[0],
                    SILVER_ZORDER,
                )
            )
        if "gold" in wanted:
            tables.extend(
                MaintainedTable(
                    f"gold_{stream}_{window.name}",
                    lake.gold(stream, window.name),
                    "gold",
                    GOLD_PARTITIONS[0],
                )
                for window in settings.stream.windows
            )
            tables.append(
                MaintainedTable(
                    f"gold_{stream}_scores",
                    lake.scores(stream),
                    "gold",
                    "window_date",
                    SCORES_ZORDER,
                    SCORES_FILE_BYTES,
                )
            )
            tables.append(
                MaintainedTable(
                    f"gold_{stream}_forecast_errors",
                    lake.forecast_errors(stream),
                    "gold",
                    "window_date",
                )
            )
        if "panes" in wanted:  # the job's state: pane partials and batch statistics
            tables.append(
                MaintainedTable(f"panes_{stream}", lake.panes(stream), "panes", PANE_PARTITIONS[0])
            )
            tables.append(
                MaintainedTable(f"batches_{stream}", lake.batches(stream), "panes", "batch_date")
            )
    return tables


def _date_range(column: str, since: date | None, until: date | None) -> str | None:
    """A partition predicate on ``column`` (inclusive), or None for the whole table."""
    terms = []
    if since is not None:
        terms.append(f"{column} >= DATE'{since.isoformat()}'")
    if until is not None:
        terms.append(f"{column} <= DATE'{until.isoformat()}'")
    return " AND ".join(terms) or None


def _conflicts() -> tuple[type[Exception], ...]:
    from delta.exceptions import (
        ConcurrentAppendException,
        ConcurrentDeleteDeleteException,
        ConcurrentDeleteReadException,
        ConcurrentTransactionException,
        ConcurrentWriteException,
        DeltaConcurrentModificationException,
        MetadataChangedException,
        ProtocolChangedException,
    )

    return (
        ConcurrentAppendException,
        ConcurrentDeleteDeleteException,
        ConcurrentDeleteReadException,
        ConcurrentTransactionException,
        ConcurrentWriteException,
        DeltaConcurrentModificationException,
        MetadataChangedException,
        ProtocolChangedException,
    )


def _existing(
    spark: SparkSession, tables: list[MaintainedTable]
) -> Iterator[tuple[MaintainedTable, DeltaTable]]:
    from delta.tables import DeltaTable

    for table in tables:
        if DeltaTable.isDeltaTable(spark, table.uri):
            yield table, DeltaTable.forPath(spark, table.uri)
        else:
            _absent(table)


def _absent(table: MaintainedTable) -> None:
    log.info("%s: no Delta table at %s yet, skipped", table.name, table.uri)


def _detail(delta: DeltaTable) -> dict[str, Any]:
    row = delta.detail().first()
    return row.asDict() if row is not None else {}


def optimize(
    spark: SparkSession | None,
    settings: Settings,
    *,
    streams: Sequence[str] | None = None,
    zones: Sequence[str] | None = None,
    since: date | None = None,
    until: date | None = None,
    zorder: bool = True,
    progress: Progress | None = None,
) -> list[OptimizeResult]:
    """Compact every existing table of ``streams`` and ``zones``; Z-order silver and scores.

    In an encrypted lake, gold and panes are compacted without Spark and not
    Z-ordered (see :func:`_optimize_encrypted`).

    Args:
        spark: A SparkSession with Delta (see :func:`pulsecast.stream.session.spark_session`);
            None when every table chosen is one of an encrypted lake's gold and panes.
        settings: The lake's settings.
        streams: Streams to maintain; default every configured stream.
        zones: ``bronze``, ``silver``, ``gold``, ``panes``; default all.
        since: Only partitions of this date or later (the table's date column).
        until: Only partitions of this date or earlier.
        zorder: Z-order silver and scores (False: bin-packing compaction only).
        progress: Called with one line before each table.

    Returns:
        One result per table optimized (tables not created yet are skipped).

    Raises:
        LakeError: ``since`` is after ``until``, or a bad zone.
        UnknownStreamError: A stream no configuration declares.
        MaintenanceConflictError: A concurrent writer changed the files being rewritten.
        ValueError: ``spark`` is None and a table chosen needs it.
    """
    if since is not None and until is not None and since > until:
        msg = f"--since {since.isoformat()} is after --until {until.isoformat()}"
        raise LakeError(msg)
    results: list[OptimizeResult] = []
    tables = maintained_tables(settings, streams=streams, zones=zones)
    crypto = (
        LakeCrypto.from_settings(settings)
        if any(t.zone in _DELTA_RS_ZONES for t in tables)
        else None
    )
    on_spark = [t for t in tables if crypto is None or t.zone not in _DELTA_RS_ZONES]
    if spark is None and on_spark:
        msg = f"optimizing {', '.join(t.name for t in on_spark)} needs a SparkSession"
        raise ValueError(msg)
    for table in tables:
        if crypto is not None and table.zone in _DELTA_RS_ZONES:
            result = _optimize_encrypted(
                table, settings, crypto, since=since, until=until, zorder=zorder, progress=progress
            )
        else:
            assert spark is not None  # noqa: S101 (checked above)
            result = _optimize_on_spark(
                spark, table, settings, since=since, until=until, zorder=zorder, progress=progress
            )
        if result is None:
            continue
        log.info(
            "optimized %s: %s files -> %s (%s removed, %s added) in %.1f s",
            table.name,
            result.files_before,
            result.files_after,
            result.files_removed,
            result.files_added,
            result.seconds,
        )
        results.append(result)
    return results


def _optimize_on_spark(
    spark: SparkSession,
    table: MaintainedTable,
    settings: Settings,
    *,
    since: date | None,
    until: date | None,
    zorder: bool,
    progress: Progress | None,
) -> OptimizeResult | None:
    """Delta's OPTIMIZE of one table (None: the table does not exist yet)."""
    delta = next((d for _, d in _existing(spark, [table])), None)
    if delta is None:
        return None
    columns = table.zorder if zorder else ()
    predicate = _date_range(table.date_column, since, until)
    if progress is not None:
        how = f"Z-order by {', '.join(columns)}" if columns else "compaction"
        where = f", {predicate}" if predicate else ""
        progress(f"optimizing {table.name} ({how}{where})...")
    before = _detail(delta)
    started = time.monotonic()
    builder = delta.optimize()
    if predicate is not None:
        builder = builder.where(predicate)
    try:
        with _session_conf(spark, table.write_conf(settings)):
            frame = builder.executeZOrderBy(*columns) if columns else builder.executeCompaction()
            row = frame.first()
    except _conflicts() as exc:
        raise MaintenanceConflictError(table.name, "optimize", type(exc).__name__) from exc
    seconds = time.monotonic() - started
    metrics = row["metrics"] if row is not None else None
    after = _detail(delta)
    return OptimizeResult(
        table=table.name,
        zorder=columns,
        files_before=int(before.get("numFiles") or 0),
        files_after=int(after.get("numFiles") or 0),
        files_removed=int(metrics["numFilesRemoved"]) if metrics else 0,
        files_added=int(metrics["numFilesAdded"]) if metrics else 0,
        bytes_removed=int(metrics["filesRemoved"]["totalSize"]) if metrics else 0,
        bytes_added=int(metrics["filesAdded"]["totalSize"]) if metrics else 0,
        partitions_optimized=int(metrics["partitionsOptimized"]) if metrics else 0,
        seconds=seconds,
    )


def _optimize_encrypted(
    table: MaintainedTable,
    settings: Settings,
    crypto: LakeCrypto,
    *,
    since: date | None,
    until: date | None,
    zorder: bool,
    progress: Progress | None,
) -> OptimizeResult | None:
    """Compact one of an encrypted lake's gold and pane tables (None: it does not exist yet).

    The job commits these from its driver, encrypted by pyarrow, with the row
    count as the only statistics in their Delta logs; Spark's OPTIMIZE would
    copy min/max values into the log. They are compacted as the job compacts
    its own (:func:`pulsecast.lake.small_tables.compact`): the small files of
    each partition bin-packed into files of up to
    :meth:`MaintainedTable.max_file_bytes`, read with the lake key, written
    encrypted, committed as one rewrite without data change. No Z-order: with
    no min/max in the log there is nothing to skip files by.
    """
    from deltalake import DeltaTable
    from deltalake.exceptions import CommitFailedError, TableNotFoundError

    from pulsecast.lake import small_tables

    try:
        # Counted and planned on this one version: a commit since then that removed a
        # file being packed fails the rewrite, instead of bringing the file's rows back.
        delta = DeltaTable(table.uri)
    except TableNotFoundError:
        _absent(table)
        return None
    before = len(delta.file_uris())
    if progress is not None:
        predicate = _date_range(table.date_column, since, until)
        where = f", {predicate}" if predicate else ""
        skipped = (
            f", no Z-order by {', '.join(table.zorder)}: no statistics in an encrypted lake"
            if zorder and table.zorder
            else ""
        )
        progress(f"optimizing {table.name} (compaction, encrypted{where}{skipped})...")
    started = time.monotonic()
    try:
        metrics = small_tables.compact(
            table.uri,
            date_column=table.date_column,
            since=since,
            until=until,
            crypto=crypto,
            target_size=table.max_file_bytes(settings),
            version=delta.version(),
        )
    except CommitFailedError as exc:
        raise MaintenanceConflictError(table.name, "optimize", type(exc).__name__) from exc
    seconds = time.monotonic() - started
    removed, added = json.loads(metrics["filesRemoved"]), json.loads(metrics["filesAdded"])
    return OptimizeResult(
        table=table.name,
        zorder=(),
        files_before=before,
        files_after=len(DeltaTable(table.uri).file_uris()),
        files_removed=int(metrics["numFilesRemoved"]),
        files_added=int(metrics["numFilesAdded"]),
        bytes_removed=int(removed["totalSize"]),
        bytes_added=int(added["totalSize"]),
        partitions_optimized=int(metrics["partitionsOptimized"]),
        seconds=seconds,
    )


def retention_hours(value: str | None) -> float:
    """Hours in a Delta interval property such as ``interval 7 days``; unset: Delta's default.

    >>> retention_hours("interval 7 days"), retention_hours("interval 1 day 12 hours")
    (168.0, 36.0)
    >>> retention_hours(None)
    168.0

    Raises:
        ValueError: The text is not an interval of weeks, days, hours, minutes,
            seconds or milliseconds.
    """
    if value is None or not value.strip():
        return DEFAULT_RETENTION_HOURS
    words = value.lower().split()
    if words and words[0] == "interval":
        words = words[1:]
    if not words or len(words) % 2:
        msg = f"expected an interval such as 'interval 7 days', got {value!r}"
        raise ValueError(msg)
    hours = 0.0
    for number, unit in zip(words[::2], words[1::2], strict=True):
        per_unit = _HOURS_PER_UNIT.get(unit.removesuffix("s"))
        if per_unit is None or not re.fullmatch(r"\d+(\.\d+)?", number):
            msg = f"expected an interval such as 'interval 7 days', got {value!r}"
            raise ValueError(msg)
        hours += float(number) * per_unit
    return hours


def _minimum_hours(table: MaintainedTable, detail: dict[str, Any]) -> float:
    properties = detail.get("properties") or {}
    try:
        return retention_hours(properties.get(_RETENTION_PROPERTY))
    except ValueError as exc:
        msg = f"{table.name}: cannot read {_RETENTION_PROPERTY}: {exc}"
        raise LakeError(msg) from exc


@contextmanager
def _session_conf(spark: SparkSession, values: dict[str, str]) -> Iterator[None]:
    """Set Spark SQL configuration for the duration of a block, then restore it."""
    old = {key: spark.conf.get(key, None) for key in values}
    for key, value in values.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, previous in old.items():
            if previous is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, previous)


def _sql_path(uri: str) -> str:
    return "delta.`" + uri.replace("`", "``") + "`"


def _file_sizes(spark: SparkSession, paths: list[str]) -> int:
    """Total size of ``paths`` through Hadoop's file system (any scheme Spark reads)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # noqa: S101 (a live session has a JVM)
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    total = 0
    for text in paths:
        path = jvm.org.apache.hadoop.fs.Path(text)
        try:
            total += int(path.getFileSystem(conf).getFileStatus(path).getLen())
        except Exception:  # deleted meanwhile: nothing left to count
            log.debug("cannot stat %s", text)
    return total


def _vacuum_metrics(delta: DeltaTable, after_version: int) -> tuple[int | None, int | None]:
    """Files deleted and their size, from the VACUUM START/END commits Delta logged."""
    rows = delta.history(50).select("version", "operation", "operationMetrics").collect()
    files: int | None = None
    size: int | None = None
    for row in rows:  # newest first
        if row["version"] <= after_version:
            break
        metrics = row["operationMetrics"] or {}
        if row["operation"] == "VACUUM END" and files is None:
            files = int(metrics.get("numDeletedFiles", 0))
        elif row["operation"] == "VACUUM START" and size is None:
            size = int(metrics.get("sizeOfDataToDelete", 0))
            if files is None:
                files = int(metrics.get("numFilesToDelete", 0))
    return files, size


def vacuum(
    spark: SparkSession,
    settings: Settings,
    *,
    streams: Sequence[str] | None = None,
    zones: Sequence[str] | None = None,
    retain_hours: float | None = None,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> list[VacuumResult]:
    """Delete the files each table stopped using more than ``retain_hours`` ago.

    Files an ``optimize`` replaced, or that a failed write left behind, stay on
    storage for time travel and for readers still using an older version; a
    vacuum deletes those older than the retention. A retention below a table's
    ``delta.deletedFileRetentionDuration`` (Delta's default: 168 h) is refused
    unless ``force``; a dry run is always allowed.

    Args:
        spark: A SparkSession with Delta.
        settings: The lake's settings (``lake.vacuum_retain_hours``).
        streams: Streams to vacuum; default every configured stream.
        zones: ``bronze``, ``silver``, ``gold``, ``panes``; default all.
        retain_hours: Retention; default ``lake.vacuum_retain_hours``.
        dry_run: List what would be deleted, delete nothing.
        force: Allow a retention below the tables' minimum.
        progress: Called with one line before each table.

    Returns:
        One result per existing table.

    Raises:
        UnsafeRetentionError: The retention is below a table's minimum, without ``force``
            (checked for every table before any is vacuumed).
        UnknownStreamError: A stream no configuration declares.
        LakeError: A bad zone, or a table's retention property cannot be read.
    """
    hours = float(settings.lake.vacuum_retain_hours if retain_hours is None else retain_hours)
    if hours < 0:
        msg = f"--retain-hours must be 0 or more, got {hours:g}"
        raise LakeError(msg)
    targets = [
        (table, delta, _detail(delta))
        for table, delta in _existing(
            spark, maintained_tables(settings, streams=streams, zones=zones)
        )
    ]
    minimums = {table.name: _minimum_hours(table, detail) for table, _, detail in targets}
    if not dry_run and not force:
        for table, _, _ in targets:
            if hours < minimums[table.name]:
                raise UnsafeRetentionError(table.name, hours, minimums[table.name])
    results: list[VacuumResult] = []
    # Delta refuses a short retention itself; past the checks above (dry run or
    # --force) its check is lifted for this call only. Logging the vacuum in the
    # table's history is what gives the counts of a real run.
    conf = {_CHECK_CONF: "false", _VACUUM_LOGGING_CONF: "true"}
    if _LISTING_CONF not in settings.spark.conf:
        # Vacuum lists the table's folders in this many Spark tasks (default
        # 10,000: minutes of empty tasks on a small machine); size it to the cores.
        conf[_LISTING_CONF] = str(4 * spark.sparkContext.defaultParallelism)
    with _session_conf(spark, conf):
        for table, delta, detail in targets:
            if progress is not None:
                verb = "listing" if dry_run else "vacuuming"
                progress(f"{verb} {table.name} (files unused for more than {hours:g} h)...")
            started = time.monotonic()
            statement = f"VACUUM {_sql_path(table.uri)} RETAIN {hours:g} HOURS"
            if dry_run:
                found = [r["path"] for r in spark.sql(statement + " DRY RUN").collect()]
                root = str(detail.get("location") or table.uri).rstrip("/") + "/"
                paths = tuple(sorted(p.removeprefix(root) for p in found))
                result = VacuumResult(
                    table=table.name,
                    retain_hours=hours,
                    minimum_hours=minimums[table.name],
                    dry_run=True,
                    files=len(found),
                    bytes=_file_sizes(spark, found),
                    paths=paths,
                    seconds=time.monotonic() - started,
                )
            else:
                version = int(delta.history(1).first()["version"])  # type: ignore[index]
                spark.sql(statement).collect()
                files, size = _vacuum_metrics(delta, version)
                result = VacuumResult(
                    table=table.name,
                    retain_hours=hours,
                    minimum_hours=minimums[table.name],
                    dry_run=False,
                    files=files,
                    bytes=size,
                    seconds=time.monotonic() - started,
                )
            log.info(
                "vacuum %s%s: %s files, %s bytes",
                table.name,
                " (dry run)" if dry_run else "",
                result.files,
                result.bytes,
            )
            results.append(result)
    return results

"""Commits to the lake's small tables (pane state, gold) from the driver, through delta-rs.

A micro-batch's pane partials and gold rows are a few thousand rows at most
(keys by metrics by windows the batch touched), already in the driver as Arrow.
Delta on Spark spends seconds of small Spark jobs on every commit of such a
table (a MERGE is 12 Spark jobs, about 3 s on 2 cores); delta-rs commits the
same rows in 10 to 20 ms (``benchmarks/delta_commit_costs.py``). The tables
stay ordinary Delta tables that Spark and DuckDB read, and the Delta
protocol's optimistic concurrency applies between the two writers
(``pulsecast lake optimize`` runs on Spark; in an encrypted lake it packs
these tables with :func:`compact`, as the job does). Rows are replaced by predicate
(one commit that removes what matches and adds the new rows), the way Spark's
``replaceWhere`` does.

When the lake is encrypted, callers pass its
:class:`~pulsecast.security.lake_crypto.LakeCrypto` (``crypto``): delta-rs
cannot write or read encrypted Parquet, so the rows go through
:mod:`pulsecast.lake.encrypted` (pyarrow writes the files encrypted, delta-rs
commits them). Without it, nothing changes.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import CommitProperties

    from pulsecast.security.lake_crypto import LakeCrypto

__all__ = [
    "CompactedAppends",
    "append_once",
    "compact",
    "literal",
    "mark_final",
    "newest_before",
    "newest_tagged",
    "once_properties",
    "quote",
    "read_since",
    "replace",
]


log = logging.getLogger(__name__)


def literal(moment: datetime) -> str:
    """A timestamp literal for delta-rs predicates (naive = local time, as Spark's rows)."""
    return f"'{moment.astimezone(UTC).isoformat()}'"


def append_once(
    uri: str, rows: pa.Table, app_id: str, version: int, *, crypto: LakeCrypto | None = None
) -> bool:
    """Append ``rows`` as ``version`` of writer ``app_id``, unless the table holds it already.

    The version is recorded in the same commit (a Delta application
    transaction), so a replayed micro-batch is not appended twice; the
    commit's user metadata says ``<app_id>:<version>`` too, as the job's
    Spark appends do (:func:`newest_tagged` reads either). Only the
    transaction is checked here: a table whose earlier commits carry the tag
    alone (Spark's) needs :func:`newest_tagged` first.

    Args:
        uri: The table (it exists).
        rows: The rows, in the table's columns.
        app_id: The writer.
        version: The writer's version of these rows (its batch id).
        crypto: The lake's encryption (None: the lake is not encrypted).

    Returns:
        Whether it appended.
    """
    if crypto is not None:
        from pulsecast.lake import encrypted

        return encrypted.append_once(uri, rows, app_id, version, crypto)
    from deltalake import DeltaTable, write_deltalake

    table = DeltaTable(uri)
    done = table.transaction_version(app_id)
    if done is not None and version <= done:
        return False
    write_deltalake(
        table,
        rows,
        mode="append",
        commit_properties=once_properties(app_id, version),
    )
    return True


def once_properties(app_id: str, version: int) -> CommitProperties:
    """An :func:`append_once` commit's properties.

    Returns:
        The Delta application transaction ``(app_id, version)`` and the user
        metadata ``<app_id>:<version>``.
    """
    from deltalake import CommitProperties, Transaction

    return CommitProperties(
        app_transactions=[Transaction(app_id, version)],
        custom_metadata={"userMetadata": f"{app_id}:{version}"},
    )


def newest_tagged(uri: str, prefix: str, *, recent: int = 100) -> int | None:
    """The largest ``N`` among commits whose user metadata is ``<prefix>N``; None if none.

    Reads the newest ``recent`` commits' information (any writer's: Spark
    writes ``userMetadata`` too), and the whole history only when none of
    those carries the prefix.
    """
    from deltalake import DeltaTable

    table = DeltaTable(uri)
    for limit in (recent, None):
        commits = table.history(limit)
        found = [
            int(str(c["userMetadata"])[len(prefix) :])
            for c in commits
            if str(c.get("userMetadata") or "").startswith(prefix)
        ]
        if found:
            return max(found)
        if limit is not None and len(commits) < limit:
            break  # that was the whole history
    return None


def quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def replace(uri: str, rows: pa.Table, predicate: str, *, crypto: LakeCrypto | None = None) -> None:
    """Replace every row matching ``predicate`` with ``rows`` (which all match it), atomically.

    One commit removes the matching rows (rewriting the files that hold
    them) and adds ``rows``. (delta-rs's MERGE and UPDATE would do, but they
    write string columns as Arrow ``string_view``, which pyarrow datasets,
    and so DuckDB over them, then fail to filter.) With ``crypto``, the files
    are encrypted (:func:`pulsecast.lake.encrypted.replace`).
    """
    if crypto is not None:
        from pulsecast.lake import encrypted

        encrypted.replace(uri, rows, predicate, crypto)
        return
    from deltalake import write_deltalake

    write_deltalake(uri, rows, mode="overwrite", predicate=predicate)


def mark_final(uri: str, predicate: str, *, crypto: LakeCrypto | None = None) -> int:
    """Set ``is_final`` on the open rows matching ``predicate``; returns how many changed.

    With ``crypto``, see :func:`pulsecast.lake.encrypted.mark_final`.
    """
    if crypto is not None:
        from pulsecast.lake import encrypted

        return encrypted.mark_final(uri, predicate, crypto)
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable, QueryBuilder

    table = DeltaTable(uri)
    schema = table.to_pyarrow_dataset().schema
    where = f"({predicate})"
    opened = pa.table(
        QueryBuilder()
        .register("t", table)
        .execute(f"SELECT min(window_start) FROM t WHERE NOT is_final AND {where}")  # noqa: S608
        .read_all()
    )
    since = opened.column(0)[0].as_py()
    if since is None:
        return 0
    # Rewrite from the oldest open row on: open rows are recent, so this is a small slice.
    where += f" AND window_start >= {literal(since)}"
    rows = pa.table(
        QueryBuilder()
        .register("t", table)
        .execute(f"SELECT * FROM t WHERE {where}")  # noqa: S608
        .read_all()
    )
    changed = int(pc.sum(pc.invert(rows["is_final"])).as_py() or 0)
    final = rows.set_column(
        rows.schema.get_field_index("is_final"),
        "is_final",
        pa.array([True] * rows.num_rows, pa.bool_()),
    )
    replace(uri, final.select(schema.names).cast(schema), where)
    return changed


def read_since(
    uri: str,
    column: str,
    after: datetime | None,
    *,
    date_column: str,
    crypto: LakeCrypto | None = None,
    columns: list[str] | None = None,
    inclusive: bool = False,
) -> pa.Table:
    """The table's rows with ``column`` later than ``after`` (all rows if None).

    ``date_column`` (the partition column holding ``column``'s date) prunes
    the files read; with ``crypto`` they are decrypted. ``columns`` picks
    the columns read (None: all); with ``inclusive``, rows at ``after`` are
    read too.
    """
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    dataset = DeltaTable(uri).to_pyarrow_dataset()
    if crypto is not None:
        dataset = crypto.readable(dataset)
    if after is None:
        return dataset.to_table(columns=columns)
    instant = after.astimezone(UTC)
    since = ds.field(column) >= instant if inclusive else ds.field(column) > instant
    return dataset.to_table(
        columns=columns, filter=(ds.field(date_column) >= instant.date()) & since
    )


def newest_before(
    uri: str, column: str, *, batch_column: str, before: int, crypto: LakeCrypto | None = None
) -> datetime | None:
    """The largest ``column`` among rows whose ``batch_column`` is below ``before``; None if none.

    What ``SELECT max(column) WHERE batch_column < before`` answers, read
    with delta-rs in bounded memory. Where the Delta log keeps both
    columns' statistics, the files written wholly before ``before`` give a
    lower bound of the answer (statistics keep milliseconds), and the scan
    then opens only the files that may hold a row at or past it. Without
    such statistics (files the driver wrote in an encrypted lake, or
    columns past the ones Delta collects statistics for) it reads every
    file that may hold rows below ``before``, batch by batch.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    table = DeltaTable(uri)
    where = ds.field(batch_column) < before
    actions = pa.table(table.get_add_actions(flatten=True))
    newest, last, nulls = f"max.{column}", f"max.{batch_column}", f"null_count.{batch_column}"
    stats = {newest, last, nulls} <= set(actions.column_names)
    if stats:
        whole = pc.and_(pc.less(actions[last], before), pc.equal(actions[nulls], 0))
        bound = pc.max(actions.filter(whole)[newest]).as_py()
        if bound is not None:
            where &= ds.field(column) >= bound
    # Files that may hold rows the bound says nothing of (an empty file holds none).
    counts = (
        actions["num_records"]
        if "num_records" in actions.column_names
        else pa.nulls(actions.num_rows, pa.int64())
    )
    unknown = pc.fill_null(pc.greater(counts, 0), True)
    if stats:
        unknown = pc.and_(unknown, pc.is_null(actions[last]))
    files = pc.sum(pc.cast(unknown, pa.int64())).as_py() or 0
    if files:
        log.info("%s: %s files with no statistics of %s: reading them", uri, files, batch_column)
    dataset = table.to_pyarrow_dataset()
    if crypto is not None:
        dataset = crypto.readable(dataset)
    found = None
    for batch in dataset.to_batches(columns=[column], filter=where):
        value = pc.max(batch[column]).as_py() if batch.num_rows else None
        if value is not None and (found is None or value > found):
            found = value
    return found


def compact(
    uri: str,
    *,
    date_column: str,
    since: date | None = None,
    until: date | None = None,
    crypto: LakeCrypto | None = None,
    target_size: int | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """Bin-pack the small files of each partition dated ``since`` to ``until`` (inclusive).

    One commit removes the files packed and adds the new ones, without data
    change (readers see the same rows); the files replaced stay on storage
    until a vacuum. Without ``crypto``, delta-rs's ``optimize.compact``; with
    it, :func:`pulsecast.lake.encrypted.compact` (delta-rs would rewrite the
    files in plaintext), whose log entries keep no value statistics.

    Args:
        uri: The table (it exists).
        date_column: The date partition column ``since`` and ``until`` filter on.
        since: Only partitions of this date or later (None: no lower bound).
        until: Only partitions of this date or earlier (None: no upper bound).
        crypto: The lake's encryption (None: the lake is not encrypted).
        target_size: Largest file written, in bytes (None: delta-rs's default, 100 MiB).
        version: The version to plan from (None: the newest); a commit since
            then that removed a file being packed fails the compaction.

    Returns:
        delta-rs's optimize metrics (``numFilesRemoved``, ``numFilesAdded``,
        ``filesRemoved``, ``filesAdded``, ``partitionsOptimized``...).

    Raises:
        deltalake.exceptions.CommitFailedError: Another writer removed a file
            being packed (nothing is committed).
    """
    from deltalake import DeltaTable

    filters: list[tuple[str, str, Any]] = []
    if since is not None:
        filters.append((date_column, ">=", since.isoformat()))
    if until is not None:
        filters.append((date_column, "<=", until.isoformat()))
    if crypto is not None:
        from pulsecast.lake import encrypted

        return encrypted.compact(
            uri,
            crypto,
            partition_filters=filters,
            target_size=target_size or encrypted.TARGET_SIZE,
            version=version,
        )
    return DeltaTable(uri, version=version).optimize.compact(
        partition_filters=filters or None, target_size=target_size
    )


class CompactedAppends:
    """A table the job appends to once per batch id, compacted every ``compact_every`` appends.

    Each append adds a file; every ``compact_every`` appends the partitions of
    the oldest day appended since the last compaction and later are packed
    (:func:`compact`), so a day of batches stays a few files. A compaction
    that fails (another writer's commit in between, such as ``pulsecast lake
    optimize``) is logged and left to the next one: the rows are committed
    already, and the stream goes on. The files replaced stay on storage until
    a vacuum.

    Args:
        uri: The table (it exists).
        app_id: The writer (its application transaction).
        date_column: The date partition column of the rows.
        compact_every: Appends between two compactions.
        crypto: The lake's encryption (None: the lake is not encrypted).
        target_size: Largest file a compaction writes (None: delta-rs's default).
    """

    def __init__(
        self,
        uri: str,
        app_id: str,
        date_column: str,
        *,
        compact_every: int,
        crypto: LakeCrypto | None = None,
        target_size: int | None = None,
    ) -> None:
        self.uri = uri
        self.app_id = app_id
        self.date_column = date_column
        self.compact_every = compact_every
        self.crypto = crypto
        self.target_size = target_size
        self._appends = 0
        self._since: date | None = None

    def append(self, rows: pa.Table, version: int) -> bool:
        """Append ``rows`` as ``version`` unless the table holds it; compact now and then."""
        import pyarrow.compute as pc

        if not append_once(self.uri, rows, self.app_id, version, crypto=self.crypto):
            return False
        oldest = pc.min(rows[self.date_column]).as_py()
        if oldest is not None and (self._since is None or oldest < self._since):
            self._since = oldest
        self._appends += 1
        if self._appends >= self.compact_every and self._since is not None:
            self.compact(self._since)
            self._appends, self._since = 0, None
        return True

    def compact(self, since: date) -> bool:
        """Pack the small files of ``since`` and later days; False (logged) when it failed."""
        from deltalake.exceptions import DeltaError

        started = time.monotonic()
        try:
            result = compact(
                self.uri,
                date_column=self.date_column,
                since=since,
                crypto=self.crypto,
                target_size=self.target_size,
            )
        except (DeltaError, OSError) as exc:
            log.warning("compacting %s failed, left to the next compaction: %s", self.uri, exc)
            return False
        log.info(
            "compacted %s since %s: %s files into %s in %.3f s",
            self.uri,
            since.isoformat(),
            result.get("numFilesRemoved"),
            result.get("numFilesAdded"),
            time.monotonic() - started,
        )
        return True

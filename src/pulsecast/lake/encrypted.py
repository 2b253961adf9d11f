"""Encrypted commits to the lake's small tables: pyarrow writes the files, delta-rs commits them.

When the lake is encrypted (``security.encrypt_lake``), :mod:`pulsecast.lake.small_tables`
routes here every write and read of the tables the job commits from the driver
(gold, pane state, scores, forecast errors, batch statistics), because delta-rs
can neither write nor read Parquet modular encryption. The rows are written
by ``pyarrow.dataset.write_dataset`` as Spark would write them (the same key
scheme: :class:`~pulsecast.security.lake_crypto.LakeCrypto`), into the
table's Hive partition folders, and committed with delta-rs's transaction API:
add actions (and remove actions, in the same commit, for a replace or a
compaction), the writer's application transaction included. The add actions
carry the row count only (no min/max, see :func:`_stats`): no data value
reaches the Delta log in plaintext but the partition values.

Predicates are SQL (the same text delta-rs takes on the plaintext path),
evaluated by DuckDB over the decrypted rows of the files delta-rs's log says
they may touch.
"""

from __future__ import annotations

import json
import posixpath
import time
import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds
    from deltalake import DeltaTable
    from deltalake.transaction import AddAction, RemoveAction

    from pulsecast.security.lake_crypto import LakeCrypto

__all__ = ["TARGET_SIZE", "append_once", "compact", "mark_final", "replace"]

#: Partition value pyarrow's Hive partitioning writes for null (Delta's null partition).
_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
_FILE = "__pulsecast_file"
_ROW = "__pulsecast_row"


def append_once(uri: str, rows: pa.Table, app_id: str, version: int, crypto: LakeCrypto) -> bool:
    """See :func:`pulsecast.lake.small_tables.append_once`; the files encrypted."""
    from deltalake import DeltaTable

    from pulsecast.lake.small_tables import once_properties

    table = DeltaTable(uri)
    done = table.transaction_version(app_id)
    if done is not None and version <= done:
        return False
    table.create_write_transaction(
        [*_write(table, _schema(table), rows, crypto)],
        mode="append",
        schema=table.schema(),
        partition_by=table.metadata().partition_columns,
        commit_properties=once_properties(app_id, version),
    )
    return True


def replace(uri: str, rows: pa.Table, predicate: str, crypto: LakeCrypto) -> None:
    """See :func:`pulsecast.lake.small_tables.replace`; the files encrypted.

    The files the log says may hold matching rows are read (decrypted); those
    that do are removed, and their other rows written again with ``rows``, in
    one commit.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    table = DeltaTable(uri)
    existing, hit, schema = _matching(table, predicate, crypto)
    touched = _files_where(existing, hit)
    keep = existing.filter(pc.and_(pc.is_in(existing[_FILE], value_set=touched), pc.invert(hit)))
    written = pa.concat_tables([keep.select(schema.names), _conform(rows, schema)])
    if len(touched) == 0 and written.num_rows == 0:
        return
    adds = _write(table, schema, written, crypto) if written.num_rows else []
    _commit(table, adds, _removes(table, set(touched.to_pylist()), data_change=True))


def mark_final(uri: str, predicate: str, crypto: LakeCrypto) -> int:
    """See :func:`pulsecast.lake.small_tables.mark_final`; the files encrypted.

    Reads the files the log says may hold matching rows once (decrypted), and
    rewrites, in one commit, only those holding open rows that match.
    """
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    table = DeltaTable(uri)
    existing, hit, schema = _matching(table, predicate, crypto)
    opened = pc.and_(hit, pc.invert(pc.fill_null(existing["is_final"], False)))
    changed = int(pc.sum(opened).as_py() or 0)
    if changed == 0:
        return 0
    touched = _files_where(existing, opened)
    selected = pc.is_in(existing[_FILE], value_set=touched)
    rows = existing.filter(selected)
    final = pc.or_(pc.fill_null(rows["is_final"], False), hit.filter(selected))
    rows = rows.set_column(rows.schema.get_field_index("is_final"), "is_final", final)
    adds = _write(table, schema, rows.select(schema.names), crypto)
    _commit(table, adds, _removes(table, set(touched.to_pylist()), data_change=True))
    return changed


#: Largest file a compaction packs into (delta-rs's ``optimize.compact`` default).
TARGET_SIZE = 100 << 20


def compact(
    uri: str,
    crypto: LakeCrypto,
    *,
    partition_filters: list[tuple[str, str, Any]] | None = None,
    target_size: int = TARGET_SIZE,
    version: int | None = None,
) -> dict[str, Any]:
    """Bin-pack each matching partition's files smaller than ``target_size`` (encrypted).

    Planned as delta-rs's ``optimize.compact`` plans it: within a partition,
    the files smaller than ``target_size``, largest first, each go into the
    first bin they fit in (``target_size`` bytes at most), and each bin of two
    files or more is read (decrypted) and written again as one encrypted file,
    one bin at a time (memory holds one bin's rows). One commit removes the
    packed files and adds the new ones, both without data change (readers,
    streaming ones included, see the same rows), with the row count as the
    only statistics (:func:`_stats`). The files replaced stay on storage
    until a vacuum.

    Args:
        uri: The table.
        crypto: The lake's encryption.
        partition_filters: delta-rs partition filters (``[("day", ">=", "2026-05-01")]``,
            all of them hold); None: every partition.
        target_size: Largest file written, in bytes (before compression changes).
        version: The table's version to plan from (None: the newest); a commit
            since then that removed a file being packed fails the compaction.

    Returns:
        delta-rs's metrics: ``numFilesRemoved``, ``numFilesAdded``, ``filesRemoved``
        and ``filesAdded`` (JSON text with ``totalFiles`` and ``totalSize``),
        ``partitionsOptimized``, ``totalConsideredFiles`` and ``totalFilesSkipped``.

    Raises:
        deltalake.exceptions.CommitFailedError: Another writer removed a file
            being packed since ``version`` (nothing is committed; the files
            written are left to a vacuum).
    """
    import pyarrow as pa
    from deltalake import DeltaTable

    table = DeltaTable(uri, version=version)
    considered = _relative(table, table.file_uris(file_pruning_predicate=partition_filters or None))
    actions = pa.table(table.get_add_actions(flatten=True))
    sizes: dict[str, int] = {}
    partitions: dict[tuple[tuple[str, str | None], ...], list[tuple[int, str]]] = {}
    for path, size, values in zip(
        actions["path"].to_pylist(),
        actions["size_bytes"].to_pylist(),
        _partition_strings(actions, table.metadata().partition_columns),
        strict=True,
    ):
        relative = unquote(path)
        if relative in considered and size < target_size:
            sizes[relative] = size
            partitions.setdefault(tuple(sorted(values.items())), []).append((size, relative))
    plan = {part: _bins(files, target_size) for part, files in partitions.items()}
    bins = [files for part_bins in plan.values() for files in part_bins]
    adds: list[AddAction] = []
    if bins:
        plain = table.to_pyarrow_dataset()
        schema = pa.schema(plain.schema)
        for files in bins:
            rows = _read(plain, set(files), crypto)
            adds.extend(_write(table, schema, rows, crypto, data_change=False))
        packed = {path for files in bins for path in files}
        _commit(table, adds, _removes(table, packed, data_change=False))
    removed = [sizes[path] for files in bins for path in files]
    return {
        "numFilesAdded": len(adds),
        "numFilesRemoved": len(removed),
        "filesAdded": _size_metrics([a.size for a in adds]),
        "filesRemoved": _size_metrics(removed),
        "partitionsOptimized": sum(1 for part_bins in plan.values() if part_bins),
        "totalConsideredFiles": len(considered),
        "totalFilesSkipped": len(considered) - len(removed),
    }


def _bins(files: list[tuple[int, str]], target_size: int) -> list[list[str]]:
    """Paths of ``(size, path)`` files in bins of at most ``target_size`` bytes, first fit.

    Largest first, as delta-rs plans a compaction; bins of one file are dropped
    (rewriting a file alone packs nothing).

    >>> _bins([(4, "a"), (3, "b"), (2, "c"), (6, "d")], 7)
    [['a', 'b']]
    """
    totals: list[int] = []
    bins: list[list[str]] = []
    for size, path in sorted(files, reverse=True):
        fit = next((i for i, total in enumerate(totals) if total + size <= target_size), None)
        if fit is None:
            totals.append(size)
            bins.append([path])
        else:
            totals[fit] += size
            bins[fit].append(path)
    return [paths for paths in bins if len(paths) > 1]


def _size_metrics(sizes: list[int]) -> str:
    """delta-rs's file metrics of an optimize (JSON text) for files of ``sizes`` bytes."""
    return json.dumps(
        {
            "avg": sum(sizes) / len(sizes) if sizes else 0.0,
            "max": max(sizes, default=0),
            "min": min(sizes, default=0),
            "totalFiles": len(sizes),
            "totalSize": sum(sizes),
        }
    )


# -- files ------------------------------------------------------------------------------------


def _matching(
    table: DeltaTable, predicate: str, crypto: LakeCrypto
) -> tuple[pa.Table, pa.ChunkedArray, pa.Schema]:
    """The rows of the files ``predicate`` may touch, which of them match, and the schema.

    The rows (decrypted) carry their file's name in ``__pulsecast_file``; the
    match is evaluated by DuckDB (a null is no match, as delta-rs takes it).
    """
    import numpy as np
    import pyarrow as pa

    plain = table.to_pyarrow_dataset()
    schema = pa.schema(plain.schema)
    existing = _read(plain, _pruned(table, predicate), crypto)
    mask = np.zeros(existing.num_rows, dtype=bool)
    if existing.num_rows:
        con = _duckdb()
        con.register("t", existing)
        hits = con.sql(
            f"SELECT {_ROW} FROM t WHERE coalesce(({predicate}), FALSE)"  # noqa: S608
        ).to_arrow_table()
        mask[hits[_ROW].to_numpy()] = True
    return existing, pa.chunked_array([mask]), schema


def _files_where(rows: pa.Table, where: pa.ChunkedArray) -> pa.Array:
    """The distinct paths of the files holding the rows ``where`` marks."""
    import pyarrow.compute as pc

    return pc.unique(rows[_FILE].filter(where))


def _duckdb() -> Any:
    import duckdb

    con = duckdb.connect()
    # A timestamp literal without an offset is UTC, as for delta-rs (ours carry one).
    con.execute("SET TimeZone = 'UTC'")
    return con


def _schema(table: DeltaTable) -> pa.Schema:
    """The table's Arrow schema, partition columns included, as its pyarrow dataset reads it."""
    import pyarrow as pa

    return pa.schema(table.to_pyarrow_dataset().schema)


def _conform(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """``rows`` in the table's column order and types (what delta-rs's writer does)."""
    return rows.select(schema.names).cast(schema)


def _pruned(table: DeltaTable, predicate: str | list[tuple[str, str, Any]]) -> set[str] | None:
    """Paths of the files that may hold rows matching ``predicate`` (None: all of them).

    ``predicate`` is SQL, or delta-rs partition filters.
    """
    from deltalake.exceptions import DeltaError

    try:
        uris = table.file_uris(file_pruning_predicate=predicate)
    except DeltaError:  # a predicate delta-rs cannot prune by: read every file
        return None
    return _relative(table, uris)


def _relative(table: DeltaTable, uris: list[str]) -> set[str]:
    """The table's files at ``uris`` (from ``file_uris``), as paths relative to the table.

    Files are known by those paths (as the log and the dataset's fragments
    give them, unquoted), not by name: one pyarrow write names its files in
    each partition alike.
    """
    import pyarrow as pa

    by_name: dict[str, list[str]] = {}
    for path in pa.table(table.get_add_actions(flatten=True))["path"].to_pylist():
        relative = unquote(path)
        by_name.setdefault(posixpath.basename(relative), []).append(relative)
    found: set[str] = set()
    for uri in uris:
        full = unquote(uri)
        found.update(p for p in by_name.get(posixpath.basename(full), ()) if full.endswith("/" + p))
    return found


def _read(plain: ds.Dataset, paths: set[str] | None, crypto: LakeCrypto) -> pa.Table:
    """The decrypted rows of the files at ``paths`` (all if None), with file and row numbers.

    ``__pulsecast_file`` holds the file's path (relative to the table) and
    ``__pulsecast_row`` the row's position in the result.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as pads

    fragments = [f for f in plain.get_fragments() if paths is None or unquote(f.path) in paths]
    schema = plain.schema
    if not fragments:
        return pa.schema([*schema, (_FILE, pa.string()), (_ROW, pa.int64())]).empty_table()
    subset = pads.FileSystemDataset(fragments, schema, plain.format, plain.filesystem)
    # One threaded scan; each batch tells its file (a scan per fragment is 3-5 times slower).
    batches, files = [], []
    for tagged in crypto.readable(subset).scanner().scan_batches():
        batch = tagged.record_batch
        batches.append(batch)
        path = unquote(tagged.fragment.path)
        files.append(pa.repeat(pa.scalar(path), batch.num_rows))
    rows = pa.Table.from_batches(batches, schema).append_column(
        _FILE, pa.chunked_array(files, pa.string())
    )
    return rows.append_column(_ROW, pa.array(np.arange(rows.num_rows, dtype=np.int64)))


def _write(
    table: DeltaTable,
    schema: pa.Schema,
    rows: pa.Table,
    crypto: LakeCrypto,
    *,
    data_change: bool = True,
) -> list[AddAction]:
    """Write ``rows`` encrypted into the table's partition folders, one file per partition.

    ``rows`` are cast to ``schema`` (the table's, partition columns included) first.

    Returns:
        The files' add actions (not committed).
    """
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.fs as pa_fs
    from deltalake.fs import DeltaStorageHandler
    from deltalake.transaction import AddAction

    rows = _conform(rows, schema)
    partitions = list(table.metadata().partition_columns)
    fmt = pads.ParquetFileFormat()
    options = fmt.make_write_options(compression="snappy", encryption_config=crypto.write_config())
    written: list[Any] = []
    pads.write_dataset(
        rows,
        base_dir="",
        filesystem=pa_fs.PyFileSystem(DeltaStorageHandler(table.table_uri)),
        format=fmt,
        file_options=options,
        partitioning=(
            pads.partitioning(pa.schema([schema.field(c) for c in partitions]), flavor="hive")
            if partitions
            else None
        ),
        basename_template=f"part-{{i}}-{uuid.uuid4()}-c000.snappy.parquet",
        existing_data_behavior="overwrite_or_ignore",
        file_visitor=written.append,
    )
    now = round(time.time() * 1000)
    return [
        AddAction(
            path=f.path.lstrip("/"),
            size=f.size,
            partition_values=_values_of(f.path),
            modification_time=now,
            data_change=data_change,
            stats=_stats(f.metadata),
        )
        for f in written
    ]


def _values_of(path: str) -> dict[str, str | None]:
    """Partition values of a Hive-style relative path (``a=1/b=x/part-….parquet``)."""
    values: dict[str, str | None] = {}
    for segment in path.strip("/").split("/")[:-1]:
        name, _, value = segment.partition("=")
        text = unquote(value)
        values[unquote(name)] = None if text == _NULL_PARTITION else text
    return values


def _stats(metadata: Any) -> str:
    """Delta statistics of a written file: its row count only.

    No min/max, not even of :data:`~pulsecast.security.lake_crypto.STATS_COLUMNS`:
    delta-rs (1.6) turns each column a file's statistics leave out into
    ``column >= null`` in its pyarrow fragment's expression, so any filter
    on such a column (DuckDB pushes them down) would skip the file.
    """
    return json.dumps({"numRecords": metadata.num_rows})


def _partition_string(value: object) -> str | None:
    """A partition value as the Delta log writes it (the lake's are dates and integers)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value.isoformat() if isinstance(value, date) else str(value)


def _partition_strings(actions: pa.Table, partitions: list[str]) -> list[dict[str, str | None]]:
    """Each add action's partition values as the log's strings (per file, not per row)."""
    columns = {c: actions[f"partition.{c}"].to_pylist() for c in partitions}
    return [
        {c: _partition_string(values[i]) for c, values in columns.items()}
        for i in range(actions.num_rows)
    ]


def _removes(table: DeltaTable, paths: set[str], *, data_change: bool) -> list[RemoveAction]:
    """Remove actions of the table's files at ``paths`` (relative to the table)."""
    import pyarrow as pa
    from deltalake.transaction import RemoveAction

    if not paths:
        return []
    actions = pa.table(table.get_add_actions(flatten=True))
    now = round(time.time() * 1000)
    return [
        RemoveAction(path, data_change, now, size, values)
        for path, size, values in zip(
            actions["path"].to_pylist(),
            actions["size_bytes"].to_pylist(),
            _partition_strings(actions, table.metadata().partition_columns),
            strict=True,
        )
        if unquote(path) in paths
    ]


def _commit(table: DeltaTable, adds: list[AddAction], removes: list[RemoveAction]) -> None:
    """Commit ``adds`` and ``removes`` as one Delta commit."""
    table.create_write_transaction(
        [*removes, *adds],
        mode="append",
        schema=table.schema(),
        partition_by=table.metadata().partition_columns,
    )

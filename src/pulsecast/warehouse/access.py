"""Who connects to the warehouse, with which password, over what: the one place DSNs are built.

Three roles: ``admin`` (the server's owner, ``postgres.user``: runs the
migrations and the launcher's own probes), ``writer`` (``pulsecast_writer``:
the job's loaders, insert/update/delete on the schema's tables) and
``analyst`` (``pulsecast_analyst``: read-only). Every client of PostgreSQL in
pulsecast gets its connection from :func:`connect` (or its string from
:func:`conninfo`).

With ``security.enabled`` the embedded server only takes TLS connections
authenticated by SCRAM-SHA-256, so clients connect with
``sslmode=verify-full`` (``security.postgres_sslmode``) against the local CA's
trust bundle, as their own role with its password. The passwords are made
once, at random, into ``0600`` files under ``<security dir>/postgres/``, and
the server is only ever given their SCRAM verifiers (:func:`scram_verifier`),
never the passwords. Security off, every role connects as ``postgres.user``
without a password, as before; with ``postgres.dsn`` set, that DSN is used as
is for every role.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pulsecast.security import security_dir
from pulsecast.security.tls import truststore

if TYPE_CHECKING:
    import psycopg

    from pulsecast.config import Settings

__all__ = [
    "ANALYST_ROLE",
    "ROLES",
    "WRITER_ROLE",
    "Role",
    "connect",
    "conninfo",
    "password_file",
    "role_password",
    "role_user",
    "scram_verifier",
]

Role = Literal["admin", "writer", "analyst"]
ROLES: tuple[Role, ...] = ("admin", "writer", "analyst")
WRITER_ROLE = "pulsecast_writer"
ANALYST_ROLE = "pulsecast_analyst"

_SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)


def role_user(settings: Settings, role: Role) -> str:
    """The PostgreSQL user name of ``role``."""
    if role == "admin":
        return settings.postgres.user
    return WRITER_ROLE if role == "writer" else ANALYST_ROLE


def password_file(settings: Settings, role: Role) -> Path:
    """The ``0600`` file of ``role``'s password: ``<security dir>/postgres/<role>.password``."""
    return security_dir(settings) / "postgres" / f"{role}.password"


def role_password(settings: Settings, role: Role) -> str:
    """``role``'s password, made at random (and kept) on first use.

    The file is created exclusively with mode ``0600``: two processes asking at
    once agree on one password.
    """
    path = password_file(settings, role)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.parent.chmod(0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32))
                fh.flush()
                os.fsync(fh.fileno())
    return path.read_text().strip()


def scram_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS
) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802, RFC 7677).

    Handing the server this instead of the password (``ALTER ROLE ... PASSWORD
    'SCRAM-SHA-256$...'``) means the password itself never reaches it, nor its
    logs. The passwords pulsecast makes are ASCII, for which SASLprep changes
    nothing.
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def conninfo(settings: Settings, *, role: Role = "writer", dbname: str | None = None) -> str:
    """The libpq connection string of ``role`` (contains its password in secure mode).

    Args:
        settings: The platform's settings.
        role: Who connects.
        dbname: The database; default ``postgres.database``.

    Raises:
        CertificateError: Security is on and there is no trust bundle yet.
    """
    from psycopg.conninfo import make_conninfo

    pg = settings.postgres
    if pg.dsn is not None:
        return pg.conninfo()
    params: dict[str, Any] = {
        "host": pg.host,
        "port": pg.port,
        "dbname": dbname or pg.database,
        # Security off the roles cannot log in (NOLOGIN): everyone is the owner, as before.
        "user": role_user(settings, role) if settings.security.enabled else pg.user,
    }
    if settings.security.enabled:
        params.update(
            sslmode=settings.security.postgres_sslmode,
            sslrootcert=str(truststore(settings)),
            password=role_password(settings, role),
        )
    return make_conninfo(**params)


def connect(
    settings: Settings,
    *,
    role: Role = "writer",
    dbname: str | None = None,
    connect_timeout: float = 10,
    autocommit: bool = False,
) -> psycopg.Connection[Any]:
    """A new connection as ``role`` (see :func:`conninfo`).

    Raises:
        psycopg.OperationalError: The server cannot be reached or refused the role.
        CertificateError: Security is on and there is no trust bundle yet.
    """
    import psycopg

    return psycopg.connect(
        conninfo(settings, role=role, dbname=dbname),
        connect_timeout=int(connect_timeout),
        autocommit=autocommit,
    )

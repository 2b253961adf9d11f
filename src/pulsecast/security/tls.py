"""TLS for PostgreSQL and HTTP: where the local CA's files are, and how clients verify them.

Servers (PostgreSQL, the HTTP ingest, the dashboard) present the leaf
certificates :mod:`pulsecast.security.certs` issues (``servers/<name>/``);
clients verify them against the trust bundle ``truststore.pem`` (the CA, and
the previous CA during a rollover). :func:`http_verify` is what every httpx
call of the project passes as ``verify``; :func:`uvicorn_tls` is what an HTTP
server passes to uvicorn. Needs nothing beyond the standard library.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pulsecast.security._files import security_dir
from pulsecast.security.certs import leaf_dir
from pulsecast.security.errors import CertificateError

if TYPE_CHECKING:
    from pulsecast.config import Settings

__all__ = [
    "HttpServer",
    "ServerFiles",
    "http_verify",
    "server_files",
    "truststore",
    "uvicorn_options",
    "uvicorn_tls",
]

HttpServer = Literal["ingest", "dashboard"]


@dataclass(frozen=True)
class ServerFiles:
    """One server's certificate files (PEM)."""

    cert: Path
    chain: Path
    key: Path


def _missing(path: Path) -> CertificateError:
    msg = f"{path} is missing; run `pulsecast security init`"
    return CertificateError(msg)


def truststore(settings: Settings) -> Path:
    """The CA bundle clients verify servers against (``<security dir>/truststore.pem``).

    Raises:
        CertificateError: There is none yet.
    """
    path = security_dir(settings) / "truststore.pem"
    if not path.is_file():
        raise _missing(path)
    return path


def server_files(settings: Settings, name: str) -> ServerFiles:
    """The certificate, chain and key of server ``name`` (``postgres``, ``ingest``...).

    Raises:
        CertificateError: They are missing.
    """
    folder = leaf_dir(security_dir(settings), "server", name)
    files = ServerFiles(folder / "cert.pem", folder / "chain.pem", folder / "key.pem")
    for path in (files.cert, files.chain, files.key):
        if not path.is_file():
            raise _missing(path)
    return files


def http_verify(settings: Settings) -> ssl.SSLContext | bool:
    """The ``verify`` argument of httpx for the project's own HTTP endpoints.

    With ``security.enabled``, a context that trusts the local CA only (and
    checks host names); otherwise ``True`` (the system's trust store, unused
    by plain ``http://`` URLs).

    Raises:
        CertificateError: Security is on and there is no trust bundle.
    """
    if not settings.security.enabled:
        return True
    return ssl.create_default_context(cafile=str(truststore(settings)))


def uvicorn_tls(settings: Settings, server: HttpServer) -> dict[str, str]:
    """The ``ssl_certfile``/``ssl_keyfile`` of uvicorn for ``server``; empty when it serves HTTP.

    The certificate file is the chain (leaf then CA), so clients that hold only
    the CA's root still build the path.

    Raises:
        CertificateError: The server serves HTTPS and its certificate is missing.
    """
    section = settings.ingest if server == "ingest" else settings.dashboard
    if not section.tls:
        return {}
    files = server_files(settings, server)
    return {"ssl_certfile": str(files.chain), "ssl_keyfile": str(files.key)}


def uvicorn_options(settings: Settings, server: HttpServer) -> dict[str, Any]:
    """Options of uvicorn for ``server``: TLS files (:func:`uvicorn_tls`), no proxy headers.

    The client address is the TCP peer's, as the rate limits and the audit trail
    assume: uvicorn would otherwise take ``X-Forwarded-For`` from any process on
    127.0.0.1 (its default trusted proxy).

    Raises:
        CertificateError: The server serves HTTPS and its certificate is missing.
    """
    return {"proxy_headers": False, **uvicorn_tls(settings, server)}

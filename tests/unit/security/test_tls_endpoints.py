"""PostgreSQL and HTTP in secure mode: server configuration, DSNs, passwords, URLs, TLS files."""

from __future__ import annotations

import re
import ssl
import stat
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from pulsecast.config import Settings
from pulsecast.security.certs import init_certificates
from pulsecast.security.errors import CertificateError
from pulsecast.security.tls import http_verify, server_files, truststore, uvicorn_tls
from pulsecast.services.postgres import hba_lines, server_bin_dir, server_conf_lines
from pulsecast.testing import settings_for
from pulsecast.warehouse.access import (
    ANALYST_ROLE,
    WRITER_ROLE,
    conninfo,
    password_file,
    role_password,
    scram_verifier,
)
from pulsecast.warehouse.schema import Warehouse, WarehouseError


@pytest.fixture(scope="module")
def secured_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A security folder with the CA and every certificate (made once: key generation is slow)."""
    root = tmp_path_factory.mktemp("secure") / "security"
    init_certificates(root, ca_days=30, leaf_days=10)
    return root


def secure(tmp_path: Path, security_dir: Path | None = None, **sections: object) -> Settings:
    security = {"enabled": True, "dir": str(security_dir or tmp_path / "security")}
    return settings_for(tmp_path / "state", security=security, **sections)


# -- PostgreSQL: the server's configuration -------------------------------------------------


def test_server_conf_lines_secure_turns_tls_on_with_the_server_certificate(tmp_path: Path) -> None:
    assert server_conf_lines(secure(tmp_path)) == [
        "ssl = on",
        "ssl_cert_file = 'server.crt'",
        "ssl_key_file = 'server.key'",
        "ssl_min_protocol_version = 'TLSv1.3'",
        "password_encryption = 'scram-sha-256'",
    ]


def test_server_conf_lines_plain_turns_tls_off(settings: Settings) -> None:
    assert server_conf_lines(settings) == ["ssl = off", "password_encryption = 'scram-sha-256'"]


def test_hba_lines_secure_take_only_tls_with_scram(tmp_path: Path) -> None:
    lines = hba_lines(secure(tmp_path))
    assert lines == [
        "hostssl all all 127.0.0.1/32 scram-sha-256",
        "hostssl all all ::1/128 scram-sha-256",
    ]
    words = [line.split() for line in lines]
    assert not [w for w in words if w[0] in ("host", "local", "hostnossl") or "trust" in w]


def test_hba_lines_secure_beyond_loopback_still_require_tls(tmp_path: Path) -> None:
    settings = secure(tmp_path, postgres={"host": "0.0.0.0"})  # noqa: S104
    assert hba_lines(settings) == ["hostssl all all all scram-sha-256"]


def test_hba_lines_plain_trust_loopback_as_before(settings: Settings) -> None:
    assert hba_lines(settings) == [
        "local all all trust",
        "host all all 127.0.0.1/32 trust",
        "host all all ::1/128 trust",
    ]


def test_server_bin_dir_honours_the_setting(tmp_path: Path) -> None:
    settings = secure(tmp_path, postgres={"bin_dir": str(tmp_path / "pg" / "bin")})
    assert server_bin_dir(settings) == tmp_path / "pg" / "bin"


# -- PostgreSQL: who connects, with what ----------------------------------------------------


def test_conninfo_secure_verifies_the_server_and_sends_the_role_password(
    tmp_path: Path, secured_dir: Path
) -> None:
    settings = secure(tmp_path, secured_dir, postgres={"port": 6543})
    params = conninfo_to_dict(conninfo(settings, role="writer"))
    assert params == {
        "host": "127.0.0.1",
        "port": "6543",
        "dbname": "pulsecast",
        "user": WRITER_ROLE,
        "sslmode": "verify-full",
        "sslrootcert": str(secured_dir / "truststore.pem"),
        "password": role_password(settings, "writer"),
    }


def test_conninfo_gives_each_role_its_own_user_and_password(
    tmp_path: Path, secured_dir: Path
) -> None:
    settings = secure(tmp_path, secured_dir)
    found = {
        role: conninfo_to_dict(conninfo(settings, role=role, dbname="postgres"))
        for role in ("admin", "writer", "analyst")
    }
    assert {r: p["user"] for r, p in found.items()} == {
        "admin": "postgres",
        "writer": WRITER_ROLE,
        "analyst": ANALYST_ROLE,
    }
    assert len({p["password"] for p in found.values()}) == 3
    assert {p["dbname"] for p in found.values()} == {"postgres"}


def test_conninfo_verify_ca_when_chosen(tmp_path: Path, secured_dir: Path) -> None:
    settings = secure(tmp_path, secured_dir)
    settings = settings.model_copy(
        update={"security": settings.security.model_copy(update={"postgres_sslmode": "verify-ca"})}
    )
    assert conninfo_to_dict(conninfo(settings))["sslmode"] == "verify-ca"


def test_conninfo_plain_is_the_owner_without_password_or_tls(settings: Settings) -> None:
    params = conninfo_to_dict(conninfo(settings, role="analyst"))
    assert params == {
        "host": "127.0.0.1",
        "port": "5433",
        "dbname": "pulsecast",
        "user": "postgres",
    }


def test_conninfo_uses_an_explicit_dsn_as_is(tmp_path: Path, secured_dir: Path) -> None:
    dsn = "postgresql://app:pw@db.internal/wh?sslmode=verify-full"
    settings = secure(tmp_path, secured_dir, postgres={"dsn": dsn})
    assert conninfo(settings, role="analyst") == dsn


def test_conninfo_secure_without_certificates_says_to_init(tmp_path: Path) -> None:
    settings = secure(tmp_path)
    with pytest.raises(CertificateError, match=r"truststore\.pem is missing; run `pulsecast "):
        conninfo(settings)


def test_warehouse_connect_secure_without_certificates_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError) as caught:
        Warehouse(secure(tmp_path)).connect()
    assert str(caught.value) == (
        "cannot connect to the warehouse at 127.0.0.1:5433 over TLS: "
        f"{tmp_path / 'security' / 'truststore.pem'} is missing; run `pulsecast security init`"
    )


def test_role_password_is_made_once_in_an_owner_only_file(tmp_path: Path) -> None:
    settings = secure(tmp_path)
    first = role_password(settings, "analyst")
    assert role_password(settings, "analyst") == first
    assert len(first) >= 40
    path = password_file(settings, "analyst")
    assert path == tmp_path / "security" / "postgres" / "analyst.password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert role_password(settings, "writer") != first


def test_scram_verifier_has_postgres_format_and_hides_the_password() -> None:
    salt = bytes(range(16))
    verifier = scram_verifier("pencil", salt=salt)
    assert re.fullmatch(
        r"SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}", verifier
    )
    assert verifier.split("$")[1] == "4096:AAECAwQFBgcICQoLDA0ODw=="
    assert "pencil" not in verifier
    assert scram_verifier("pencil", salt=salt) == verifier
    assert scram_verifier("pencil!", salt=salt) != verifier
    assert scram_verifier("pencil") != verifier  # a fresh random salt


# -- HTTP: URLs and the servers' TLS --------------------------------------------------------


def test_urls_are_https_in_secure_mode(tmp_path: Path) -> None:
    settings = secure(tmp_path, ingest={"port": 9001}, dashboard={"port": 9002})
    assert settings.ingest.url == "https://127.0.0.1:9001"
    assert settings.dashboard.url == "https://127.0.0.1:9002"


def test_urls_are_http_in_plain_mode(settings: Settings) -> None:
    assert settings.ingest.url == "http://127.0.0.1:8088"
    assert settings.dashboard.url == "http://127.0.0.1:8050"


def test_tls_alone_gives_https_without_security(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, ingest={"tls": True})
    assert settings.ingest.url.startswith("https://")
    assert settings.dashboard.url.startswith("http://")


def test_uvicorn_tls_serves_the_chain_and_key_of_each_server(
    tmp_path: Path, secured_dir: Path
) -> None:
    settings = secure(tmp_path, secured_dir)
    for server in ("ingest", "dashboard"):
        files = server_files(settings, server)
        assert uvicorn_tls(settings, server) == {
            "ssl_certfile": str(secured_dir / "servers" / server / "chain.pem"),
            "ssl_keyfile": str(secured_dir / "servers" / server / "key.pem"),
        }
        assert files.cert.parent == secured_dir / "servers" / server


def test_uvicorn_tls_is_empty_in_plain_mode(settings: Settings) -> None:
    assert uvicorn_tls(settings, "ingest") == {}
    assert uvicorn_tls(settings, "dashboard") == {}


def test_uvicorn_tls_without_certificates_says_to_init(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match=r"servers/ingest/cert\.pem is missing; run"):
        uvicorn_tls(secure(tmp_path), "ingest")


def test_http_verify_trusts_the_local_ca_only(tmp_path: Path, secured_dir: Path) -> None:
    settings = secure(tmp_path, secured_dir)
    context = http_verify(settings)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    subjects = [c["subject"] for c in context.get_ca_certs()]
    assert subjects == [
        ((("organizationName", "pulsecast"),), (("commonName", "pulsecast local CA"),))
    ]
    assert truststore(settings) == secured_dir / "truststore.pem"


def test_http_verify_plain_is_the_default(settings: Settings) -> None:
    assert http_verify(settings) is True


def test_http_servers_take_the_client_address_from_the_tcp_peer(tmp_path: Path) -> None:
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    from pulsecast.security.tls import uvicorn_options

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answers the client address the server saw."""
        if scope["type"] != "http":
            return
        body = str(scope["client"][0]).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = uvicorn_options(settings_for(tmp_path), "dashboard")
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        # A local process claiming another address is not believed (rate limits, audit).
        answer = httpx.get(f"http://127.0.0.1:{port}/", headers={"X-Forwarded-For": "203.0.113.9"})
        assert answer.text == "127.0.0.1"
    finally:
        server.should_exit = True
        thread.join(10)

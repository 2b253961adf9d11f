"""Secure mode on real servers: PostgreSQL over TLS with per-role passwords, the ingest over HTTPS.

The module starts its own SECURE PostgreSQL and HTTP ingest (free ports, a
temporary data folder, ``pulsecast security init`` first) through pulsecast's
launchers, and a PLAIN PostgreSQL and ingest as the control of the wire checks:
a raw TCP proxy records every byte between client and server, and a marker
written through it must be absent from the secure capture and present in the
plain one (so the capture is known to see plaintext when there is any).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pulsecast.config import Settings, load_settings
from pulsecast.security.apikeys import ApiKeyStore
from pulsecast.security.kafka_acl import ensure_passwords
from pulsecast.security.tls import http_verify, truststore
from pulsecast.services.errors import ServiceError
from pulsecast.services.ingest import IngestService
from pulsecast.services.postgres import PostgresService
from pulsecast.sources.http import create_app
from pulsecast.warehouse.access import ANALYST_ROLE, WRITER_ROLE, Role, connect, conninfo
from pulsecast.warehouse.schema import GOLD_TABLE, Warehouse
from tests.integration.conftest import free_ports, write_config
from tests.integration.wiretap import WireTap

# -- a raw TCP proxy that records the bytes on the wire ---------------------------------------


@pytest.fixture
def tap_factory() -> Iterator[type[WireTap]]:
    taps: list[WireTap] = []

    class Tap(WireTap):
        def __init__(self, upstream: int) -> None:
            super().__init__(upstream)
            taps.append(self)

    yield Tap
    for tap in taps:
        tap.close()


# -- the servers ---------------------------------------------------------------------------------


def _start(service: PostgresService | IngestService) -> None:
    try:
        service.start()
    except ServiceError as exc:
        service.stop()
        pytest.fail(f"{service.name} did not start: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A secure PostgreSQL (migrated) and HTTP ingest; ``security init`` ran first."""
    config = write_config(tmp_path_factory.mktemp("secure"))
    config.write_text(config.read_text() + "[security]\nenabled = true\n")
    init = subprocess.run(
        [sys.executable, "-m", "pulsecast", "--config", str(config), "security", "init"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert init.returncode == 0, init.stderr
    settings = load_settings(config)
    # No broker here; the ingest's producer still needs its Kafka login to start.
    ensure_passwords(settings)
    postgres, ingest = PostgresService(settings), IngestService(settings)
    _start(postgres)
    try:
        Warehouse(settings).migrate()
        _start(ingest)
        yield settings
    finally:
        ingest.stop()
        postgres.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A plain PostgreSQL (migrated): the control of the wire check."""
    settings = load_settings(write_config(tmp_path_factory.mktemp("plain")))
    postgres = PostgresService(settings)
    _start(postgres)
    try:
        Warehouse(settings).migrate()
        yield settings
    finally:
        postgres.stop()


def _via(settings: Settings, port: int) -> Settings:
    """``settings`` with PostgreSQL reached on ``port`` (a proxy)."""
    return settings.model_copy(
        update={"postgres": settings.postgres.model_copy(update={"port": port})}
    )


def _gold_row(key: str) -> tuple[object, ...]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return ("itsecure", key, "1m", start, start + timedelta(minutes=1), "cpu_util",
            3, 1.0, 0.5, 1.5, 0.1, 1.0, 1.4, False)  # fmt: skip


# -- PostgreSQL: refusals ------------------------------------------------------------------------


def test_secure_postgres_refuses_a_connection_without_tls(secure: Settings) -> None:
    params = conninfo_to_dict(conninfo(secure, role="admin"))
    params["sslmode"] = "disable"
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry") as caught:
        psycopg.connect(make_conninfo("", **params), connect_timeout=5)
    assert "no encryption" in str(caught.value)


def test_secure_postgres_refuses_a_wrong_or_missing_password(secure: Settings) -> None:
    params = conninfo_to_dict(conninfo(secure, role="writer"))
    params["password"] = "not-the-password"  # noqa: S105
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(make_conninfo("", **params), connect_timeout=5)
    del params["password"]
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(make_conninfo("", **params), connect_timeout=5)


def test_secure_postgres_refuses_another_roles_password(secure: Settings) -> None:
    analyst = conninfo_to_dict(conninfo(secure, role="analyst"))
    writer = conninfo_to_dict(conninfo(secure, role="writer"))
    analyst["password"] = writer["password"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(make_conninfo("", **analyst), connect_timeout=5)


def test_secure_postgres_client_refuses_a_server_it_cannot_verify(secure: Settings) -> None:
    params = conninfo_to_dict(conninfo(secure, role="writer"))
    # A name the server's certificate does not carry, at the same address: verify-full says no.
    named = {**params, "host": "warehouse.example.invalid", "hostaddr": "127.0.0.1"}
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        psycopg.connect(make_conninfo("", **named), connect_timeout=5)
    # Another trust anchor than the local CA: the server's certificate is not trusted.
    public = {**params, "sslrootcert": "/etc/ssl/certs/ca-certificates.crt"}
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(make_conninfo("", **public), connect_timeout=5)


# -- PostgreSQL: roles and TLS in use --------------------------------------------------------------


def test_every_role_connects_over_tls_as_itself(secure: Settings) -> None:
    roles: list[tuple[Role, str]] = [
        ("admin", "postgres"),
        ("writer", WRITER_ROLE),
        ("analyst", ANALYST_ROLE),
    ]
    for role, user in roles:
        with connect(secure, role=role) as conn:
            row = conn.execute(
                "SELECT s.ssl, s.version, current_user FROM pg_stat_ssl s "
                "WHERE s.pid = pg_backend_pid()"
            ).fetchone()
        assert row == (True, "TLSv1.3", user)


def test_analyst_reads_but_cannot_insert_or_create(secure: Settings) -> None:
    with connect(secure, role="analyst", autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {GOLD_TABLE}").fetchone() is not None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                f"INSERT INTO {GOLD_TABLE} (stream, key, window_name, window_start, "
                "window_end, metric, count) VALUES ('s', 'k', '1m', now(), now(), 'm', 1)"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE pulsecast.analyst_made (x int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.analyst_made (x int)")


def test_writer_writes_rows_but_cannot_change_the_schema(secure: Settings) -> None:
    key = f"w-{uuid.uuid4().hex[:8]}"
    warehouse = Warehouse(secure)
    assert warehouse.upsert_gold([_gold_row(key)]) == 1
    with connect(secure, role="analyst") as conn:
        found = conn.execute(
            f"SELECT count FROM {GOLD_TABLE} WHERE key = %s",
            (key,),
        ).fetchone()
    assert found == (3,)
    with connect(secure, role="writer", autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (WRITER_ROLE,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE pulsecast.writer_made (x int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"DROP TABLE {GOLD_TABLE}")
    assert warehouse.delete_stream("itsecure") >= 1


def test_secure_service_probe_and_status(secure: Settings) -> None:
    service = PostgresService(secure)
    assert service._answers()
    status = service.status()
    assert status.running
    passwords = [(truststore(secure).parent / "postgres" / f"{r}.password") for r in
                 ("admin", "writer", "analyst")]  # fmt: skip
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in passwords)
    log = Path(status.log_file or "").read_text()
    assert not [p for p in passwords if p.read_text().strip() in log]


# -- PostgreSQL: the wire ----------------------------------------------------------------------


def test_postgres_wire_carries_no_plaintext_in_secure_mode(
    secure: Settings, plain: Settings, tap_factory: type[WireTap]
) -> None:
    marker = f"wire-marker-{uuid.uuid4().hex}"
    for settings, encrypted in ((secure, True), (plain, False)):
        tap = tap_factory(settings.postgres.port)
        proxied = _via(settings, tap.port)
        assert Warehouse(proxied).upsert_gold([_gold_row(marker)]) == 1
        with Warehouse(proxied).connect() as conn:
            row = conn.execute(f"SELECT key FROM {GOLD_TABLE} WHERE key = %s", (marker,))
            assert row.fetchone() == (marker,)
        Warehouse(settings).delete_stream("itsecure")
        wire = tap.captured()
        assert len(wire) > 1000  # the proxy did carry the session
        if encrypted:
            assert marker.encode() not in wire
            assert b"itsecure" not in wire and b"gold_aggregates" not in wire
        else:  # the control: the same capture sees plaintext when there is any
            assert marker.encode() in wire


# -- HTTPS ingest --------------------------------------------------------------------------------


def test_ingest_serves_https_trusted_through_the_local_ca(secure: Settings) -> None:
    assert secure.ingest.url.startswith("https://")
    reply = httpx.get(f"{secure.ingest.url}/healthz", verify=http_verify(secure), timeout=10)
    assert reply.status_code == 200
    assert reply.json()["status"] == "ok"
    assert IngestService(secure).status().address == secure.ingest.url


def test_ingest_refuses_plain_http(secure: Settings) -> None:
    plain_url = secure.ingest.url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{plain_url}/healthz", timeout=5)


def test_ingest_is_not_trusted_without_the_local_ca(secure: Settings) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{secure.ingest.url}/healthz", timeout=5)


def test_ingest_over_https_needs_an_api_key(secure: Settings) -> None:
    url = f"{secure.ingest.url}/v1/streams/nope/events"
    verify = http_verify(secure)
    bare = httpx.post(url, content=b"[]", verify=verify, timeout=10)
    assert bare.status_code == 401
    _, key = ApiKeyStore(truststore(secure).parent / "apikeys.json").create("it", ["ingest"])
    keyed = httpx.post(url, content=b"[]", headers={"X-API-Key": key}, verify=verify, timeout=10)
    assert keyed.status_code == 404  # past the guard: the stream is unknown


@pytest.fixture
def plain_ingest(tmp_path: Path) -> Iterator[str]:
    """The plain ingest application in a thread (the control of the HTTP wire check)."""
    settings = load_settings(write_config(tmp_path))
    assert settings.ingest.url.startswith("http://")
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=settings.ingest.port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while not server.started and datetime.now(UTC) < deadline:
        threading.Event().wait(0.1)
    assert server.started
    yield settings.ingest.url
    server.should_exit = True
    thread.join(timeout=20)


def test_ingest_wire_carries_no_plaintext_in_secure_mode(
    secure: Settings, plain_ingest: str, tap_factory: type[WireTap]
) -> None:
    marker = f"http-marker-{uuid.uuid4().hex}"
    body = ('{"events": [{"payload": {"entity_id": "' + marker + '"}}]}').encode()
    path = "/v1/streams/nope/events"
    secure_tap = tap_factory(secure.ingest.port)
    reply = httpx.post(
        f"https://127.0.0.1:{secure_tap.port}{path}",
        content=body,
        verify=http_verify(secure),
        timeout=10,
    )
    assert reply.status_code == 401
    plain_port = int(plain_ingest.rsplit(":", 1)[1])
    plain_tap = tap_factory(plain_port)
    control = httpx.post(f"http://127.0.0.1:{plain_tap.port}{path}", content=body, timeout=10)
    assert control.status_code == 404
    assert marker.encode() not in secure_tap.captured()
    assert len(secure_tap.captured()) > len(body)
    assert marker.encode() in plain_tap.captured()


# -- HTTPS dashboard ----------------------------------------------------------------------------


def test_dashboard_serves_https_only_in_secure_mode(secure: Settings, tmp_path: Path) -> None:
    assert secure.config_file is not None
    port = free_ports(1)[0]
    err = (tmp_path / "dashboard.err").open("w")
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "pulsecast", "--config", str(secure.config_file)),
            *("dashboard", "--port", str(port)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    url = f"https://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        reply = None
        while reply is None and time.monotonic() < deadline and server.poll() is None:
            try:
                reply = httpx.get(url, verify=http_verify(secure), timeout=2)
            except httpx.TransportError:
                time.sleep(0.3)
        assert reply is not None, (tmp_path / "dashboard.err").read_text()[-800:]
        assert reply.status_code == 200
        assert "<html" in reply.text.lower()
        with pytest.raises(httpx.TransportError):
            httpx.get(url.replace("https://", "http://"), timeout=5)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url, timeout=5)
    finally:
        server.terminate()
        server.wait(timeout=30)
        err.close()

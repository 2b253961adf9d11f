"""The secure demo end to end: `pulsecast demo --secure` on a stack of its own.

A fresh data folder with ``security.enabled``: the demo's own ``up`` creates the
CA, the certificates and the keystore and starts Kafka (SASL_SSL, ACLs),
PostgreSQL (TLS, one password per role) and the dashboard (HTTPS); then the
history, training, the streaming job on the suite's SparkSession with the
lake encrypted, live events, the dead letters and the read-back, as a user
runs it. Afterwards: the dashboard answers over HTTPS only with the local CA,
refuses a request without a login, and serves its data to a read key made
with ``pulsecast security apikey create`` (sent as a Bearer key, and traded
for a session cookie at its login form); the lake's event zones hold no
plaintext reading, and the stack goes down.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from pulsecast.cli import app as cli
from pulsecast.config import load_settings
from pulsecast.demo import run_demo
from pulsecast.security.lake_crypto import disable_on_session
from pulsecast.security.tls import http_verify
from pulsecast.services.stack import Stack
from tests.integration.conftest import SMALL_DEMO, free_ports, job_settings, write_config


def test_the_secure_demo_runs_end_to_end(spark: SparkSession, tmp_path: Path) -> None:
    (dashboard,) = free_ports(1)
    config = write_config(
        tmp_path,
        dashboard={"port": dashboard},
        lake={"uri": (tmp_path / "lake").as_uri()},
        ml={
            "registry_uri": f"sqlite:///{tmp_path / 'registry.db'}",
            "artifact_uri": (tmp_path / "artifacts").as_uri(),
            "gbt_max_iter": 3,
            "backfill_interval_s": 30.0,
        },
    )
    config.write_text(config.read_text() + "[security]\nenabled = true\n")
    settings = job_settings(load_settings(config), tmp_path)
    assert settings.security.enabled and settings.dashboard.tls and settings.ingest.tls
    try:
        result = run_demo(settings, **SMALL_DEMO, with_=["dashboard"])
        url = settings.dashboard.url
        assert url.startswith("https://"), url
        verify = http_verify(settings)
        refused = httpx.get(f"{url}/api/meta", verify=verify, timeout=10)
        assert (refused.status_code, refused.json()) == (
            401,
            {"error": "login required: log in at /login, or send Authorization: Bearer <key>"},
        )
        page = httpx.get(url, verify=verify, timeout=10)  # the login page, not the dashboard
        assert page.status_code == 200 and 'action="/login"' in page.text
        assert "__PULSECAST_CONFIG__" not in page.text and '"refresh_s"' not in page.text
        created = CliRunner().invoke(
            cli,
            ["--config", str(config), "security", "apikey", "create", "demo", "--role", "read"],
        )
        assert created.exit_code == 0, created.output
        key = created.stdout.strip()
        bearer = {"Authorization": f"Bearer {key}"}
        meta = httpx.get(f"{url}/api/meta", headers=bearer, verify=verify, timeout=10)
        assert meta.status_code == 200 and meta.json()["stream"] == "telemetry", meta.text
        with httpx.Client(base_url=url, verify=verify, timeout=30) as browser:
            login = browser.post("/login", data={"key": key})
            assert login.status_code == 303 and "pulsecast_session" in browser.cookies
            overview = browser.get("/api/overview", params={"since": "min"})
            assert overview.status_code == 200, overview.text
            assert overview.json().get("kpis", {}).get("received", 0) > 0, overview.text
            assert browser.post("/logout").status_code == 303
            assert browser.get("/api/meta").status_code == 401
        with pytest.raises(httpx.ConnectError):  # not trusted without the local CA
            httpx.get(f"{url}/api/meta", headers=bearer, timeout=10)
    finally:
        Stack(settings, with_=["dashboard"]).down()
        disable_on_session(spark)
    assert result.ok, "\n".join(result.lines())
    assert any(
        "`pulsecast security apikey create demo-reader --role read`" in line
        for line in result.lines()
    )
    assert result.produced.rejected > 0 and result.dead_letters_read == result.produced.rejected
    assert result.processed is not None and result.processed.forecasts > 0
    assert result.tables["silver_telemetry"] == result.processed.valid + 576
    assert result.warehouse_rows > 0
    # A reading's field name is in every plaintext Parquet file of the event zones (in
    # bronze's raw JSON, in silver's schema); the encrypted files hide it.
    files = [
        p
        for zone in ("bronze", "silver")
        for p in (tmp_path / "lake" / zone).rglob("*.parquet")
        if "_delta_log" not in p.parts
    ]
    assert files
    assert not [p for p in files if b"temperature_c" in p.read_bytes()]

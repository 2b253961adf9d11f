"""The local stack's lifecycle through the real `pulsecast` entry point (subprocesses)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pulsecast.config import Settings
from pulsecast.services.stack import Stack
from pulsecast.warehouse.schema import ANALYST_ROLE, MIGRATIONS, Warehouse

from .conftest import write_config

PULSECAST = [sys.executable, "-m", "pulsecast"]


def cli(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PULSECAST, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def statuses(config: Path) -> dict[str, dict[str, object]]:
    result = cli(config, "status", "--json")
    assert result.returncode == 0, result.stderr
    return {s["name"]: s for s in json.loads(result.stdout)["services"]}


def test_up_status_down_lifecycle(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    try:
        first = cli(config, "up")
        assert first.returncode == 0, first.stderr
        running = statuses(config)
        assert all(s["running"] for s in running.values())
        assert running["kafka"]["version"].startswith("4.")
        assert running["postgres"]["version"].startswith("18.")
        for service in running.values():
            assert Path(str(service["log_file"])).exists()
        assert Path(str(running["kafka"]["data_dir"])).joinpath("meta.properties").exists()

        again = cli(config, "up")  # idempotent: same processes
        assert again.returncode == 0, again.stderr
        assert {n: s["pid"] for n, s in statuses(config).items()} == {
            n: s["pid"] for n, s in running.items()
        }

        down = cli(config, "down")
        assert down.returncode == 0, down.stderr
        assert down.stdout.strip() == "stopped: ingest, postgres, kafka"
        assert not any(s["running"] for s in statuses(config).values())
        assert cli(config, "down").stdout.strip() == "stopped: nothing was running"
    finally:
        cli(config, "down")


def test_up_with_port_taken_is_one_clear_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    port = int(config.read_text().split("[kafka]\nport = ")[1].split("\n")[0])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        result = cli(config, "up")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"error: cannot start kafka: port {port} (kafka.port) is already in use by pid "
    )
    assert result.stderr.count("error:") == 1


def test_up_without_java_is_one_clear_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = cli(config, "up", env={"PULSECAST_JVM__JAVA_HOME": str(tmp_path / "nojava")})
    assert result.returncode == 1
    assert result.stderr == (
        "starting kafka...\n"
        f"error: Java not found at {tmp_path / 'nojava' / 'bin' / 'java'} "
        "(jvm.java_home / JAVA_HOME): install Java 17 or newer "
        "(Debian: apt-get install openjdk-17-jre-headless)\n"
    )


def test_stale_pid_file_is_cleared_on_start(
    stack: Stack, stack_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    ingest = stack.ingest
    assert ingest.stop()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ingest.pid_file.write(dead.pid)
    status = ingest.start()
    assert status.running and status.pid != dead.pid
    assert f"removed stale PID file {ingest.pid_file.path}" in caplog.text


def test_warehouse_migrations_are_idempotent_and_analyst_is_read_only(
    stack: Stack, stack_settings: Settings
) -> None:
    warehouse = Warehouse(stack_settings)
    warehouse.migrate()
    assert warehouse.migrate() == []
    assert warehouse.version() == max(m.version for m in MIGRATIONS)
    with psycopg.connect(stack_settings.postgres.conninfo()) as conn:
        conn.execute(f"SET ROLE {ANALYST_ROLE}")
        assert conn.execute("SELECT count(*) FROM pulsecast.gold_aggregates").fetchone()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM pulsecast.gold_aggregates")


def test_warehouse_answers_on_tcp(stack: Stack, stack_settings: Settings) -> None:
    with psycopg.connect(stack_settings.postgres.conninfo()) as conn:
        row = conn.execute(
            "SELECT current_database(), current_setting('server_version')"
        ).fetchone()
    assert row is not None
    assert row[0] == "pulsecast"
    assert row[1].startswith("18.")

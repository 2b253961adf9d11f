from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pulsecast.config import Settings, load_settings
from pulsecast.services.base import PidFile, check_port_free, wait_until
from pulsecast.services.dashboard import DashboardService
from pulsecast.services.errors import JavaNotFoundError, PortInUseError, ServiceError
from pulsecast.services.java import find_java
from pulsecast.services.kafka import KafkaService, cluster_id
from pulsecast.services.stack import Stack
from pulsecast.testing import settings_for


def test_pid_file_removes_a_stale_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    pid_file = PidFile(tmp_path / "x.pid", marker="anything")
    pid_file.write(proc.pid)
    assert pid_file.read() is None
    assert not pid_file.path.exists()
    assert f"removed stale PID file {pid_file.path} (process {proc.pid} is gone)" in caplog.text


def test_pid_file_ignores_a_reused_pid(tmp_path: Path) -> None:
    pid_file = PidFile(tmp_path / "x.pid", marker="no-such-marker-in-pytest")
    pid_file.write(os.getpid())  # alive, but not our server
    assert pid_file.read() is None


def test_pid_file_finds_our_live_process(tmp_path: Path) -> None:
    marker = f"sleep-marker-{tmp_path.name}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
    try:
        pid_file = PidFile(tmp_path / "x.pid", marker=marker)
        pid_file.write(proc.pid)
        assert pid_file.read() == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_pid_file_counts_our_own_child_before_its_command_line_shows(tmp_path: Path) -> None:
    # Just after the fork a child still shows this process's command line, without
    # the marker: a busy machine once judged a starting NameNode dead in that gap.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pid_file = PidFile(tmp_path / "x.pid", marker="not-in-its-command-line")
        pid_file.write(proc.pid)
        assert pid_file.read() == proc.pid
        proc.kill()
        proc.wait()
        assert pid_file.read() is None  # and once it is gone, it is gone
    finally:
        proc.kill()
        proc.wait()


def test_pid_file_not_owned_is_never_removed(tmp_path: Path) -> None:
    path = tmp_path / "postmaster.pid"
    path.write_text("999999\n/data\n")
    assert PidFile(path, marker="x", owned=False).read() is None
    assert path.exists()


def test_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PortInUseError) as info:
            check_port_free("kafka", "127.0.0.1", port, "kafka.port")
    text = str(info.value)
    assert text.startswith(f"cannot start kafka: port {port} (kafka.port) is already in use by ")
    assert text.endswith("; stop that program or choose another port with PULSECAST_KAFKA__PORT")
    assert "\n" not in text


def test_java_missing_is_one_clear_line(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, jvm={"java_home": tmp_path / "nojava"})
    with pytest.raises(JavaNotFoundError) as info:
        find_java(settings)
    assert str(info.value) == (
        f"Java not found at {tmp_path / 'nojava' / 'bin' / 'java'} (jvm.java_home / JAVA_HOME): "
        "install Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"
    )


def test_java_missing_from_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaNotFoundError, match=r"^Java not found on PATH: install Java 17"):
        find_java(settings_for(tmp_path))


def test_kafka_properties_are_kraft_combined_from_settings(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, kafka={"port": 19092, "controller_port": 19093})
    props = dict(
        line.split("=", 1) for line in KafkaService(settings).server_properties().splitlines()
    )
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.dirs"] == str(tmp_path.resolve() / "kafka" / "data")


def test_kafka_cluster_ids_never_look_like_options() -> None:
    ids = [cluster_id() for _ in range(5000)]  # about 78 would start with "-" unguarded
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids)


def test_stack_rejects_unknown_optional_service(settings: Settings) -> None:
    known = "available: dashboard, hdfs"
    with pytest.raises(ServiceError, match=f"unknown optional service 'yarn'; {known}"):
        Stack(settings, with_=["yarn"])


def test_stack_status_when_nothing_runs(settings: Settings) -> None:
    statuses = {s.name: s for s in Stack(settings).status()}
    assert list(statuses) == ["kafka", "postgres", "ingest"]
    assert not any(s.running for s in statuses.values())
    assert statuses["kafka"].log_file == str(settings.data_dir / "logs" / "kafka.log")


def test_external_kafka_is_not_managed(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, kafka={"bootstrap_servers": "127.0.0.1:1"})
    status = KafkaService(settings).status()
    assert (status.managed, status.running, status.address) == (False, False, "127.0.0.1:1")


def test_wait_until_reports_abort_and_timeout() -> None:
    assert wait_until(lambda: True, timeout_s=1) is None
    assert wait_until(lambda: False, timeout_s=5, abort=lambda: "died") == "died"
    assert wait_until(lambda: False, timeout_s=0.2, interval_s=0.05) == "not ready after 0 s"


def test_dashboard_joins_the_stack_when_asked_and_runs_with_the_same_config(
    tmp_path: Path,
) -> None:
    config = tmp_path / "pulsecast.toml"
    config.write_text(f'[paths]\ndata_dir = "{tmp_path / "state"}"\n[dashboard]\nport = 18050\n')
    settings = load_settings(config)
    stack = Stack(settings, with_=["dashboard"])
    dashboard = next(s for s in stack.services if s.name == "dashboard")
    assert isinstance(dashboard, DashboardService)
    assert dashboard.command()[-3:] == ["--config", str(config.resolve()), "dashboard"]
    status = dashboard.status()
    assert (status.running, status.address) == (False, "http://127.0.0.1:18050")

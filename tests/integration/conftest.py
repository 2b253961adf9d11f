"""Real servers for the integration suite, started once per session by pulsecast's own launchers.

One Kafka broker, one PostgreSQL server and the HTTP ingest run for the whole
session on free ports with their state in a temporary folder; tests get
uuid-named streams from ``stream_factory`` and clean up after themselves.
A server that cannot start fails the suite with its log tail.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pulsecast.bus.admin import TopicAdmin
from pulsecast.bus.topics import topic_specs
from pulsecast.config import Settings, load_settings
from pulsecast.services.errors import ServiceError
from pulsecast.services.stack import Stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def hdfs_ports() -> dict[str, int]:
    """Free ports for every HDFS daemon port setting (``[hdfs]`` keys)."""
    names = [
        "namenode_port",
        "namenode_http_port",
        "datanode_port",
        "datanode_http_port",
        "datanode_ipc_port",
    ]
    return dict(zip(names, free_ports(len(names)), strict=True))


def write_config(root: Path, **extra_sections: dict[str, object]) -> Path:
    """A pulsecast.toml with free ports and state under ``root``."""
    kafka, controller, postgres, ingest = free_ports(4)
    sections: dict[str, dict[str, object]] = {
        "paths": {"data_dir": str(root / "state")},
        "kafka": {"port": kafka, "controller_port": controller, "heap_mb": 384},
        "postgres": {"port": postgres},
        "ingest": {"port": ingest, "max_batch_events": 1000},
    }
    for name, values in extra_sections.items():
        sections.setdefault(name, {}).update(values)
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {value!r}" if isinstance(value, str) else f"{key} = {value}")
    path = root / "pulsecast.toml"
    path.write_text("\n".join(lines).replace("'", '"') + "\n")
    return path


#: A demo small enough for the suite: 2.4 h of history of two machines, 3 s of live events.
SMALL_DEMO: dict[str, Any] = {
    "minutes": 0.05,
    "rate_eps": 2000,
    "history_days": 0.1,
    "entities": 2,
}


def monitoring_toml(**extra: object) -> str:
    """A ``[monitoring]`` section on free ports that scrapes and evaluates every second."""
    prometheus, alertmanager, monitor, job = free_ports(4)
    values: dict[str, object] = {
        "prometheus_port": prometheus,
        "alertmanager_port": alertmanager,
        "monitor_port": monitor,
        "job_metrics_port": job,
        "scrape_interval_s": 1,
        "evaluation_interval_s": 1,
        "group_wait_s": 1,
        "group_interval_s": 1,
        **extra,
    }
    lines = [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in values.items()]
    return "[monitoring]\n" + "\n".join(lines) + "\n"


@contextlib.contextmanager
def prometheus_running(settings: Settings) -> Iterator[Settings]:
    """Prometheus, Alertmanager and the monitor of ``settings`` while the block runs."""
    from pulsecast.services.prometheus import PrometheusService

    service = PrometheusService(settings)
    try:
        service.start()
    except ServiceError as exc:
        service.stop()
        pytest.fail(f"prometheus did not start: {exc}", pytrace=False)
    try:
        yield settings
    finally:
        service.stop()


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(write_config(tmp_path_factory.mktemp("stack")))


@pytest.fixture(scope="session")
def stack(stack_settings: Settings) -> Iterator[Stack]:
    stack = Stack(stack_settings)
    try:
        stack.up()
    except ServiceError as exc:
        stack.down()
        pytest.fail(f"the local stack did not start: {exc}", pytrace=False)
    yield stack
    stack.down()


StreamFactory = Callable[..., tuple[Settings, str]]


@pytest.fixture
def stream_factory(stack: Stack, stack_settings: Settings) -> Iterator[StreamFactory]:
    """New uuid-named streams (a copy of a configured stream's schema) with their topics.

    Topics are deleted at teardown.
    """
    created: list[str] = []
    admin = TopicAdmin(stack_settings)

    def make(schema: str = "telemetry") -> tuple[Settings, str]:
        name = f"it{uuid.uuid4().hex[:10]}"
        streams = {**stack_settings.streams, name: stack_settings.streams[schema]}
        settings = stack_settings.model_copy(update={"streams": streams})
        specs = topic_specs(settings, [name])
        admin.ensure(specs)
        created.extend(s.name for s in specs)
        return settings, name

    yield make
    admin.delete(created)


def small_spark(settings: Settings) -> Settings:
    """``settings`` with the suite's SparkSession options (local, small).

    Code under test that calls ``spark_session`` with these gets the suite's
    session back unchanged.
    """
    return settings.model_copy(
        update={
            "spark": settings.spark.model_copy(
                update={
                    "master": "local[2]",
                    "shuffle_partitions": 2,
                    "conf": {
                        "spark.ui.showConsoleProgress": "false",
                        "spark.databricks.delta.snapshotPartitions": "2",
                    },
                }
            )
        }
    )


@pytest.fixture(scope="session")
def spark(stack_settings: Settings):  # type: ignore[no-untyped-def]
    """One SparkSession for the whole suite (local, small)."""
    from pulsecast.stream.session import spark_session

    return spark_session(small_spark(stack_settings), app_name="pulsecast-it")


def job_settings(settings: Settings, root: Path, **stream: object) -> Settings:
    """``settings`` with its own lake and checkpoints under ``root`` and a fast job cadence."""
    job = {
        "trigger_interval_s": 1.0,
        "idle_timeout_s": 4.0,
        "allowed_lateness_s": 60,
        "checkpoint_uri": (root / "checkpoints").as_uri(),
        **stream,
    }
    return settings.model_copy(
        update={
            "lake": settings.lake.model_copy(update={"uri": (root / "lake").as_uri()}),
            "stream": settings.stream.model_copy(update=job),
        }
    )


def job_config(
    stack_settings: Settings,
    settings: Settings,
    stream: str,
    path: Path,
    *,
    spark_master: str = "local[2]",
) -> Path:
    """The stack's config file plus this test's stream, lake, checkpoints, cadence and master."""
    assert stack_settings.config_file is not None
    lines = [stack_settings.config_file.read_text()]
    lines += [
        "[lake]",
        f'uri = "{settings.lake_uri}"',
        "[stream]",
        "trigger_interval_s = 1.0",
        "idle_timeout_s = 4.0",
        "max_offsets_per_trigger = 2000",
        "allowed_lateness_s = 86400",
        f'checkpoint_uri = "{settings.checkpoint_uri}"',
        "[spark]",
        f'master = "{spark_master}"',
        "shuffle_partitions = 2",
        "[spark.conf]",
        '"spark.ui.showConsoleProgress" = "false"',
        '"spark.databricks.delta.snapshotPartitions" = "2"',
        f"[streams.{stream}]",
        'key_field = "entity_id"',
    ]
    for name, field in settings.streams[stream].fields.items():
        lines.append(f"[streams.{stream}.fields.{name}]")
        lines.append(f'type = "{field.type}"')
        if field.min is not None:
            lines.append(f"min = {field.min}")
        if field.max is not None:
            lines.append(f"max = {field.max}")
    path.write_text("\n".join(lines) + "\n")
    return path

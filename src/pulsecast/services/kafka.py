"""The local Kafka broker: one node in KRaft mode (broker and controller combined).

Runs ``kafka.Kafka`` as a plain JVM process from the jars of the ``kafka``
profile of jvm/pom.xml, with its configuration generated from Settings under
``<data_dir>/kafka/``. Storage is formatted on first start with Kafka's own
``StorageTool``; ``start`` returns once the broker answers a metadata request.
When ``kafka.bootstrap_servers`` points at an existing cluster nothing is run.
"""

from __future__ import annotations

import base64
import logging
import re
import subprocess
import uuid
from pathlib import Path

from pulsecast.config import Settings
from pulsecast.services.base import (
    PidFile,
    ProcessService,
    ServiceStatus,
    check_port_free,
    port_open,
)
from pulsecast.services.errors import ServiceStartError
from pulsecast.services.java import artifacts_dir, classpath, find_java

__all__ = ["KafkaService"]

log = logging.getLogger(__name__)

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = WARN
"""


def cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid``, never one starting with ``-``: the
    storage tool's argument parser would take it for an option.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class KafkaService(ProcessService):
    """The local single-node Kafka broker."""

    name = "kafka"
    stop_timeout_s = 60.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.home = self.data_root / "kafka"
        self.log_dirs = self.home / "data"
        self.config_file = self.home / "server.properties"
        self.pid_file = PidFile(self.run_dir / "kafka.pid", marker=str(self.config_file))

    @property
    def managed(self) -> bool:  # noqa: D102 (see base class)
        return self.settings.kafka.is_local

    def server_properties(self) -> str:
        """The broker's configuration, derived from Settings."""
        k = self.settings.kafka
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{k.host}:{k.controller_port}",
            "listeners": f"PLAINTEXT://{k.host}:{k.port},CONTROLLER://{k.host}:{k.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{k.host}:{k.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            "num.partitions": str(k.partitions),
            "auto.create.topics.enable": "false",
            "log.retention.hours": str(k.retention_hours),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
        }
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.server_properties())
        (self.home / "log4j2.properties").write_text(_LOG4J2)

    def _java_cmd(self, main: str, *args: str, heap_mb: int = 256) -> list[str]:
        java = find_java(self.settings)
        return [
            str(java),
            f"-Xms{heap_mb}m",
            f"-Xmx{heap_mb}m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            classpath(self.settings, "kafka"),
            main,
            *args,
        ]

    def _format_storage(self) -> None:
        if (self.log_dirs / "meta.properties").exists():
            return
        log.info("formatting Kafka storage in %s", self.log_dirs)
        cmd = self._java_cmd(
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id(),
            "-c",
            str(self.config_file),
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            reason = f"formatting storage failed: {detail[-1] if detail else proc.returncode}"
            raise ServiceStartError(self.name, reason, None)

    def _answers(self) -> bool:
        if not port_open(self.settings.kafka.host, self.settings.kafka.port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.settings.kafka.bootstrap, "log_level": 0})
        try:
            admin.list_topics(timeout=2)
        except Exception:
            return False
        return True

    def start(self) -> ServiceStatus:  # noqa: D102 (see base class)
        if not self.managed:
            return self.status()
        if self.pid_file.read() is not None:
            log.info("kafka is already running")
            return self.status()
        k = self.settings.kafka
        check_port_free(self.name, k.host, k.port, "kafka.port")
        check_port_free(self.name, k.host, k.controller_port, "kafka.controller_port")
        self._write_config()
        self._format_storage()
        cmd = self._java_cmd("kafka.Kafka", str(self.config_file), heap_mb=k.heap_mb)
        pid = self._spawn(cmd, self._answers, timeout_s=k.start_timeout_s)
        log.info("kafka is ready on %s (pid %s)", k.bootstrap, pid)
        return self.status()

    def version(self) -> str | None:
        """Kafka's version, from the resolved broker jar."""
        try:
            folder: Path = artifacts_dir(self.settings, "kafka")
        except OSError:
            return None
        for jar in folder.glob("kafka_2.13-*.jar"):
            match = re.match(r"kafka_2\.13-(.+)\.jar$", jar.name)
            if match:
                return match.group(1)
        return None

    def status(self) -> ServiceStatus:  # noqa: D102 (see base class)
        k = self.settings.kafka
        if not self.managed:
            host, _, port = k.bootstrap.split(",")[0].rpartition(":")
            up = port_open(host, int(port))
            return ServiceStatus(
                name=self.name,
                running=up,
                managed=False,
                address=k.bootstrap,
                detail="external cluster (kafka.bootstrap_servers)",
            )
        pid = self.pid_file.read()
        return ServiceStatus(
            name=self.name,
            running=pid is not None,
            pid=pid,
            address=k.bootstrap,
            version=self.version(),
            data_dir=str(self.log_dirs),
            log_file=str(self.log_file),
            detail="KRaft, broker+controller",
        )

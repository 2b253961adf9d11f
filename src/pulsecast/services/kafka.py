"""The local Kafka broker: one node in KRaft mode (broker and controller combined).

Runs ``kafka.Kafka`` as a plain JVM process from the jars of the ``kafka``
profile of jvm/pom.xml, with its configuration generated from Settings under
``<data_dir>/kafka/``. Storage is formatted on first start with Kafka's own
``StorageTool``; ``start`` returns once the broker answers a metadata request.
When ``kafka.bootstrap_servers`` points at an existing cluster nothing is run.

With ``security.enabled`` the client listener on ``kafka.port`` is SASL_SSL
only (SCRAM-SHA-512; no plaintext listener), the KRaft ``StandardAuthorizer``
denies what no ACL allows (:mod:`pulsecast.security.kafka_acl`), and ``admin``
and the broker itself (``kafka``) are the super users. The TLS identity is the
``servers/kafka`` certificate of ``pulsecast security init``. The controller
listener (``kafka.controller_port``) is the broker-internal KRaft channel:
it is TLS too and requires a client certificate, which only the broker holds
(its ``CN=kafka,OU=server`` maps to principal ``kafka``). The SCRAM users are
added when storage is formatted; their passwords reach the storage tool in a
``0600`` argument file and the broker through Kafka's ``FileConfigProvider``
(``<security dir>/kafka/broker.properties``, ``0600``), never a command line
or ``server.properties``. With ``security.kafka_client_certs`` the SASL_SSL
listener also requires a client certificate from the local CA
(``listener.name.sasl_ssl.ssl.client.auth=required``, checked against the
truststore): a second factor, while the SCRAM login still names the principal
the ACLs see.
"""

from __future__ import annotations

import base64
import logging
import re
import subprocess
import uuid
from pathlib import Path

from pulsecast.config import Settings
from pulsecast.security import security_dir, write_private
from pulsecast.security.certs import leaf_dir, read_keystore_password
from pulsecast.security.errors import CertificateError
from pulsecast.security.kafka_acl import (
    BROKER_PRINCIPAL,
    PRINCIPALS,
    SCRAM_MECHANISM,
    SUPER_USERS,
    ensure_passwords,
    kafka_security_dir,
    read_password,
    truststore_file,
)
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


def _argfile_quote(arg: str) -> str:
    """One argument as a line of a Java launcher ``@argfile`` (quoted, backslashes escaped)."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


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

    @property
    def secure(self) -> bool:
        """Whether the broker runs in secure mode (``security.enabled``)."""
        return self.settings.security.enabled

    @property
    def client_certs(self) -> bool:
        """Whether the client listener requires a certificate (``security.kafka_client_certs``)."""
        return self.secure and self.settings.security.kafka_client_certs

    @property
    def secrets_file(self) -> Path:
        """The ``0600`` properties file the broker's ``FileConfigProvider`` reads secrets from."""
        return kafka_security_dir(self.settings) / "broker.properties"

    @property
    def keystore(self) -> Path:
        """The broker's TLS key and certificate chain (PKCS#12, from ``security init``)."""
        return leaf_dir(security_dir(self.settings), "server", "kafka") / "keystore.p12"

    def server_properties(self) -> str:
        """The broker's configuration, derived from Settings (no secret in it)."""
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
        if self.secure:
            props.update(self._secure_properties())
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def _secure_properties(self) -> dict[str, str]:
        """SASL_SSL for clients (plus certificates if configured), controller mTLS, ACLs."""
        k = self.settings.kafka
        secrets = self.secrets_file
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_PRINCIPAL}" password="${{file:{secrets}:password}}";'
        )
        mechanism = SCRAM_MECHANISM.lower()
        props = {
            "listeners": f"SASL_SSL://{k.host}:{k.port},CONTROLLER://{k.host}:{k.controller_port}",
            "advertised.listeners": f"SASL_SSL://{k.host}:{k.port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "CONTROLLER:SSL,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            f"listener.name.sasl_ssl.{mechanism}.sasl.jaas.config": jaas,
            "config.providers": "file",
            "config.providers.file.class": (
                "org.apache.kafka.common.config.provider.FileConfigProvider"
            ),
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.keystore),
            "ssl.keystore.password": f"${{file:{secrets}:keystore.password}}",
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(truststore_file(self.settings)),
            "listener.name.controller.ssl.client.auth": "required",
            "ssl.principal.mapping.rules": (
                f"RULE:^CN={BROKER_PRINCIPAL},OU=server,O=pulsecast$/{BROKER_PRINCIPAL}/,DEFAULT"
            ),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": ";".join(f"User:{name}" for name in SUPER_USERS),
        }
        if self.client_certs:
            # Kafka applies ssl.client.auth to a SASL_SSL listener only with the listener
            # prefix (KIP-684). The principal stays the SASL one: the certificate is a
            # second factor, not an identity.
            props["listener.name.sasl_ssl.ssl.client.auth"] = "required"
        return props

    def _write_secrets(self) -> None:
        """Passwords for every principal (made once) and the broker's secrets file."""
        if not self.keystore.is_file() or not truststore_file(self.settings).is_file():
            reason = (
                f"no TLS certificate for the broker at {self.keystore}; "
                "run `pulsecast security init`"
            )
            raise ServiceStartError(self.name, reason, None)
        ensure_passwords(self.settings)
        try:
            keystore_password = read_keystore_password(self.keystore.parent)
        except CertificateError as exc:
            raise ServiceStartError(self.name, str(exc), None) from exc
        body = (
            f"password={read_password(self.settings, BROKER_PRINCIPAL)}\n"
            f"keystore.password={keystore_password}\n"
        )
        write_private(self.secrets_file, body.encode())

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.secure:
            self._write_secrets()
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

    @property
    def _scram_marker(self) -> Path:
        """Written when storage was formatted with the SCRAM users (names only)."""
        return self.home / "scram-users"

    def _format_storage(self) -> None:
        if (self.log_dirs / "meta.properties").exists():
            if self.secure and not self._scram_marker.is_file():
                reason = (
                    f"storage in {self.log_dirs} was formatted without SCRAM users; "
                    "secure mode needs a fresh Kafka data folder"
                )
                raise ServiceStartError(self.name, reason, None)
            return
        log.info("formatting Kafka storage in %s", self.log_dirs)
        main = ["kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id()]
        main += ["-c", str(self.config_file)]
        if not self.secure:
            self._run_storage_tool(main, secrets=[])
            return
        passwords = [read_password(self.settings, p) for p in PRINCIPALS]
        for principal, password in zip(PRINCIPALS, passwords, strict=True):
            main += ["--add-scram", f"{SCRAM_MECHANISM}=[name={principal},password={password}]"]
        # The passwords go in a 0600 argument file (main class included, so the
        # launcher expands it), never on a command line others can read.
        argfile = self.home / "format.args"
        write_private(argfile, "\n".join(_argfile_quote(a) for a in main).encode())
        try:
            self._run_storage_tool([f"@{argfile}"], secrets=passwords)
        finally:
            argfile.unlink(missing_ok=True)
        self._scram_marker.write_text("\n".join(PRINCIPALS) + "\n")

    def _run_storage_tool(self, main_and_args: list[str], *, secrets: list[str]) -> None:
        cmd = self._java_cmd(*main_and_args)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            detail = lines[-1] if lines else str(proc.returncode)
            for secret in secrets:
                detail = detail.replace(secret, "***")
            reason = f"formatting storage failed: {detail}"
            raise ServiceStartError(self.name, reason, None)

    def _answers(self) -> bool:
        if not port_open(self.settings.kafka.host, self.settings.kafka.port):
            return False
        from confluent_kafka.admin import AdminClient

        from pulsecast.bus.clients import admin_config

        admin = AdminClient({**admin_config(self.settings), "log_level": 0})
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
            detail="KRaft, broker+controller"
            + (", SASL_SSL + ACLs" if self.secure else "")
            + (", client certificates required" if self.client_certs else ""),
        )

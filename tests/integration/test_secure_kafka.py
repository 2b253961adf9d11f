"""Kafka in secure mode against a real broker: SASL_SSL, SCRAM principals, ACLs, encrypted wire.

A secure broker (``security.enabled``, certificates from ``pulsecast security
init``) runs for this module only, with every client going through a
recording TCP proxy: the broker advertises the proxy's port, so after the
bootstrap librdkafka connects to the proxy again, and every byte any client
exchanges with the broker passes through it. Each refusal the ACL model
promises is asserted against the broker's own error codes. A second secure
broker (``security.kafka_client_certs``, started by the first test that needs
it) also requires client certificates on its SASL_SSL listener.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from pulsecast.bus.admin import TopicAdmin
from pulsecast.bus.clients import (
    admin_config,
    consumer_config,
    producer_config,
    spark_kafka_options,
)
from pulsecast.bus.topics import topic_specs
from pulsecast.cli import app
from pulsecast.config import Settings, load_settings
from pulsecast.security.audit import audit_log
from pulsecast.security.check import security_check
from pulsecast.security.kafka_acl import (
    Principal,
    acl_rules,
    read_password,
    rotate_password,
    topic_rules,
)
from pulsecast.services.errors import ServiceError
from pulsecast.services.kafka import KafkaService
from tests.integration.conftest import free_ports, write_config
from tests.integration.wiretap import WireTap

QUIET = {"log_level": 0}


class _AdvertisedViaProxy(KafkaService):
    """The project's broker, advertising the proxy's port instead of its own."""

    def __init__(self, settings: Settings, proxy_port: int) -> None:
        super().__init__(settings)
        self.proxy_port = proxy_port

    def server_properties(self) -> str:
        k = self.settings.kafka
        lines = []
        for line in super().server_properties().splitlines():
            if line.startswith("advertised.listeners="):
                line = line.replace(f":{k.port}", f":{self.proxy_port}")
            lines.append(line)
        return "\n".join(lines) + "\n"


class Broker:
    """A running broker behind a recording proxy; ``clients`` point at the proxy."""

    def __init__(self, root: Path, *, secure: bool, client_certs: bool = False) -> None:
        # A TLS broker starts in 30-40 s on a busy 2-core machine: more room than the default.
        extra: dict[str, dict[str, object]] = {"kafka": {"start_timeout_s": 150}}
        if secure:
            extra["security"] = {"enabled": "true"}
            if client_certs:
                extra["security"]["kafka_client_certs"] = "true"
        self.settings = load_settings(write_config(root, **extra))
        (proxy_port,) = free_ports(1)
        k = self.settings.kafka
        self.clients = self.settings.model_copy(
            update={"kafka": k.model_copy(update={"port": proxy_port})}
        )
        if secure:
            result = CliRunner().invoke(
                app, ["--config", str(self.settings.config_file), "security", "init"]
            )
            assert result.exit_code == 0, result.output
        self.proxy = WireTap(k.port, port=proxy_port)
        self.service = _AdvertisedViaProxy(self.settings, proxy_port)
        try:
            self.service.start()
        except ServiceError as exc:
            self.stop()
            pytest.fail(f"the {'secure ' if secure else ''}broker did not start: {exc}")

    def stop(self) -> None:
        self.service.stop()
        self.proxy.close()


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("secure-kafka"), secure=True)
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def stream(secure: Broker) -> Iterator[str]:
    """A uuid-named stream whose four topics (and ACLs) ``admin`` created."""
    yield from _stream_on(secure)


def _stream_on(broker: Broker) -> Iterator[str]:
    name = f"sec{uuid.uuid4().hex[:10]}"
    settings = _with_stream(broker.clients, name)
    admin = TopicAdmin(settings)
    names = [s.name for s in topic_specs(settings, [name])]
    assert sorted(admin.ensure(topic_specs(settings, [name]))) == sorted(names)
    yield name
    admin.delete(names)


def _with_stream(settings: Settings, name: str) -> Settings:
    streams = {**settings.streams, name: settings.streams["telemetry"]}
    return settings.model_copy(update={"streams": streams})


def _errors_of(make: Callable[[dict[str, Any]], Any], config: dict[str, Any]) -> list[KafkaError]:
    errors: list[KafkaError] = []
    make({**config, **QUIET, "error_cb": errors.append})
    return errors


def _produce(
    settings: Settings, principal: Principal, topic: str, values: list[bytes]
) -> list[KafkaError | None]:
    config = {
        **producer_config(settings, principal=principal),
        **QUIET,
        "compression.type": "none",  # the wire test looks for the payload's bytes
        "message.timeout.ms": 8000,
    }
    producer = Producer(config)
    results: list[KafkaError | None] = []
    for value in values:
        producer.produce(topic, value, on_delivery=lambda err, _msg: results.append(err))
    try:
        producer.flush(15)
    except (KafkaException, SystemError) as exc:
        # A fatal error (the broker refused an idempotent producer its id) is raised
        # from inside the delivery callback: a SystemError wrapping it at times.
        fatal = exc if isinstance(exc, KafkaException) else exc.__cause__
        assert isinstance(fatal, KafkaException), exc
        return [fatal.args[0]]
    return results


def _consume(
    settings: Settings,
    principal: Principal,
    topic: str,
    *,
    count: int,
    group: str = "pulsecast-reader-",
    subscribe: bool = False,
    until: int | None = None,
    timeout_s: float = 20.0,
) -> tuple[list[bytes], list[KafkaError]]:
    """Read ``count`` values from the beginning, or the errors met trying.

    Partition 0 is assigned unless ``subscribe``. Stops at the first error,
    or with ``until`` at the first error with that code.
    """
    config = consumer_config(
        settings,
        f"{group}{uuid.uuid4().hex[:8]}",
        from_beginning=True,
        commit=False,
        principal=principal,
    )
    consumer = Consumer({**config, **QUIET})
    if subscribe:
        consumer.subscribe([topic])
    else:
        consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    errors: list[KafkaError] = []
    deadline = time.monotonic() + timeout_s
    try:
        while (
            len(values) < count
            and not [e for e in errors if until is None or e.code() == until]
            and time.monotonic() < deadline
        ):
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                errors.append(msg.error())
            else:
                values.append(msg.value())
    finally:
        consumer.close()
    return values, errors


def _admin(settings: Settings, principal: Principal, **extra: Any) -> AdminClient:
    return AdminClient({**admin_config(settings, principal=principal), **QUIET, **extra})


def _create_topic_error(settings: Settings, principal: Principal) -> str:
    client = _admin(settings, principal)  # alive until the future resolves
    futures = client.create_topics(
        [NewTopic(f"x{uuid.uuid4().hex[:8]}.events", num_partitions=1)], request_timeout=10
    )
    try:
        next(iter(futures.values())).result()
    except KafkaException as exc:
        return str(exc.args[0].name())
    return "created"


# -- authentication ---------------------------------------------------------------------


def test_secure_kafka_refuses_a_client_without_credentials(secure: Broker) -> None:
    plain = {"bootstrap.servers": secure.clients.kafka.bootstrap}
    admin_errors: list[KafkaError] = []
    admin = AdminClient({**plain, **QUIET, "error_cb": admin_errors.append})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    producer = Producer({**plain, **QUIET, "message.timeout.ms": 4000})
    delivered: list[KafkaError | None] = []
    producer.produce("anything.events", b"x", on_delivery=lambda err, _m: delivered.append(err))
    producer.flush(10)
    assert len(delivered) == 1 and delivered[0] is not None
    assert delivered[0].code() == KafkaError._MSG_TIMED_OUT
    # TLS with the right CA but no SASL login is refused too.
    tls_only = {**plain, "security.protocol": "SSL"}
    tls_only["ssl.ca.location"] = str(secure.settings.data_dir / "security" / "truststore.pem")
    with pytest.raises(KafkaException):
        AdminClient({**tls_only, **QUIET}).list_topics(timeout=5)


def test_secure_kafka_refuses_a_wrong_password(secure: Broker) -> None:
    errors: list[KafkaError] = []
    config = {**admin_config(secure.clients), "sasl.password": "not-the-password"}
    admin = AdminClient({**config, **QUIET, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    admin.poll(1)  # serves the error callbacks
    assert [e for e in errors if e.code() == KafkaError._AUTHENTICATION], errors
    assert "invalid credentials" in next(
        e.str() for e in errors if e.code() == KafkaError._AUTHENTICATION
    )


def test_secure_kafka_refuses_one_principal_with_anothers_password(secure: Broker) -> None:
    errors: list[KafkaError] = []
    config = {
        **admin_config(secure.clients),
        "sasl.password": read_password(secure.settings, "producer"),
    }
    admin = AdminClient({**config, **QUIET, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    admin.poll(1)
    assert [e for e in errors if e.code() == KafkaError._AUTHENTICATION], errors


# -- authorisation ----------------------------------------------------------------------


def test_secure_kafka_producer_cannot_read_events(secure: Broker, stream: str) -> None:
    topic_refused = KafkaError.TOPIC_AUTHORIZATION_FAILED
    values, errors = _consume(
        secure.clients, "producer", f"{stream}.events", count=1, until=topic_refused
    )
    assert values == []
    # The fetch is refused; the group's offset lookup may be refused first.
    codes = [e.code() for e in errors]
    assert codes[-1] == topic_refused
    assert set(codes) <= {topic_refused, KafkaError.GROUP_AUTHORIZATION_FAILED}


def test_secure_kafka_producer_cannot_write_derived_topics(secure: Broker, stream: str) -> None:
    for suffix in ("predictions", "alerts"):
        results = _produce(secure.clients, "producer", f"{stream}.{suffix}", [b"x"])
        assert [e and e.code() for e in results] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    # What a producer rejects goes to the dead-letter topic, with the reason.
    assert _produce(secure.clients, "producer", f"{stream}.dlq", [b"x"]) == [None]


def test_secure_kafka_only_admin_creates_topics(secure: Broker) -> None:
    for principal in ("producer", "stream", "dashboard"):
        assert _create_topic_error(secure.clients, principal) == "TOPIC_AUTHORIZATION_FAILED"
    admin = TopicAdmin(secure.clients)
    name = f"adm{uuid.uuid4().hex[:8]}"
    settings = _with_stream(secure.clients, name)
    created = TopicAdmin(settings).ensure(topic_specs(settings, [name]))
    try:
        assert sorted(created) == sorted(
            f"{name}.{s}" for s in ("alerts", "dlq", "events", "predictions")
        )
        assert set(created) <= admin.list_topics()
    finally:
        admin.delete(created)


def test_secure_kafka_only_admin_manages_acls(secure: Broker, stream: str) -> None:
    rule = acl_rules([f"{stream}.events"])[0]
    for principal in ("producer", "stream", "dashboard"):
        client = _admin(secure.clients, principal)  # alive until the future resolves
        futures = client.create_acls([rule.binding()], request_timeout=10)
        with pytest.raises(KafkaException) as info:
            next(iter(futures.values())).result()
        assert info.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED


def test_secure_kafka_dashboard_reads_derived_topics_only(secure: Broker, stream: str) -> None:
    # Without DESCRIBE the topic is hidden from dashboard's metadata: subscribing says so.
    values, errors = _consume(
        secure.clients, "dashboard", f"{stream}.events", count=1, subscribe=True
    )
    assert values == []
    assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    # Allowed to write nowhere, its idempotent producer does not even get a producer id.
    results = _produce(secure.clients, "dashboard", f"{stream}.predictions", [b"x"])
    assert [e and e.code() for e in results] == [KafkaError.CLUSTER_AUTHORIZATION_FAILED]


def test_secure_kafka_stream_cannot_write_events(secure: Broker, stream: str) -> None:
    results = _produce(secure.clients, "stream", f"{stream}.events", [b"x"])
    assert [e and e.code() for e in results] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]


def test_secure_kafka_consumer_groups_outside_the_acls_are_refused(
    secure: Broker, stream: str
) -> None:
    config = consumer_config(secure.clients, f"rogue-{uuid.uuid4().hex[:8]}", principal="stream")
    consumer = Consumer({**config, **QUIET, "auto.offset.reset": "earliest"})
    consumer.subscribe([f"{stream}.events"])
    errors: list[KafkaError] = []
    deadline = time.monotonic() + 15
    try:
        while not errors and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is not None:
                errors.append(msg.error())
    finally:
        consumer.close()
    assert [e.code() for e in errors] == [KafkaError.GROUP_AUTHORIZATION_FAILED]


# -- the allowed paths ------------------------------------------------------------------


def test_secure_kafka_pipeline_paths_work(secure: Broker) -> None:
    name = f"pipe{uuid.uuid4().hex[:8]}"
    c = _with_stream(secure.clients, name)
    admin = TopicAdmin(c)
    topics = admin.ensure(topic_specs(c, [name]))
    try:
        events = [json.dumps({"n": i, "id": uuid.uuid4().hex}).encode() for i in range(20)]
        assert _produce(c, "producer", f"{name}.events", events) == [None] * 20
        read, errors = _consume(
            c, "stream", f"{name}.events", count=20, group="pulsecast-stream-", subscribe=True
        )
        assert errors == [] and sorted(read) == sorted(events)
        assert _produce(c, "stream", f"{name}.dlq", events[:3]) == [None] * 3
        assert _produce(c, "stream", f"{name}.predictions", [b'{"p": 1.5}']) == [None]
        predictions, errors = _consume(
            c, "dashboard", f"{name}.predictions", count=1, group="pulsecast-dashboard-"
        )
        assert errors == [] and predictions == [b'{"p": 1.5}']
        dead, errors = _consume(c, "dashboard", f"{name}.dlq", count=3, subscribe=True)
        assert errors == [] and dead == events[:3]
    finally:
        admin.delete(topics)


def test_secure_kafka_acl_changes_are_audited_and_removed_with_topics(secure: Broker) -> None:
    name = f"aud{uuid.uuid4().hex[:8]}"
    settings = _with_stream(secure.clients, name)
    admin = TopicAdmin(settings)
    topics = admin.ensure(topic_specs(settings, [name]))
    assert admin.ensure(topic_specs(settings, [name])) == []  # idempotent: nothing new
    records = [r for r in audit_log(secure.settings).records() if name in r["target"]]
    assert [r["action"] for r in records] == ["topic.create", "acl.create"]
    assert f"User:producer WRITE topic name {name}.events" in records[1]["details"]["acls"]
    assert admin.ensure_acls(topics) == []
    admin.delete(topics)
    records = [r for r in audit_log(secure.settings).records() if name in r["target"]]
    assert [r["action"] for r in records][-2:] == ["topic.delete", "acl.delete"]
    assert records[-1]["details"] == {"acls": len(topic_rules(topics))}  # 9 for one stream
    assert audit_log(secure.settings).verify().ok


def test_secure_kafka_security_check_reports_sasl_ssl_with_acls(secure: Broker) -> None:
    kafka = [f for f in security_check(secure.settings) if f.area == "kafka"]
    assert [f.status for f in kafka] == ["ok"], kafka
    assert kafka[0].text.startswith("SASL_SSL (SCRAM-SHA-512) on port")


# -- the wire ---------------------------------------------------------------------------


def _marker_round(broker: Broker, principal: Principal, topic: str) -> tuple[bytes, bytes]:
    """Produce a marker through the proxy; the marker and what the proxy saw meanwhile."""
    marker = f"PULSECAST-WIRE-MARKER-{uuid.uuid4().hex}".encode()
    payload = marker + b" " + bytes(range(256)) * 64  # 16 KiB that lz4/TLS cannot hide in
    broker.proxy.clear()
    assert _produce(broker.clients, principal, topic, [payload]) == [None]
    return marker, broker.proxy.captured()


def test_secure_kafka_wire_carries_no_plaintext(secure: Broker, stream: str) -> None:
    marker, seen = _marker_round(secure, "producer", f"{stream}.events")
    assert len(seen) > 16 * 1024  # the event went through the proxy...
    openings = list(secure.proxy.openings)
    assert openings and all(o.startswith(b"\x16\x03") for o in openings)  # ...over TLS only
    assert marker not in seen
    assert marker[:16] not in seen


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path, secure=False)
    yield broker
    broker.stop()


def test_secure_kafka_wire_control_plaintext_broker_shows_the_marker(plain: Broker) -> None:
    # The same capture on a plaintext broker does see the marker: the proxy
    # would catch plaintext if the secure broker let any through.
    name = f"pln{uuid.uuid4().hex[:8]}"
    settings = _with_stream(plain.clients, name)
    TopicAdmin(settings).ensure(topic_specs(settings, [name]))
    marker, seen = _marker_round(plain, "producer", f"{name}.events")
    assert marker in seen
    assert not [o for o in plain.proxy.openings if o.startswith(b"\x16\x03")]


def _api_versions(host: str, port: int, context: ssl.SSLContext) -> bytes:
    """Send an ApiVersions v0 request over TLS; the response's first bytes."""
    header = struct.pack(">hhih", 18, 0, 7, -1)  # api key, version, correlation id, no client id
    with socket.create_connection((host, port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(struct.pack(">i", len(header)) + header)
            return tls.recv(8)


def test_secure_kafka_controller_port_requires_the_broker_certificate(secure: Broker) -> None:
    k = secure.settings.kafka
    root = secure.settings.data_dir / "security"
    anonymous = ssl.create_default_context(cafile=str(root / "truststore.pem"))
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        if not _api_versions(k.host, k.controller_port, anonymous):
            raise ConnectionResetError  # closed without an answer
    # Control: with the broker's own certificate the same request is answered.
    broker = ssl.create_default_context(cafile=str(root / "truststore.pem"))
    server = root / "servers" / "kafka"
    broker.load_cert_chain(server / "cert.pem", server / "key.pem")
    answer = _api_versions(k.host, k.controller_port, broker)
    assert answer[4:8] == struct.pack(">i", 7)  # the response to our correlation id


def test_secure_kafka_rotated_password_replaces_the_old_one(secure: Broker) -> None:
    old = read_password(secure.settings, "dashboard")
    client = _admin(secure.clients, "admin")  # alive until the futures resolve
    rotate_password(secure.settings, client, "dashboard")
    new = read_password(secure.settings, "dashboard")
    assert new != old
    assert len(audit_log(secure.settings).verify().problems) == 0
    assert [r["action"] for r in audit_log(secure.settings).records()][-1] == (
        "kafka.password.rotate"
    )
    deadline = time.monotonic() + 15  # the broker applies the change from its metadata log
    while True:
        errors: list[KafkaError] = []
        stale = {**admin_config(secure.clients, principal="dashboard"), "sasl.password": old}
        stale_client = AdminClient({**stale, **QUIET, "error_cb": errors.append})
        try:
            stale_client.list_topics(timeout=5)
        except KafkaException:
            stale_client.poll(1)
            if [e for e in errors if e.code() == KafkaError._AUTHENTICATION]:
                break
        assert time.monotonic() < deadline, "the old password still works"
        time.sleep(0.5)
    fresh = _admin(secure.clients, "dashboard")
    assert fresh.list_topics(timeout=10).topics is not None


def test_secure_kafka_spark_reads_and_writes_with_the_stream_principal(
    secure: Broker,
    spark: SparkSession,
) -> None:
    name = f"spk{uuid.uuid4().hex[:8]}"
    c = _with_stream(secure.clients, name)
    admin = TopicAdmin(c)
    topics = admin.ensure(topic_specs(c, [name]))
    try:
        events = [f'{{"n": {i}}}'.encode() for i in range(5)]
        assert _produce(c, "producer", f"{name}.events", events) == [None] * 5
        rows = (
            spark.read.format("kafka")
            .options(**spark_kafka_options(c))
            .option("subscribe", f"{name}.events")
            .option("startingOffsets", "earliest")
            .load()
            .selectExpr("value")
            .collect()
        )
        assert sorted(bytes(r.value) for r in rows) == sorted(events)
        (
            spark.createDataFrame([("k", "dead")], "key string, value string")
            .write.format("kafka")
            .options(**spark_kafka_options(c))
            .option("topic", f"{name}.dlq")
            .save()
        )
        dead, errors = _consume(c, "dashboard", f"{name}.dlq", count=1)
        assert errors == [] and dead == [b"dead"]
        # The same source as dashboard is refused: it may not read events.
        refused = (
            spark.read.format("kafka")
            .options(**spark_kafka_options(c, principal="dashboard"))
            .option("kafka.request.timeout.ms", "5000")
            .option("kafka.default.api.timeout.ms", "10000")
            .option("subscribe", f"{name}.events")
            .option("startingOffsets", "earliest")
            .load()
        )
        with pytest.raises(Exception, match=r"TopicAuthorizationException") as info:
            refused.collect()
        assert "TopicAuthorizationException: Topic authorization failed." in str(info.value)
    finally:
        admin.delete(topics)


# -- client certificates (security.kafka_client_certs) ----------------------------------

CERT_KEYS = ("ssl.certificate.location", "ssl.key.location")


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A second secure broker whose SASL_SSL listener also requires client certificates."""
    broker = Broker(tmp_path_factory.mktemp("mtls-kafka"), secure=True, client_certs=True)
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def mtls_stream(mtls: Broker) -> Iterator[str]:
    """A stream on ``mtls``, created by ``admin`` presenting its certificate."""
    yield from _stream_on(mtls)


def _foreign_certificate(folder: Path, principal: str) -> tuple[Path, Path]:
    """A client certificate for ``principal`` from a CA the broker does not trust."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str, unit: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pulsecast"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("pulsecast local CA", "ca")  # the same names, another key
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(principal, "client"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def _refused(config: dict[str, Any]) -> list[KafkaError]:
    """What a client with ``config`` meets: no metadata, no delivery; the errors it was told."""
    errors: list[KafkaError] = []
    admin = AdminClient({**config, **QUIET, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=4)
    admin.poll(1)  # serves the error callbacks
    producer = Producer({**config, **QUIET, "message.timeout.ms": 3000})
    delivered: list[KafkaError | None] = []
    producer.produce("anything.events", b"x", on_delivery=lambda err, _m: delivered.append(err))
    producer.flush(8)
    assert len(delivered) == 1 and delivered[0] is not None
    assert delivered[0].code() == KafkaError._MSG_TIMED_OUT
    return errors


def _alerts(errors: list[KafkaError]) -> set[str]:
    """The TLS alerts the broker sent, as librdkafka reports them (``_TRANSPORT`` errors)."""
    found = (re.search(r"ssl/tls alert ([a-z ]+):", e.str()) for e in errors)
    return {m.group(1) for m in found if m is not None}


def test_secure_kafka_client_certs_password_and_certificate_connect(
    mtls: Broker, mtls_stream: str
) -> None:
    c = _with_stream(mtls.clients, mtls_stream)
    assert all(k in producer_config(c) for k in CERT_KEYS)
    events = [json.dumps({"n": i, "id": uuid.uuid4().hex}).encode() for i in range(10)]
    assert _produce(c, "producer", f"{mtls_stream}.events", events) == [None] * 10
    read, errors = _consume(
        c, "stream", f"{mtls_stream}.events", count=10, group="pulsecast-stream-", subscribe=True
    )
    assert errors == [] and sorted(read) == sorted(events)
    # The SASL login still names the principal the ACLs see: producer may not read.
    values, errors = _consume(
        c,
        "producer",
        f"{mtls_stream}.events",
        count=1,
        until=KafkaError.TOPIC_AUTHORIZATION_FAILED,
    )
    assert values == [] and errors[-1].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_secure_kafka_client_certs_a_password_without_a_certificate_is_refused(
    mtls: Broker,
) -> None:
    stolen = {k: v for k, v in producer_config(mtls.clients).items() if k not in CERT_KEYS}
    assert stolen["sasl.password"] == read_password(mtls.settings, "producer")
    errors = _refused(stolen)
    # The broker ends the TLS handshake: no certificate, no SASL login at all.
    assert _alerts(errors) == {"bad certificate"}, errors
    # Control: the same client with its certificate is answered.
    assert _admin(mtls.clients, "producer").list_topics(timeout=10).topics is not None


def test_secure_kafka_client_certs_a_certificate_from_another_ca_is_refused(
    mtls: Broker, tmp_path: Path
) -> None:
    cert_file, key_file = _foreign_certificate(tmp_path / "foreign", "producer")
    config = {
        **producer_config(mtls.clients),
        "ssl.certificate.location": str(cert_file),
        "ssl.key.location": str(key_file),
    }
    errors = _refused(config)
    assert _alerts(errors) == {"bad certificate"}, errors


def test_secure_kafka_client_certs_security_check_says_they_are_required(mtls: Broker) -> None:
    kafka = [f for f in security_check(mtls.settings) if f.area == "kafka"]
    assert [f.status for f in kafka] == ["ok"], kafka
    assert ", client certificates from the local CA required, " in kafka[0].text


def test_secure_kafka_client_certs_spark_presents_its_keystore(
    mtls: Broker, mtls_stream: str, spark: SparkSession
) -> None:
    c = _with_stream(mtls.clients, mtls_stream)
    options = spark_kafka_options(c)
    assert options["kafka.ssl.keystore.type"] == "PKCS12"
    marker = f"spark-{uuid.uuid4().hex}".encode()
    assert _produce(c, "producer", f"{mtls_stream}.events", [marker]) == [None]
    rows = (
        spark.read.format("kafka")
        .options(**options)
        .option("subscribe", f"{mtls_stream}.events")
        .option("startingOffsets", "earliest")
        .load()
        .selectExpr("value")
        .collect()
    )
    assert marker in [bytes(r.value) for r in rows]
    (
        spark.createDataFrame([("k", "dead-mtls")], "key string, value string")
        .write.format("kafka")
        .options(**options)
        .option("topic", f"{mtls_stream}.dlq")
        .save()
    )
    dead, errors = _consume(c, "dashboard", f"{mtls_stream}.dlq", count=1, subscribe=True)
    assert errors == [] and dead == [b"dead-mtls"]

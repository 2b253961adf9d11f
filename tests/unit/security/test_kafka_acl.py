"""Kafka's secure mode without a broker: server.properties, client configs, ACL set, passwords."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pulsecast.bus.clients import (
    admin_config,
    consumer_config,
    producer_config,
    spark_kafka_options,
)
from pulsecast.config import Settings
from pulsecast.security.errors import SecurityError
from pulsecast.security.kafka_acl import (
    PRINCIPALS,
    AclRule,
    acl_rules,
    ensure_passwords,
    password_file,
    read_password,
)
from pulsecast.services.kafka import KafkaService
from pulsecast.testing import settings_for

PORTS = {"port": 19092, "controller_port": 19093}


def _props(settings: Settings) -> dict[str, str]:
    text = KafkaService(settings).server_properties()
    return dict(line.split("=", 1) for line in text.splitlines())


@pytest.fixture
def secure(tmp_path: Path) -> Settings:
    settings = settings_for(tmp_path / "state", kafka=PORTS, security={"enabled": True})
    ensure_passwords(settings)
    return settings


def test_kafka_acl_plain_server_properties_have_no_security(tmp_path: Path) -> None:
    props = _props(settings_for(tmp_path, kafka=PORTS))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert not [k for k in props if k.startswith(("ssl.", "sasl.", "authorizer", "super"))]


def test_kafka_acl_secure_server_properties(secure: Settings) -> None:
    props = _props(secure)
    root = secure.data_dir / "security"
    assert props["listeners"] == "SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:19092"
    assert props["listener.security.protocol.map"] == "CONTROLLER:SSL,SASL_SSL:SASL_SSL"
    assert "PLAINTEXT" not in "".join(v for k, v in props.items() if "listener" in k)
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["ssl.principal.mapping.rules"] == (
        "RULE:^CN=kafka,OU=server,O=pulsecast$/kafka/,DEFAULT"
    )
    assert props["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:kafka"
    assert props["ssl.keystore.location"] == str(root / "servers" / "kafka" / "keystore.p12")
    assert props["ssl.truststore.type"] == "PEM"
    assert props["ssl.truststore.location"] == str(root / "truststore.pem")
    secrets = root / "kafka" / "broker.properties"
    assert props["ssl.keystore.password"] == f"${{file:{secrets}:keystore.password}}"
    assert (
        f'password="${{file:{secrets}:password}}"'
        in (props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"])
    )


def test_kafka_acl_server_properties_hold_no_password(secure: Settings) -> None:
    text = KafkaService(secure).server_properties()
    for principal in PRINCIPALS:
        assert read_password(secure, principal) not in text


def test_kafka_acl_start_without_certificates_fails_clearly(secure: Settings) -> None:
    from pulsecast.services.errors import ServiceStartError

    service = KafkaService(secure)
    with pytest.raises(ServiceStartError, match="run `pulsecast security init`"):
        service._write_config()


def test_kafka_acl_client_configs_plain(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, kafka=PORTS)
    for config in (
        producer_config(settings),
        consumer_config(settings, "g"),
        admin_config(settings),
    ):
        assert config["bootstrap.servers"] == "127.0.0.1:19092"
        assert not [k for k in config if k.startswith(("security", "sasl", "ssl"))]
    assert spark_kafka_options(settings) == {"kafka.bootstrap.servers": "127.0.0.1:19092"}


def test_kafka_acl_client_configs_secure(secure: Settings) -> None:
    ca = str(secure.data_dir / "security" / "truststore.pem")
    expected = {
        producer_config(secure)["sasl.username"]: "producer",
        consumer_config(secure, "g")["sasl.username"]: "stream",
        admin_config(secure)["sasl.username"]: "admin",
        consumer_config(secure, "g", principal="dashboard")["sasl.username"]: "dashboard",
    }
    assert all(got == want for got, want in expected.items())
    config = producer_config(secure, principal="producer")
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert config["sasl.password"] == read_password(secure, "producer")
    assert config["ssl.ca.location"] == ca
    assert config["enable.idempotence"] is True


def test_kafka_acl_spark_options_secure(secure: Settings) -> None:
    options = spark_kafka_options(secure)
    password = read_password(secure, "stream")
    assert options == {
        "kafka.bootstrap.servers": "127.0.0.1:19092",
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule "
        f'required username="stream" password="{password}";',
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": str(secure.data_dir / "security" / "truststore.pem"),
    }


def test_kafka_acl_passwords_are_private_random_and_made_once(secure: Settings) -> None:
    files = [password_file(secure, p) for p in PRINCIPALS]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert stat.S_IMODE(files[0].parent.stat().st_mode) == 0o700
    values = [read_password(secure, p) for p in PRINCIPALS]
    assert len(set(values)) == len(PRINCIPALS) and all(len(v) >= 40 for v in values)
    assert ensure_passwords(secure) == []
    assert [read_password(secure, p) for p in PRINCIPALS] == values


def test_kafka_acl_missing_password_is_a_clear_error(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, security={"enabled": True})
    path = tmp_path.resolve() / "security" / "kafka" / "passwords" / "producer"
    with pytest.raises(SecurityError) as info:
        producer_config(settings)
    assert str(info.value) == (
        f"no Kafka password for 'producer' in {path}; start Kafka with `pulsecast up`"
    )
    with pytest.raises(SecurityError, match=r"^unknown Kafka principal 'root'"):
        read_password(settings, "root")  # type: ignore[arg-type]


def test_kafka_acl_rules_are_least_privilege_per_principal() -> None:
    rules = acl_rules(["s.events", "s.dlq", "s.predictions", "s.alerts", "other"])
    by_principal: dict[str, set[tuple[str, str, str, str]]] = {}
    for r in rules:
        by_principal.setdefault(r.principal, set()).add(
            (r.operation, r.resource_type, r.name, r.pattern)
        )
    assert by_principal == {
        "producer": {
            ("WRITE", "TOPIC", "s.events", "LITERAL"),
            ("WRITE", "TOPIC", "s.dlq", "LITERAL"),  # what it rejects, with the reason
        },
        "stream": {
            ("READ", "TOPIC", "s.events", "LITERAL"),
            ("WRITE", "TOPIC", "s.dlq", "LITERAL"),
            ("WRITE", "TOPIC", "s.predictions", "LITERAL"),
            ("WRITE", "TOPIC", "s.alerts", "LITERAL"),
            ("READ", "GROUP", "spark-kafka-source", "PREFIXED"),
            ("READ", "GROUP", "pulsecast-stream", "PREFIXED"),
            ("READ", "GROUP", "pulsecast-reader-", "PREFIXED"),
        },
        "dashboard": {
            ("READ", "TOPIC", "s.dlq", "LITERAL"),
            ("READ", "TOPIC", "s.predictions", "LITERAL"),
            ("READ", "TOPIC", "s.alerts", "LITERAL"),
            ("READ", "GROUP", "pulsecast-dashboard", "PREFIXED"),
            ("READ", "GROUP", "pulsecast-reader-", "PREFIXED"),
        },
    }
    # "admin" needs none (super user); nobody may create, delete or alter anything.
    assert {r.operation for r in rules} == {"READ", "WRITE"}
    assert acl_rules(["s.events"]) == acl_rules(["s.events", "s.events"])


def test_kafka_acl_rule_binding_and_text() -> None:
    rule = AclRule("producer", "TOPIC", "s.events", "LITERAL", "WRITE")
    binding = rule.binding()
    assert binding.principal == "User:producer" and binding.host == "*"
    assert (binding.restype.name, binding.resource_pattern_type.name) == ("TOPIC", "LITERAL")
    assert (binding.operation.name, binding.permission_type.name) == ("WRITE", "ALLOW")
    assert str(rule) == "User:producer WRITE topic name s.events"


def _kafka_findings(settings: Settings) -> list[tuple[str, str]]:
    from pulsecast.security.check import security_check

    return [(f.status, f.text) for f in security_check(settings) if f.area == "kafka"]


def test_kafka_acl_security_check_reads_the_brokers_last_configuration(
    tmp_path: Path, secure: Settings
) -> None:
    assert _kafka_findings(settings_for(tmp_path / "plain")) == [
        ("off", "security.enabled is false: plaintext, no auth, no ACLs")
    ]
    assert _kafka_findings(secure) == [("warn", "SASL_SSL configured, broker not started yet")]
    server = secure.data_dir / "kafka" / "server.properties"
    server.parent.mkdir(parents=True)
    server.write_text(KafkaService(secure).server_properties())
    [(status, text)] = _kafka_findings(secure)
    assert status == "ok" and text.startswith("SASL_SSL (SCRAM-SHA-512) on port 19092")
    password_file(secure, "stream").chmod(0o644)
    assert _kafka_findings(secure)[-1] == (
        "fail",
        f"readable by others: {password_file(secure, 'stream')}",
    )
    plain = settings_for(secure.data_dir, kafka=PORTS)
    server.write_text(KafkaService(plain).server_properties())
    assert _kafka_findings(secure)[0] == (
        "fail",
        f"broker last started without SASL_SSL and ACLs ({server}); restart it",
    )


def test_kafka_acl_status_says_secure(tmp_path: Path, secure: Settings) -> None:
    assert KafkaService(secure).status().detail == "KRaft, broker+controller, SASL_SSL + ACLs"
    assert KafkaService(settings_for(tmp_path)).status().detail == "KRaft, broker+controller"

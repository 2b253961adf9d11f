"""Client certificates on Kafka (``security.kafka_client_certs``), without a broker.

Which files each client presents, for which principal, what the broker's
configuration requires and what ``security check`` says, with the setting on
and off.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from pulsecast.bus.clients import (
    admin_config,
    client_cert_dir,
    consumer_config,
    producer_config,
    security_config,
    spark_kafka_options,
)
from pulsecast.config import Settings, load_settings
from pulsecast.security.certs import init_certificates
from pulsecast.security.check import security_check
from pulsecast.security.errors import CertificateError
from pulsecast.security.kafka_acl import ensure_passwords
from pulsecast.services.kafka import KafkaService
from pulsecast.testing import settings_for

PORTS = {"port": 19092, "controller_port": 19093}
CLIENT_KEYS = ("ssl.certificate.location", "ssl.key.location")
SPARK_KEYS = (
    "kafka.ssl.keystore.type",
    "kafka.ssl.keystore.location",
    "kafka.ssl.keystore.password",
)


def _secure(root: Path, *, client_certs: bool, certs: bool = True) -> Settings:
    settings = settings_for(
        root / "state",
        kafka=PORTS,
        security={"enabled": True, "kafka_client_certs": client_certs},
    )
    ensure_passwords(settings)
    if certs:
        init_certificates(settings.data_dir / "security", ca_days=30, leaf_days=10)
    return settings


@pytest.fixture
def with_certs(tmp_path: Path) -> Settings:
    return _secure(tmp_path, client_certs=True)


def _configs(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every Python client's librdkafka config, by the principal it uses."""
    return {
        "producer": producer_config(settings),
        "stream": consumer_config(settings, "g"),
        "dashboard": consumer_config(settings, "g", principal="dashboard"),
        "admin": admin_config(settings),
    }


def test_client_certs_setting_is_off_by_default_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().security.kafka_client_certs is False
    monkeypatch.setenv("PULSECAST_SECURITY__KAFKA_CLIENT_CERTS", "true")
    assert load_settings().security.kafka_client_certs is True


def test_client_certs_each_python_client_presents_its_principals_certificate(
    with_certs: Settings,
) -> None:
    clients = with_certs.data_dir / "security" / "clients"
    for principal, config in _configs(with_certs).items():
        assert config["sasl.username"] == principal  # the password still names the principal
        assert config["ssl.certificate.location"] == str(clients / principal / "cert.pem")
        assert config["ssl.key.location"] == str(clients / principal / "key.pem")
        cert = x509.load_pem_x509_certificate(Path(config["ssl.certificate.location"]).read_bytes())
        assert cert.subject.rfc4514_string() == f"CN={principal},OU=client,O=pulsecast"
        key = Path(config["ssl.key.location"])
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_client_certs_the_brokers_own_login_uses_its_server_certificate(
    with_certs: Settings,
) -> None:
    server = with_certs.data_dir / "security" / "servers" / "kafka"
    assert client_cert_dir(with_certs, "kafka") == server
    assert security_config(with_certs, "kafka")["ssl.certificate.location"] == str(
        server / "cert.pem"
    )


def test_client_certs_spark_presents_the_principals_pkcs12_keystore(with_certs: Settings) -> None:
    for principal in ("stream", "dashboard"):
        options = spark_kafka_options(with_certs, principal=principal)
        folder = with_certs.data_dir / "security" / "clients" / principal
        assert options["kafka.ssl.keystore.type"] == "PKCS12"
        assert options["kafka.ssl.keystore.location"] == str(folder / "keystore.p12")
        password = options["kafka.ssl.keystore.password"]
        assert password == (folder / "keystore.password").read_text()
        keystore = pkcs12.load_pkcs12((folder / "keystore.p12").read_bytes(), password.encode())
        assert keystore.cert is not None
        assert keystore.cert.certificate.subject.rfc4514_string() == (
            f"CN={principal},OU=client,O=pulsecast"
        )
        assert stat.S_IMODE((folder / "keystore.p12").stat().st_mode) == 0o600
        assert stat.S_IMODE((folder / "keystore.password").stat().st_mode) == 0o600
        # SASL and the trust anchor are unchanged.
        assert options["kafka.security.protocol"] == "SASL_SSL"
        assert f'username="{principal}"' in options["kafka.sasl.jaas.config"]
        assert options["kafka.ssl.truststore.type"] == "PEM"


def test_client_certs_off_presents_no_certificate(tmp_path: Path) -> None:
    settings = _secure(tmp_path, client_certs=False)
    for config in _configs(settings).values():
        assert config["security.protocol"] == "SASL_SSL"
        assert not [k for k in CLIENT_KEYS if k in config]
    options = spark_kafka_options(settings)
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert not [k for k in options if k.startswith("kafka.ssl.keystore")]


def test_client_certs_need_secure_mode(tmp_path: Path) -> None:
    plain = settings_for(tmp_path, kafka=PORTS, security={"kafka_client_certs": True})
    for config in _configs(plain).values():
        assert not [k for k in config if k.startswith(("security", "sasl", "ssl"))]
    assert spark_kafka_options(plain) == {"kafka.bootstrap.servers": "127.0.0.1:19092"}
    props = KafkaService(plain).server_properties()
    assert "ssl.client.auth" not in props


def test_client_certs_missing_certificate_is_a_clear_error(tmp_path: Path) -> None:
    settings = _secure(tmp_path, client_certs=True, certs=False)
    folder = settings.data_dir / "security" / "clients" / "producer"
    with pytest.raises(CertificateError) as info:
        producer_config(settings)
    assert str(info.value) == (
        f"no client certificate for 'producer' in {folder}; run `pulsecast security init`"
    )
    with pytest.raises(CertificateError, match="no client certificate for 'stream'"):
        spark_kafka_options(settings)


def test_client_certs_spark_without_a_keystore_is_a_clear_error(with_certs: Settings) -> None:
    folder = with_certs.data_dir / "security" / "clients" / "stream"
    (folder / "keystore.password").unlink()
    with pytest.raises(CertificateError) as info:
        spark_kafka_options(with_certs)
    assert str(info.value) == (f"no keystore password in {folder}; run `pulsecast security init`")


def _props(settings: Settings) -> dict[str, str]:
    text = KafkaService(settings).server_properties()
    return dict(line.split("=", 1) for line in text.splitlines())


def test_client_certs_broker_requires_them_on_the_client_listener_only_when_on(
    tmp_path: Path, with_certs: Settings
) -> None:
    props = _props(with_certs)
    assert props["listener.name.sasl_ssl.ssl.client.auth"] == "required"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["ssl.truststore.location"] == str(
        with_certs.data_dir / "security" / "truststore.pem"
    )
    assert "ssl.client.auth" not in props  # never on a listener without the prefix
    off = _props(_secure(tmp_path / "off", client_certs=False))
    assert "listener.name.sasl_ssl.ssl.client.auth" not in off
    assert KafkaService(with_certs).status().detail == (
        "KRaft, broker+controller, SASL_SSL + ACLs, client certificates required"
    )


def _kafka_findings(settings: Settings) -> list[tuple[str, str]]:
    return [(f.status, f.text) for f in security_check(settings) if f.area == "kafka"]


def _started_as(settings: Settings, configured: Settings) -> None:
    server = configured.data_dir / "kafka" / "server.properties"
    server.parent.mkdir(parents=True, exist_ok=True)
    server.write_text(KafkaService(settings).server_properties())


def test_client_certs_security_check_says_whether_they_are_required(
    with_certs: Settings,
) -> None:
    without = with_certs.model_copy(
        update={"security": with_certs.security.model_copy(update={"kafka_client_certs": False})}
    )
    _started_as(with_certs, with_certs)
    [(status, text)] = _kafka_findings(with_certs)
    assert status == "ok"
    assert text == (
        "SASL_SSL (SCRAM-SHA-512) on port 19092, client certificates from the local CA "
        "required, no plaintext listener; controller mutual TLS; StandardAuthorizer, deny "
        "unless an ACL allows"
    )
    assert _kafka_findings(without)[1] == (
        "warn",
        "security.kafka_client_certs is off but the broker last started with requiring "
        "client certificates; restart it",
    )
    _started_as(without, with_certs)
    [(status, text), mismatch] = _kafka_findings(with_certs)
    assert status == "ok" and ", no client certificates, " in text
    assert mismatch == (
        "warn",
        "security.kafka_client_certs is on but the broker last started without requiring "
        "client certificates; restart it",
    )
    assert [s for s, _ in _kafka_findings(without)] == ["ok"]

"""Rendering the templates' parameters from Settings, and the deploy plan built on them."""

from __future__ import annotations

import doctest
import hashlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import SecretStr

from pulsecast import __version__
from pulsecast.config import Settings, load_settings
from pulsecast.deploy import DeployError, UnknownTemplateError, plan_deploy, render_parameters
from pulsecast.deploy import parameters as parameters_module
from pulsecast.deploy import toml as toml_module
from pulsecast.deploy.command import MAX_TEMPLATE_BODY_BYTES
from pulsecast.deploy.parameters import (
    TEMPLATES,
    cloud_settings,
    parameter_name,
    settings_blob,
    settings_from_blob,
)
from pulsecast.errors import ConfigError
from pulsecast.testing import settings_for
from tests.unit.infra.conftest import TEMPLATES_DIR

#: Template parameters no setting stands for (the image, alarm thresholds to come
#: from the monitoring settings, MSK's Kafka version).
TEMPLATE_ONLY = {
    "AmiId",
    "MskKafkaVersion",
    "LatencyObjectiveSeconds",
    "DeadLetterShare",
    "AnomalyRateThreshold",
    "ModelErrorDriftRatio",
}

CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-aaaa-bbbb-cccc-1234567890ab"


@pytest.fixture
def custom(tmp_path: Path) -> Settings:
    """Settings that differ from the defaults in every way the deployment carries."""
    return settings_for(
        tmp_path / "state",
        aws={
            "region": "eu-west-1",
            "stack_prefix": "acme",
            "kafka_instance_type": "m7i.2xlarge",
            "hdfs_volume_gb": 2000,
            "msk_brokers": 4,
            "certificate_arn": CERTIFICATE,
            "shield_advanced": True,
            "package": "pulsecast @ https://example.com/pulsecast-0.1.0-py3-none-any.whl",
        },
        kafka={"port": 19092, "partitions": 12, "retention_hours": 72},
        ingest={"port": 18088},
        hdfs={"namenode_port": 18020},
        stream={"trigger_interval_s": 5.0},
        postgres={"dsn": "postgresql://app:s3cret@db.internal/pulsecast"},
        streams={
            "orders": {
                "key_field": "customer",
                "fields": {
                    "customer": {"type": "str"},
                    "amount": {"type": "float", "min": 0},
                },
            }
        },
    )


def test_parameter_names_mirror_setting_names() -> None:
    assert parameter_name("aws.kafka_instance_type") == "KafkaInstanceType"
    assert parameter_name("kafka.port") == "KafkaPort"
    assert parameter_name("hdfs.datanode_ipc_port") == "HdfsDatanodeIpcPort"
    assert parameter_name("stream.trigger_interval_s") == "StreamTriggerIntervalS"


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_render_parameters_are_the_settings(custom: Settings, name: str) -> None:
    rendered = render_parameters(custom, name)
    expected_common = {
        "StackPrefix": "acme",
        "CertificateArn": CERTIFICATE,
        "ShieldAdvanced": "true",
        "AlarmEmail": "",
        "IngestPort": "18088",
        "PulsecastPackage": custom.aws.package,
    }
    assert {k: rendered[k] for k in expected_common} == expected_common
    if name == "self-managed":
        assert rendered["KafkaInstanceType"] == "m7i.2xlarge"
        assert rendered["HdfsVolumeGb"] == "2000"
        assert rendered["KafkaPort"] == "19092"
        assert rendered["HdfsNamenodePort"] == "18020"
    else:
        assert rendered["MskBrokers"] == "4"
        assert rendered["KafkaPartitions"] == "12"
        assert rendered["KafkaRetentionHours"] == "72"
        assert rendered["StreamTriggerIntervalS"] == "5.0"
        assert rendered["SagemakerImage"] == ""
    assert list(rendered) == TEMPLATES[name].parameter_names


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_render_parameters_are_the_templates_parameters(
    templates: dict[str, Any], name: str, settings: Settings
) -> None:
    declared = templates[name]["Parameters"]
    rendered = render_parameters(settings, name)
    assert set(rendered) <= set(declared)
    assert set(declared) - set(rendered) <= TEMPLATE_ONLY
    # The templates' defaults are pulsecast's defaults.
    for key, value in rendered.items():
        if "Default" in declared[key]:
            assert str(declared[key]["Default"]) == value, key


def test_render_the_package_defaults_to_this_version(settings: Settings) -> None:
    assert render_parameters(settings, "managed")["PulsecastPackage"] == (
        f"pulsecast=={__version__}"
    )


def test_render_the_settings_round_trip_without_secrets_or_local_paths(
    custom: Settings, tmp_path: Path
) -> None:
    blob = render_parameters(custom, "self-managed")["PulsecastSettings"]
    text = settings_from_blob(blob)
    assert "s3cret" not in text and "dsn" not in text
    assert str(tmp_path) not in text
    assert "[aws]" not in text and "[paths]" not in text
    (tmp_path / "deployed.toml").write_text(text)
    deployed = load_settings(tmp_path / "deployed.toml", env={})
    assert deployed.streams == custom.streams
    assert deployed.kafka.partitions == 12
    assert deployed.kafka.port == 19092
    assert deployed.stream.trigger_interval_s == 5.0
    assert deployed.postgres.dsn is None
    assert deployed.aws == Settings().aws
    assert cloud_settings(deployed) == cloud_settings(custom)


def test_render_default_settings_ship_nothing(settings: Settings) -> None:
    assert cloud_settings(settings) == {}
    assert settings_from_blob(settings_blob(settings)) == "\n"


def test_render_settings_too_large_for_a_parameter_is_one_clear_error(tmp_path: Path) -> None:
    # Descriptions that do not compress: digests.
    fields = {
        f"f{i:03d}": {"type": "float", "description": hashlib.sha256(bytes([i])).hexdigest()}
        for i in range(200)
    }
    big = settings_for(
        tmp_path,
        streams={"wide": {"key_field": "k", "fields": {"k": {"type": "str"}, **fields}}},
    )
    with pytest.raises(DeployError, match=r"more than the 4,096 a CloudFormation parameter holds"):
        render_parameters(big, "managed")


def test_render_unknown_template_names_the_known_ones(settings: Settings) -> None:
    with pytest.raises(UnknownTemplateError) as caught:
        render_parameters(settings, "serverless")
    assert (
        str(caught.value) == "unknown template 'serverless'; choose one of: managed, self-managed"
    )


def test_plan_writes_the_parameter_file_and_builds_the_command(
    custom: Settings, tmp_path: Path
) -> None:
    plan = plan_deploy(custom, "self-managed", out_dir=tmp_path / "out")
    assert plan.stack_name == "acme-self-managed"
    assert plan.template_file == TEMPLATES_DIR / "self-managed.yaml"
    rows = json.loads(plan.parameters_file.read_text())
    assert {r["ParameterKey"]: r["ParameterValue"] for r in rows} == render_parameters(
        custom, "self-managed"
    )
    assert plan.settings_file.read_text() == settings_from_blob(
        render_parameters(custom, "self-managed")["PulsecastSettings"]
    )
    assert plan.argv[:3] == ["aws", "cloudformation", "deploy"]
    options = dict(zip(plan.argv[3::2], plan.argv[4::2], strict=False))
    assert options["--region"] == "eu-west-1"
    assert options["--stack-name"] == "acme-self-managed"
    assert options["--parameter-overrides"] == f"file://{plan.parameters_file}"
    assert options["--capabilities"] == "CAPABILITY_IAM"
    assert "--s3-bucket" not in plan.argv
    assert plan.problems == []


def test_plan_names_what_would_make_the_deploy_fail(settings: Settings, tmp_path: Path) -> None:
    plan = plan_deploy(settings, "managed", out_dir=tmp_path)
    assert (TEMPLATES_DIR / "managed.yaml").stat().st_size > MAX_TEMPLATE_BODY_BYTES
    assert [p.split(" ")[0] for p in plan.problems] == ["managed.yaml", "aws.certificate_arn"]
    with_bucket = settings.model_copy(
        update={"aws": settings.aws.model_copy(update={"template_bucket": "acme-cfn"})}
    )
    plan = plan_deploy(with_bucket, "managed", out_dir=tmp_path)
    assert plan.argv[plan.argv.index("--s3-bucket") + 1] == "acme-cfn"
    assert len(plan.problems) == 1


def test_plan_missing_template_file_is_a_problem(settings: Settings, tmp_path: Path) -> None:
    plan = plan_deploy(settings, "managed", out_dir=tmp_path, template_file=tmp_path / "no.yaml")
    assert plan.problems[0] == f"template {tmp_path / 'no.yaml'} not found; pass --template-file"


def test_self_managed_template_deploys_without_an_s3_bucket() -> None:
    # Kept under CloudFormation's inline limit on purpose: one command deploys it.
    assert (TEMPLATES_DIR / "self-managed.yaml").stat().st_size <= MAX_TEMPLATE_BODY_BYTES


def test_cloud_settings_never_carry_secrets(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, postgres={"dsn": "postgresql://u:pw@h/db"})
    assert isinstance(settings.postgres.dsn, SecretStr)
    assert "postgres" not in cloud_settings(settings)


@pytest.mark.parametrize("module", [parameters_module, toml_module], ids=lambda m: m.__name__)
def test_deploy_doctests_hold(module: ModuleType) -> None:
    assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "PULSECAST_AWS__MSK_BROKERS",
            "3",
            "invalid setting aws: msk_brokers must be a multiple of 2 (one per subnet), got 3",
        ),
        (
            "PULSECAST_AWS__VPC_CIDR",
            "10.0.0.0/24",
            "invalid setting aws.vpc_cidr = '10.0.0.0/24' (from PULSECAST_AWS__VPC_CIDR): "
            "String should match pattern '^(\\d{1,3}\\.){3}\\d{1,3}/16$'",
        ),
        (
            "PULSECAST_AWS__STACK_PREFIX",
            "Acme",
            "invalid setting aws.stack_prefix = 'Acme' (from PULSECAST_AWS__STACK_PREFIX): "
            "String should match pattern '^[a-z][a-z0-9-]{1,15}$'",
        ),
    ],
)
def test_aws_settings_refuse_what_the_templates_would(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == message

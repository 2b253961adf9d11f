"""CloudFormation parameters rendered from Settings: one parameter file per template.

A template parameter mirrors a setting's name: ``aws.kafka_instance_type``
becomes ``KafkaInstanceType`` (fields of the ``aws`` section drop the section)
and ``kafka.port`` becomes ``KafkaPort``. Two parameters are computed:
``PulsecastPackage``, the pip requirement the instances install, and
``PulsecastSettings``, the settings the deployed machines run with (the
operator's own choices, gzip-compressed TOML in base64, so that a CloudFormation
parameter, at most 4,096 bytes, holds it). What describes the operator's machine
(paths, bind addresses, local URIs) and every secret stay behind.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from pulsecast import __version__
from pulsecast.config import Settings
from pulsecast.deploy.errors import DeployError, UnknownTemplateError, choose
from pulsecast.deploy.toml import dumps

__all__ = [
    "MAX_PARAMETER_BYTES",
    "TEMPLATES",
    "Template",
    "cloud_settings",
    "parameter_file",
    "parameter_name",
    "render_parameters",
    "settings_blob",
    "settings_from_blob",
    "template",
]

#: CloudFormation's limit on one parameter value.
MAX_PARAMETER_BYTES = 4096

#: Settings that describe the operator's machine or hold secrets: never shipped.
#: The deployed machines set their own (docs/deploy.md).
_STAY_BEHIND: dict[str, Any] = {
    "config_file": True,
    "paths": True,
    "jvm": True,
    "aws": True,
    "kafka": {"host", "bootstrap_servers"},
    "postgres": {"host", "dsn"},
    "ingest": {"host"},
    "hdfs": {"host"},
    "spark_standalone": {"host"},
    "spark": {"master"},
    "lake": {"uri"},
    "stream": {"checkpoint_uri"},
    "ml": {"registry_uri", "artifact_uri"},
    "simulator": {"labels_file"},
    "monitoring": {"host", "rules_dir"},
}

_COMMON = (
    "aws.stack_prefix",
    "aws.vpc_cidr",
    "aws.ingest_cidr",
    "aws.certificate_arn",
    "aws.alarm_email",
    "aws.waf_rate_limit",
    "aws.shield_advanced",
    "aws.log_retention_days",
    "ingest.port",
)


@dataclass(frozen=True)
class Template:
    """One of pulsecast's CloudFormation templates and the settings it takes.

    Attributes:
        name: What ``--template`` calls it (``self-managed``).
        file_name: The file in ``infra/cloudformation``.
        summary: One line on what it builds.
        settings: Dotted settings names, each one parameter (see :func:`parameter_name`).
    """

    name: str
    file_name: str
    summary: str
    settings: tuple[str, ...]

    @property
    def parameter_names(self) -> list[str]:
        """Every parameter the rendered file sets, in order."""
        return [parameter_name(s) for s in self.settings] + [
            "PulsecastPackage",
            "PulsecastSettings",
        ]


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            name="self-managed",
            file_name="self-managed.yaml",
            summary="Kafka, Spark and HDFS on EC2 auto-scaling groups in a new VPC",
            settings=(
                *_COMMON,
                "aws.kafka_instance_type",
                "aws.spark_instance_type",
                "aws.hdfs_instance_type",
                "aws.kafka_volume_gb",
                "aws.spark_volume_gb",
                "aws.hdfs_volume_gb",
                "kafka.port",
                "kafka.controller_port",
                "hdfs.namenode_port",
                "hdfs.datanode_port",
                "hdfs.datanode_ipc_port",
            ),
        ),
        Template(
            name="managed",
            file_name="managed.yaml",
            summary="MSK, EMR Serverless, S3, Glue, Athena and Redshift Serverless",
            settings=(
                *_COMMON,
                "aws.ingest_instance_type",
                "aws.ingest_instances",
                "aws.msk_broker_type",
                "aws.msk_brokers",
                "aws.msk_volume_gb",
                "aws.emr_release",
                "aws.emr_max_vcpu",
                "aws.emr_max_memory_gb",
                "aws.redshift_base_rpu",
                "aws.sagemaker_endpoint",
                "aws.sagemaker_image",
                "aws.sagemaker_model_data",
                "aws.sagemaker_instance_type",
                "kafka.partitions",
                "kafka.retention_hours",
                "postgres.database",
                "stream.trigger_interval_s",
            ),
        ),
    )
}


def template(name: str) -> Template:
    """The template called ``name``.

    Raises:
        UnknownTemplateError: There is no such template.
    """
    return choose(TEMPLATES, name, UnknownTemplateError)


def parameter_name(setting: str) -> str:
    """The parameter that mirrors a dotted setting name.

    >>> parameter_name("aws.kafka_instance_type"), parameter_name("hdfs.namenode_port")
    ('KafkaInstanceType', 'HdfsNamenodePort')
    """
    section, _, field = setting.partition(".")
    words = field.split("_") if section == "aws" else [section, *field.split("_")]
    return "".join(w.capitalize() for w in words)


def _setting(settings: Settings, dotted: str) -> Any:
    node: Any = settings
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _plain(value: Any) -> Any:
    """Settings values as TOML-able plain values; secrets and local paths left out."""
    if isinstance(value, SecretStr | Path):
        return None
    if isinstance(value, BaseModel):
        return _plain(value.model_dump())
    if isinstance(value, Mapping):
        pairs = ((str(k), _plain(v)) for k, v in value.items())
        return {k: v for k, v in pairs if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def cloud_settings(settings: Settings) -> dict[str, Any]:
    """The settings the deployed machines run with: every choice that differs from a default.

    Defaults are left out (the machines run the same pulsecast version, so they
    have the same defaults), as are :data:`_STAY_BEHIND` and any secret.
    """
    dumped = settings.model_dump(exclude_defaults=True, exclude=_STAY_BEHIND)
    plain: dict[str, Any] = _plain(dumped)
    return {k: v for k, v in plain.items() if v != {}}


def settings_blob(settings: Settings) -> str:
    """:func:`cloud_settings` as gzip-compressed TOML in base64 (``base64 -d | gunzip``)."""
    data = dumps(cloud_settings(settings)).encode()
    return base64.b64encode(gzip.compress(data, mtime=0)).decode("ascii")


def settings_from_blob(blob: str) -> str:
    """The TOML text inside a :func:`settings_blob` value."""
    return gzip.decompress(base64.b64decode(blob)).decode()


def render_parameters(settings: Settings, name: str) -> dict[str, str]:
    """Every parameter of template ``name`` whose value comes from ``settings``.

    Raises:
        UnknownTemplateError: There is no such template.
        DeployError: The settings do not fit in a CloudFormation parameter.
    """
    chosen = template(name)
    values = {parameter_name(s): _text(_setting(settings, s)) for s in chosen.settings}
    values["PulsecastPackage"] = settings.aws.package or f"pulsecast=={__version__}"
    blob = settings_blob(settings)
    if len(blob) > MAX_PARAMETER_BYTES:
        msg = (
            f"the settings to deploy take {len(blob):,} bytes compressed, more than the "
            f"{MAX_PARAMETER_BYTES:,} a CloudFormation parameter holds; declare fewer streams "
            "or move defaults out of the settings file"
        )
        raise DeployError(msg)
    values["PulsecastSettings"] = blob
    return values


def parameter_file(parameters: Mapping[str, str]) -> str:
    """Parameters in CloudFormation's JSON form, read by ``--parameter-overrides file://``."""
    rows = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
    return json.dumps(rows, indent=2) + "\n"

"""``pulsecast deploy``: in-process with Typer's CliRunner, plus one real entry-point smoke test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pulsecast import __version__
from pulsecast.cli import app
from tests.unit.infra.conftest import TEMPLATES_DIR

runner = CliRunner()

CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e-aaaa-bbbb-cccc-1234567890ab"


@pytest.mark.parametrize(
    "args",
    [
        ["deploy"],
        ["deploy", "aws"],
        ["deploy", "node"],
        ["deploy", "node", "setup"],
        ["deploy", "node", "start"],
    ],
    ids=lambda a: " ".join(a),
)
def test_deploy_cli_every_command_has_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: pulsecast" in result.output


def test_deploy_cli_dry_run_prints_the_deploy_command(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["deploy", "aws", "--template", "self-managed", "--dry-run", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    parameters = out / "pulsecast-self-managed.parameters.json"
    assert result.stdout == (
        "aws cloudformation deploy \\\n"
        "  --region us-east-1 \\\n"
        "  --stack-name pulsecast-self-managed \\\n"
        f"  --template-file {TEMPLATES_DIR / 'self-managed.yaml'} \\\n"
        f"  --parameter-overrides file://{parameters} \\\n"
        "  --capabilities CAPABILITY_IAM \\\n"
        f"  --tags pulsecast:template=self-managed pulsecast:version={__version__} \\\n"
        "  --no-fail-on-empty-changeset\n"
    )
    rows = json.loads(parameters.read_text())
    assert {r["ParameterKey"] for r in rows} >= {"KafkaPort", "PulsecastSettings"}
    assert f"parameters: {parameters}\n" in result.stderr
    assert "note: aws.certificate_arn is not set" in result.stderr


def test_deploy_cli_dry_run_reads_settings_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULSECAST_AWS__TEMPLATE_BUCKET", "acme-cfn")
    monkeypatch.setenv("PULSECAST_AWS__CERTIFICATE_ARN", CERTIFICATE)
    monkeypatch.setenv("PULSECAST_AWS__STACK_PREFIX", "acme")
    result = runner.invoke(
        app, ["deploy", "aws", "-t", "managed", "--dry-run", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "  --stack-name acme-managed \\\n" in result.stdout
    assert "  --s3-bucket acme-cfn \\\n" in result.stdout
    assert "note:" not in result.stderr


def test_deploy_cli_unknown_template_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["deploy", "aws", "--template", "serverless", "--dry-run", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "error: unknown template 'serverless'; choose one of: managed, self-managed\n"
    )
    assert result.stdout == ""


def test_deploy_cli_without_dry_run_refuses_an_incomplete_plan(tmp_path: Path) -> None:
    result = runner.invoke(app, ["deploy", "aws", "--template", "managed", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("error: managed.yaml is ")


def test_deploy_cli_without_dry_run_needs_the_aws_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULSECAST_AWS__CERTIFICATE_ARN", CERTIFICATE)
    monkeypatch.setenv("PATH", str(tmp_path))
    result = runner.invoke(
        app, ["deploy", "aws", "--template", "self-managed", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "error: the AWS CLI (aws) is not on PATH: install it, or use --dry-run to see the command"
    )


def test_deploy_cli_node_setup_writes_settings_units_and_agent_config(tmp_path: Path) -> None:
    base = tmp_path / "settings.toml"
    base.write_text("[kafka]\npartitions = 6\n")
    where = {
        "--settings": str(base),
        "--zone": "acme.internal",
        "--address": "10.40.32.7",
        "--log-group": "/acme/nodes",
        "--etc": str(tmp_path / "etc"),
        "--systemd-dir": str(tmp_path / "systemd"),
        "--cloudwatch-config": str(tmp_path / "cw.json"),
        "--data-volume": "/data",
    }
    options = [part for pair in where.items() for part in pair]
    result = runner.invoke(app, ["deploy", "node", "setup", "kafka", *options])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "pulsecast-node.service pulsecast-node-heal.timer pulsecast-ingest.service\n"
    )
    config = (tmp_path / "etc" / "pulsecast.toml").read_text()
    assert "partitions = 6" in config and 'host = "kafka.acme.internal"' in config
    assert sorted(p.name for p in (tmp_path / "systemd").iterdir()) == [
        "pulsecast-ingest.service",
        "pulsecast-node-heal.service",
        "pulsecast-node-heal.timer",
        "pulsecast-node.service",
    ]
    assert json.loads((tmp_path / "cw.json").read_text())["metrics"]["namespace"]


def test_deploy_cli_node_unknown_role_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["deploy", "node", "start", "zookeeper"])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: unknown node role 'zookeeper'; choose one of: hdfs, ingest, kafka, spark\n"
    )


def test_deploy_cli_real_entry_point_dry_run(tmp_path: Path) -> None:
    command = ["deploy", "aws", "-t", "managed", "--dry-run", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "pulsecast", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("aws cloudformation deploy \\\n")
    assert (tmp_path / "pulsecast-managed.parameters.json").is_file()

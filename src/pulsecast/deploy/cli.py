"""``pulsecast deploy``: CloudFormation deployments, and what their instances run at boot.

``pulsecast deploy aws --template self-managed|managed --dry-run`` renders the
template's parameter file from Settings and prints the ``aws cloudformation
deploy`` command (no AWS credentials needed); without ``--dry-run`` it runs
it. ``pulsecast deploy node setup|start ROLE`` is what an instance's user data
runs (see :mod:`pulsecast.deploy.node`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from pulsecast.config import Settings
from pulsecast.deploy.command import plan_deploy
from pulsecast.deploy.errors import DeployError
from pulsecast.deploy.node import (
    cloudwatch_agent_config,
    node_settings,
    role,
    start_node,
    systemd_units,
)
from pulsecast.deploy.parameters import TEMPLATES

__all__ = ["deploy_app"]

deploy_app = typer.Typer(
    help="Deploy pulsecast to AWS with CloudFormation (templates in infra/cloudformation).",
    no_args_is_help=True,
)
node_app = typer.Typer(
    help="What a deployed instance runs at boot (its user data calls these).",
    no_args_is_help=True,
)
deploy_app.add_typer(node_app, name="node")


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.find_root().obj
    return settings


def _say(text: str) -> None:
    typer.echo(text, err=True)


_TEMPLATE_HELP = "; ".join(f"{t.name}: {t.summary}" for t in TEMPLATES.values())


@deploy_app.command("aws")
def deploy_aws(
    ctx: typer.Context,
    template: Annotated[str, typer.Option("--template", "-t", help=_TEMPLATE_HELP + ".")],
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Write the parameter file and print the `aws cloudformation deploy` command; "
            "run nothing (no AWS credentials needed).",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the parameter and settings files; default <data_dir>/deploy."
        ),
    ] = None,
    template_file: Annotated[
        Path | None,
        typer.Option(
            help="The template; default the checkout's infra/cloudformation/<template>.yaml."
        ),
    ] = None,
) -> None:
    """Deploy (or with --dry-run, show how to deploy) a CloudFormation stack from Settings."""
    settings = _settings(ctx)
    plan = plan_deploy(
        settings, template, out_dir=out or settings.data_dir / "deploy", template_file=template_file
    )
    _say(f"parameters: {plan.parameters_file}")
    _say(f"settings:   {plan.settings_file}")
    if dry_run:
        for problem in plan.problems:
            _say(f"note: {problem}")
        typer.echo(plan.command_text())
        return
    if plan.problems:
        raise DeployError(plan.problems[0])
    if shutil.which("aws") is None:
        msg = "the AWS CLI (aws) is not on PATH: install it, or use --dry-run to see the command"
        raise DeployError(msg)
    _say(f"deploying stack {plan.stack_name} in {plan.region}...")
    done = subprocess.run(plan.argv, check=False)
    if done.returncode != 0:
        msg = f"aws cloudformation deploy of {plan.stack_name} failed (exit code {done.returncode})"
        raise DeployError(msg)


@node_app.command("setup")
def node_setup(
    name: Annotated[str, typer.Argument(metavar="ROLE", help="kafka, spark, hdfs or ingest.")],
    settings_file: Annotated[
        Path, typer.Option("--settings", help="The deployed settings (PulsecastSettings, decoded).")
    ],
    zone: Annotated[str, typer.Option(help="The private DNS zone the nodes find each other in.")],
    address: Annotated[str, typer.Option(help="This instance's private address.")],
    log_group: Annotated[str, typer.Option(help="CloudWatch log group for the role's logs.")],
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers, when not kafka.<zone> (MSK).")
    ] = None,
    data_volume: Annotated[Path, typer.Option(help="Mount point of the data volume.")] = Path(
        "/data"
    ),
    etc: Annotated[Path, typer.Option(help="Where the node's settings file goes.")] = Path(
        "/etc/pulsecast"
    ),
    venv: Annotated[Path, typer.Option(help="The virtualenv pulsecast is installed in.")] = Path(
        "/opt/pulsecast"
    ),
    home: Annotated[Path, typer.Option(help="Home of the pulsecast user (JVM cache).")] = Path(
        "/var/lib/pulsecast"
    ),
    systemd_dir: Annotated[Path, typer.Option(help="Where the units go.")] = Path(
        "/etc/systemd/system"
    ),
    cloudwatch_config: Annotated[
        Path, typer.Option(help="The CloudWatch agent's configuration file.")
    ] = Path("/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json"),
) -> None:
    """Write the node's settings, systemd units and CloudWatch agent configuration.

    Prints the units to enable, space-separated.
    """
    role(name)
    data_dir = data_volume / "pulsecast"
    config = etc / "pulsecast.toml"
    text = node_settings(
        settings_file, name, zone=zone, address=address, data_dir=data_dir, bootstrap=bootstrap
    )
    etc.mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    units = systemd_units(name, config=config, venv=venv, home=home)
    systemd_dir.mkdir(parents=True, exist_ok=True)
    for file_name, unit in units.items():
        (systemd_dir / file_name).write_text(unit)
    cloudwatch_config.parent.mkdir(parents=True, exist_ok=True)
    cloudwatch_config.write_text(
        cloudwatch_agent_config(name, log_group=log_group, data_dir=data_dir, mount=data_volume)
    )
    _say(f"{name} node: settings {config}, units in {systemd_dir}")
    enable = [u for u in units if u != "pulsecast-node-heal.service"]
    typer.echo(" ".join(enable))


@node_app.command("start")
def node_start(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="ROLE", help="kafka, spark, hdfs or ingest.")],
) -> None:
    """Start the role's servers (idempotent), as `pulsecast up` would."""
    for status in start_node(_settings(ctx), name, progress=_say):
        state = "running" if status.running else "stopped"
        typer.echo(f"{status.name}: {state} {status.address or ''}".rstrip())

"""The ``aws cloudformation deploy`` command of a template, and the files it reads.

:func:`plan_deploy` renders the parameter file from Settings, writes it (and the
settings the machines will run with, as TOML, for review) next to each other,
and builds the command line. Nothing here talks to AWS: a plan needs no
credentials, which is what ``pulsecast deploy aws --dry-run`` prints.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from pulsecast import __version__
from pulsecast.config import Settings
from pulsecast.deploy.parameters import (
    parameter_file,
    render_parameters,
    settings_from_blob,
    template,
)

__all__ = ["MAX_TEMPLATE_BODY_BYTES", "TEMPLATES_DIR", "DeployPlan", "plan_deploy"]

#: The source checkout's templates (pulsecast installed from a clone, as `make install` does).
TEMPLATES_DIR = Path(__file__).resolve().parents[3] / "infra" / "cloudformation"

#: Largest template CloudFormation takes inline; larger ones go through an S3 bucket.
MAX_TEMPLATE_BODY_BYTES = 51_200


@dataclass(frozen=True)
class DeployPlan:
    """What deploying one template takes.

    Attributes:
        template: The template's name.
        stack_name: The CloudFormation stack.
        region: Its region.
        template_file: The template.
        parameters_file: The rendered parameters (CloudFormation JSON form).
        settings_file: The settings the machines run with (TOML, for review).
        argv: The ``aws cloudformation deploy`` command.
        problems: Why the command would fail as it stands (unset settings...).
    """

    template: str
    stack_name: str
    region: str
    template_file: Path
    parameters_file: Path
    settings_file: Path
    argv: list[str]
    problems: list[str] = field(default_factory=list)

    def command_text(self) -> str:
        """The command, one option per line, ready to paste into a shell."""
        args = [shlex.quote(a) for a in self.argv]
        lines: list[str] = [" ".join(args[:3])]
        for arg in args[3:]:
            if arg.startswith("--") or not lines[-1].lstrip().startswith("--"):
                lines.append(f"  {arg}")
            else:
                lines[-1] += f" {arg}"
        return " \\\n".join(lines)


def plan_deploy(
    settings: Settings,
    name: str,
    *,
    out_dir: Path,
    template_file: Path | None = None,
) -> DeployPlan:
    """Render template ``name``'s parameters from ``settings`` into ``out_dir`` and plan the deploy.

    Args:
        settings: The settings to deploy.
        name: ``self-managed`` or ``managed``.
        out_dir: Where the parameter and settings files go (created if missing).
        template_file: The template; default the checkout's ``infra/cloudformation``.

    Returns:
        The plan; its ``problems`` say what would make the deploy fail.

    Raises:
        UnknownTemplateError: There is no such template.
        DeployError: The settings do not fit in a CloudFormation parameter.
    """
    chosen = template(name)
    aws = settings.aws
    stack_name = f"{aws.stack_prefix}-{chosen.name}"
    path = (template_file or TEMPLATES_DIR / chosen.file_name).resolve()
    parameters = render_parameters(settings, chosen.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters_file = (out_dir / f"{stack_name}.parameters.json").resolve()
    settings_file = (out_dir / f"{stack_name}.settings.toml").resolve()
    parameters_file.write_text(parameter_file(parameters))
    settings_file.write_text(settings_from_blob(parameters["PulsecastSettings"]))
    problems = []
    if not path.is_file():
        problems.append(f"template {path} not found; pass --template-file")
    elif path.stat().st_size > MAX_TEMPLATE_BODY_BYTES and not aws.template_bucket:
        problems.append(
            f"{path.name} is {path.stat().st_size:,} bytes, over CloudFormation's "
            f"{MAX_TEMPLATE_BODY_BYTES:,} for an inline template: set aws.template_bucket "
            "(PULSECAST_AWS__TEMPLATE_BUCKET) to an S3 bucket to upload it to"
        )
    if not aws.certificate_arn:
        problems.append(
            "aws.certificate_arn is not set: the ingest's HTTPS listener needs an ACM "
            "certificate (PULSECAST_AWS__CERTIFICATE_ARN)"
        )
    upload = ["--s3-bucket", aws.template_bucket] if aws.template_bucket else []
    argv = [
        *("aws", "cloudformation", "deploy"),
        *("--region", aws.region),
        *("--stack-name", stack_name),
        *("--template-file", str(path)),
        *upload,
        *("--parameter-overrides", f"file://{parameters_file}"),
        *("--capabilities", "CAPABILITY_IAM"),
        *("--tags", f"pulsecast:template={chosen.name}", f"pulsecast:version={__version__}"),
        "--no-fail-on-empty-changeset",
    ]
    return DeployPlan(
        template=chosen.name,
        stack_name=stack_name,
        region=aws.region,
        template_file=path,
        parameters_file=parameters_file,
        settings_file=settings_file,
        argv=argv,
        problems=problems,
    )

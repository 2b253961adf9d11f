"""Deployment to AWS: CloudFormation parameters from Settings, and the deployed nodes.

The templates live in ``infra/cloudformation`` (docs/deploy.md);
:mod:`pulsecast.deploy.parameters` renders a template's parameters from
Settings, :mod:`pulsecast.deploy.command` plans ``aws cloudformation deploy``
(``pulsecast deploy aws --dry-run``), and :mod:`pulsecast.deploy.node` is what
an instance runs at boot. Nothing here needs AWS credentials or boto3.
"""

from __future__ import annotations

from pulsecast.deploy.command import DeployPlan as DeployPlan
from pulsecast.deploy.command import plan_deploy as plan_deploy
from pulsecast.deploy.errors import DeployError as DeployError
from pulsecast.deploy.errors import UnknownRoleError as UnknownRoleError
from pulsecast.deploy.errors import UnknownTemplateError as UnknownTemplateError
from pulsecast.deploy.parameters import TEMPLATES as TEMPLATES
from pulsecast.deploy.parameters import render_parameters as render_parameters

__all__ = [
    "TEMPLATES",
    "DeployError",
    "DeployPlan",
    "UnknownRoleError",
    "UnknownTemplateError",
    "plan_deploy",
    "render_parameters",
]

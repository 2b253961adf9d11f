"""Fixtures of the infrastructure tests: the CloudFormation templates and the IaC checkers.

The templates are read with a YAML loader that knows CloudFormation's short
forms (``!Ref X`` becomes ``{"Ref": "X"}``, ``!GetAtt A.B`` becomes
``{"Fn::GetAtt": ["A", "B"]}``, ``!Sub ...`` becomes ``{"Fn::Sub": ...}``).
cfn-lint and checkov run from ``.venv-iac`` (``make install`` creates it from
``infra/requirements-iac.txt``); a missing tool fails its test, it never skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

TEMPLATES_DIR = REPO / "infra" / "cloudformation"
TEMPLATE_NAMES = ("self-managed", "managed")
IAC_BIN = REPO / ".venv-iac" / "bin"


class CfnLoader(yaml.SafeLoader):
    """A safe YAML loader that turns CloudFormation's short-form tags into long form."""


def _intrinsic(loader: CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    """A template as plain data, intrinsic functions in their long form."""
    data: dict[str, Any] = yaml.load(path.read_text(), Loader=CfnLoader)  # noqa: S506 (a SafeLoader)
    return data


@pytest.fixture(scope="session")
def templates() -> dict[str, dict[str, Any]]:
    """Both templates by name, loaded once."""
    return {name: load_template(TEMPLATES_DIR / f"{name}.yaml") for name in TEMPLATE_NAMES}


def resources(template: dict[str, Any], *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The template's resources of the given types, as (logical id, properties)."""
    for name, resource in template["Resources"].items():
        if resource["Type"] in types:
            yield name, resource.get("Properties", {})


def iac_tool(name: str) -> Path:
    """The path of an IaC checker in .venv-iac; fails the test if it is not installed."""
    path = IAC_BIN / name
    if not path.is_file():
        pytest.fail(
            f"{name} is not installed at {path}: run `make install`, which creates "
            ".venv-iac from infra/requirements-iac.txt",
            pytrace=False,
        )
    return path

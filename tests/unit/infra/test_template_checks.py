"""cfn-lint and checkov on every template: no lint finding, no failed policy check.

Each tool runs once for both templates (module-scoped fixtures); checkov is the
slow one (about 15 s). Both come from .venv-iac; a missing tool fails here.
"""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.unit.infra import conftest as infra_conftest
from tests.unit.infra.conftest import TEMPLATE_NAMES, TEMPLATES_DIR, iac_tool

TEMPLATE_FILES = [TEMPLATES_DIR / f"{name}.yaml" for name in TEMPLATE_NAMES]


@pytest.fixture(scope="module")
def cfn_lint_findings() -> dict[str, list[dict[str, Any]]]:
    """cfn-lint's findings (errors, warnings and informational) by template file name."""
    tool = iac_tool("cfn-lint")
    done = subprocess.run(
        [str(tool), "--format", "json", *map(str, TEMPLATE_FILES)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # cfn-lint's exit code is a bit mask of the levels found (2 error, 4 warning, 8 info).
    assert done.returncode in (0, 2, 4, 6, 8, 10, 12, 14), done.stderr
    findings: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for match in json.loads(done.stdout or "[]"):
        findings[Path(match["Filename"]).name].append(match)
    return findings


@pytest.fixture(scope="module")
def checkov_reports() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """checkov's passed, failed and skipped checks and parsing errors, by template file name."""
    tool = iac_tool("checkov")
    files = [arg for path in TEMPLATE_FILES for arg in ("--file", str(path))]
    options = ["--framework", "cloudformation", "--output", "json", "--skip-download"]
    # --soft-fail: exit 0 with failed checks too, so that the tests can list them.
    done = subprocess.run(
        [str(tool), *files, *options, "--soft-fail"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    results = report["results"]
    by_file: dict[str, dict[str, list[dict[str, Any]]]] = {
        path.name: {"passed": [], "failed": [], "skipped": [], "parsing_errors": []}
        for path in TEMPLATE_FILES
    }
    for outcome in ("passed", "failed", "skipped"):
        for check in results[f"{outcome}_checks"]:
            by_file[Path(check["file_path"]).name][outcome].append(check)
    for path in results.get("parsing_errors", []):
        by_file[Path(path).name]["parsing_errors"].append({"file": path})
    return by_file


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_cfn_lint_finds_nothing(cfn_lint_findings: dict[str, Any], name: str) -> None:
    findings = [
        f"{m['Rule']['Id']} line {m['Location']['Start']['LineNumber']}: {m['Message']}"
        for m in cfn_lint_findings.get(f"{name}.yaml", [])
    ]
    assert findings == []


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_checkov_passes(checkov_reports: dict[str, Any], name: str) -> None:
    report = checkov_reports[f"{name}.yaml"]
    assert report["parsing_errors"] == []
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["failed"]]
    assert failed == []
    assert len(report["passed"]) > 100


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_checkov_skips_only_what_the_template_justifies(
    checkov_reports: dict[str, Any], templates: dict[str, Any], name: str
) -> None:
    declared = {
        (f"{resource['Type']}.{logical}", skip["id"]): skip["comment"]
        for logical, resource in templates[name]["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    skipped = {
        (c["resource"], c["check_id"]): c["check_result"].get("suppress_comment")
        for c in checkov_reports[f"{name}.yaml"]["skipped"]
    }
    assert skipped == declared


def test_a_missing_checker_fails_and_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(infra_conftest, "IAC_BIN", tmp_path)
    with pytest.raises(pytest.fail.Exception) as caught:
        iac_tool("checkov")
    assert str(caught.value) == (
        f"checkov is not installed at {tmp_path / 'checkov'}: run `make install`, which "
        "creates .venv-iac from infra/requirements-iac.txt"
    )

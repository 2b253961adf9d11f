"""The alert rules: valid, tested to fire and to stay quiet by promtool, on defined metrics."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from pulsecast.monitoring.metrics import exposed_names
from tests.unit.monitoring.conftest import (
    PROMETHEUS_SERIES,
    RULE_TESTS_DIR,
    RULES_DIR,
    metric_names,
)

RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted(RULE_TESTS_DIR.glob("*.yml"))


def rules() -> list[dict[str, object]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=120)


def test_metric_names_reads_selectors_not_functions_labels_or_variables() -> None:
    expr = (
        'sum by (stream) (rate(pulsecast_a_total{topic=~"x\\\\.events", job="up"}'
        "[$__rate_interval])) / on (stream) group_left max without (le) "
        '(pulsecast_b offset 10m) > 3 * up or label_replace(vector(0), "c", "$1", "d", "(.*)")'
        " and $stream"
    )
    assert metric_names(expr) == {"pulsecast_a_total", "pulsecast_b", "up"}


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    assert RULE_FILES, f"no rule files in {RULES_DIR}"
    check = run([promtool, "check", "rules", *map(str, RULE_FILES)], RULES_DIR)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_alert_rule_unit_tests_pass(promtool: str, test_file: Path) -> None:
    result = run([promtool, "test", "rules", test_file.name], RULE_TESTS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_to_fire_and_to_stay_quiet() -> None:
    alerts = {str(rule["alert"]) for rule in rules() if "alert" in rule}
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert len(alerts) == 9
    assert alerts - fires == set(), "alerts never shown to fire"
    assert alerts - quiet == set(), "alerts never shown to stay quiet"


def test_alert_rules_use_only_defined_metrics() -> None:
    known = exposed_names() | PROMETHEUS_SERIES
    for rule in rules():
        used = metric_names(str(rule["expr"]))
        assert used, f"no metric found in {rule['expr']!r}"
        assert used <= known, f"{rule.get('alert')}: undefined metrics {sorted(used - known)}"


def test_every_alert_has_a_severity_summary_and_runbook_section() -> None:
    doc = (RULES_DIR.parents[2] / "docs" / "operations.md").read_text().lower()
    for rule in rules():
        name = str(rule["alert"])
        assert rule["labels"]["severity"] in ("critical", "warning")  # type: ignore[index]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"]  # type: ignore[index]
        anchor = annotations["runbook_url"].split("#")[1]  # type: ignore[index]
        assert anchor == name.lower()
        assert f"### {name.lower()}" in doc, f"docs/operations.md has no section for {name}"

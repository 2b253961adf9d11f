"""The Grafana dashboards: well-formed, provisioned, and querying only metrics pulsecast defines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from pulsecast.monitoring.metrics import exposed_names
from tests.unit.monitoring.conftest import (
    DASHBOARDS_DIR,
    INFRA,
    PROMETHEUS_SERIES,
    metric_names,
)

DASHBOARDS = sorted(DASHBOARDS_DIR.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    found = [
        (f"{board['uid']} / {panel['title']} / {target['refId']}", target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(metric, label): the metric must exist.
            inner = variable["definition"].removeprefix("label_values(").rstrip(")")
            found.append((f"{board['uid']} / ${variable['name']}", inner.split(",")[0]))
    return found


def test_the_four_dashboards_exist_with_unique_uids() -> None:
    uids = [load(path)["uid"] for path in DASHBOARDS]
    assert sorted(uids) == [
        "pulsecast-kafka",
        "pulsecast-models",
        "pulsecast-overview",
        "pulsecast-stream",
    ]
    assert [p.stem for p in DASHBOARDS] == sorted(uids)


def test_dashboard_panels_are_complete() -> None:
    for path in DASHBOARDS:
        board = load(path)
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        assert board["templating"]["list"][0]["name"] == "datasource"
        for panel in board["panels"]:
            assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            if panel["type"] == "row":
                continue
            assert panel["targets"], f"{path.name}: {panel['title']} queries nothing"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_queries_use_only_defined_metrics() -> None:
    known = exposed_names() | PROMETHEUS_SERIES
    used: set[str] = set()
    for path in DASHBOARDS:
        for where, expr in queries(load(path)):
            names = metric_names(expr)
            assert names, f"{where}: no metric in {expr!r}"
            assert names <= known, f"{where}: undefined metrics {sorted(names - known)}"
            used |= names
    # Every metric pulsecast exposes is on some dashboard (a histogram through any series).
    assert {_family(n) for n in exposed_names()} - {_family(n) for n in used} == set()


def _family(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        name = name.removesuffix(suffix)
    return name


def test_provisioning_points_grafana_at_prometheus_and_the_dashboards() -> None:
    provisioning = INFRA / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "pulsecast.yml").read_text())
    [source] = sources["datasources"]
    assert (source["type"], source["uid"], source["url"]) == (
        "prometheus",
        "pulsecast-prometheus",
        "http://127.0.0.1:9090",
    )
    providers = yaml.safe_load((provisioning / "dashboards" / "pulsecast.yml").read_text())
    [provider] = providers["providers"]
    assert (provider["type"], provider["folder"]) == ("file", "pulsecast")
    for path in DASHBOARDS:
        current = load(path)["templating"]["list"][0]["current"]
        assert current["value"] == source["uid"]

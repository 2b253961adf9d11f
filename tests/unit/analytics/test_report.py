from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pulsecast.analytics.report import SECTIONS, Report, write_report
from pulsecast.cli import app
from pulsecast.testing import settings_for
from tests.unit.analytics.conftest import SINCE, config_file

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file; fails unless it starts like one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def full_report(lake_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Report:
    folder = tmp_path_factory.mktemp("report")
    settings = settings_for(folder / "state", lake={"uri": lake_root.as_uri()})
    return write_report(settings, folder / "out", since=SINCE, now=NOW)


@pytest.fixture(scope="module")
def empty_report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    folder = tmp_path_factory.mktemp("empty")
    settings = settings_for(folder / "state", lake={"uri": (folder / "lake").as_uri()})
    return write_report(settings, folder / "out", now=NOW)


def test_report_writes_html_and_a_png_per_section(full_report: Report) -> None:
    assert full_report.html.name == "report.html"
    page = full_report.html.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "from 2026-05-02 00:00 to now (UTC)" in page
    for section in SECTIONS:
        assert f'<section id="{section.id}"><h2>{section.title}</h2>' in page
        assert f"pulsecast sql --run {section.analysis} --param stream=telemetry" in page
    assert page.count('class="plotly-graph-div"') == len(SECTIONS)
    # plotly.js is inlined once: the page needs no network
    assert page.count('<script type="text/javascript">/**') == 1
    assert "cdn.plot.ly" not in page.split("</head>")[1]
    assert [p.name for p in full_report.pngs] == [f"{s.id}.png" for s in SECTIONS]
    for path in full_report.pngs:
        assert png_size(path) == (1100, 500)
    assert {p.section.id: (p.status, p.rows) for p in full_report.panels} == {
        "traffic": ("ok", 5),
        "trend": ("ok", 3),
        "heatmap": ("ok", 4),
        "anomalies": ("ok", 4),
        "forecast": ("ok", 3),
        "forecast_error": ("ok", 3),
        "data_quality": ("ok", 2),
        "freshness": ("ok", 2),
    }


def test_report_on_an_empty_lake_says_what_to_run(empty_report: Report) -> None:
    page = empty_report.html.read_text()
    for panel in empty_report.panels:
        assert panel.status == "empty"
        assert panel.message.startswith("No data yet: table ")
        assert f'<section id="{panel.section.id}">' in page
    assert (
        "No data yet: table gold_telemetry_1m does not exist yet: `pulsecast stream run` "
        "creates it. Then send events (pulsecast produce simulator)."
    ) in page.replace("&#x27;", "'")
    assert "pulsecast models promote" in page
    assert [png_size(p) for p in empty_report.pngs] == [(1100, 500)] * len(SECTIONS)


def test_report_cli_without_png(lake_root: Path, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "state", lake={"uri": lake_root.as_uri()})
    config = config_file(settings, tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["--config", str(config), "report", "--out", str(out), "--since", SINCE, "--no-png"],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]
    assert result.stdout.splitlines()[0] == "  traffic          5 rows"
    assert result.stdout.splitlines()[-1] == f"wrote {out / 'report.html'}"
    result = CliRunner().invoke(
        app, ["--config", str(config), "report", "--out", str(out), "--since", "soon"]
    )
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("error: --since: expected an ISO date or time")
    assert result.stderr.splitlines()[-1].endswith(", got 'soon'")

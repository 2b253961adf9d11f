from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pulsecast.cli import app
from pulsecast.config import Settings

runner = CliRunner()


def config_for(settings: Settings, tmp_path: Path) -> Path:
    path = tmp_path / "lake.toml"
    path.write_text(
        f'[lake]\nuri = "{settings.lake_uri}"\n'
        '[spark]\nmaster = "local[2]"\nshuffle_partitions = 2\n'
    )
    return path


@pytest.mark.parametrize("args", [["lake"], ["lake", "optimize"], ["lake", "vacuum"]])
def test_cli_lake_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: pulsecast lake" in result.output


def test_cli_lake_bad_options_are_one_line() -> None:
    result = runner.invoke(app, ["lake", "optimize", "--since", "2026-13-01"])
    assert result.exit_code == 1
    assert result.stderr == "error: --since must be a date such as 2026-05-01, got '2026-13-01'\n"
    result = runner.invoke(app, ["lake", "vacuum", "--table", "platinum"])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: unknown table zone 'platinum'; choose bronze, silver, gold or panes\n"
    )
    result = runner.invoke(app, ["lake", "optimize", "--stream", "nope"])
    assert result.stderr == "error: unknown stream 'nope'; configured streams: series, telemetry\n"


def test_cli_lake_optimize_json(lake_settings: Settings, tmp_path: Path) -> None:
    config = config_for(lake_settings, tmp_path)
    args = ["--config", str(config), "lake", "optimize", "--table", "silver", "--no-zorder"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    (silver,) = json.loads(result.stdout)["optimized"]
    assert silver["table"] == "silver_telemetry"
    assert (silver["files_before"], silver["files_after"]) == (20, 2)
    assert "optimizing silver_telemetry (compaction)..." in result.stderr
    assert "note: this includes today's partitions (UTC)" in result.stderr
    result = runner.invoke(app, [*args, "--until", "2026-05-01"])
    assert result.exit_code == 0, result.output
    assert "note:" not in result.stderr
    assert "optimizing silver_telemetry (compaction, event_date <= DATE'2026-05-01')" in (
        result.stderr
    )
    assert result.stdout.splitlines()[1].split()[:5] == ["silver_telemetry", "-", "2", "->", "2"]


def test_cli_lake_vacuum_refuses_then_dry_run(compacted_settings: Settings, tmp_path: Path) -> None:
    config = config_for(compacted_settings, tmp_path)
    result = runner.invoke(app, ["--config", str(config), "lake", "vacuum", "--retain-hours", "1"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "error: refusing to vacuum bronze_telemetry keeping 1 h: below its safe minimum of "
        "168 h (delta.deletedFileRetentionDuration); a running query or the streaming job may "
        "still read those files. Use --force to vacuum anyway"
    )
    result = runner.invoke(
        app,
        ["--config", str(config), "lake", "vacuum", "--retain-hours", "0", "--dry-run"],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["table", "retention", "files", "would", "delete", "bytes", "s"]
    assert lines[1].split()[:4] == ["bronze_telemetry", "0", "h", "0"]
    assert lines[2].split()[:4] == ["silver_telemetry", "0", "h", "20"]
    assert (
        sum(line.startswith("  silver_telemetry: event_date=2026-05-01/") for line in lines) == 20
    )
    assert result.stderr.splitlines()[-1] == (
        "note: that retention is below the safe minimum of bronze_telemetry, silver_telemetry; "
        "deleting needs --force"
    )

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pulsecast.cli import app

runner = CliRunner()

COMMANDS = [
    [],
    ["setup"],
    ["up"],
    ["down"],
    ["status"],
    ["logs"],
    ["serve"],
    ["consume"],
    ["demo"],
    ["produce"],
    ["produce", "simulator"],
    ["produce", "file"],
    ["bench"],
    ["bench", "ingest"],
    ["bench", "detect"],
    ["bench", "e2e"],
    ["stream", "run"],
    ["sql"],
    ["report"],
    ["detect"],
    ["train"],
    ["models", "list"],
    ["models", "promote"],
    ["models", "rollback"],
    ["lake", "optimize"],
    ["lake", "vacuum"],
    ["deploy", "aws"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "root")
def test_cli_every_command_has_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: pulsecast" in result.output


def test_cli_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.output.strip() == "pulsecast 0.1.0"


def test_cli_bad_config_is_one_line_and_exit_1(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[kafka]\nport = 'x'\n")
    result = runner.invoke(app, ["--config", str(config), "status"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: invalid setting kafka.port = 'x' (from {config}): "
        "Input should be a valid integer, unable to parse string as an integer\n"
    )


def test_cli_unknown_stream_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["consume", "--stream", "nope"])
    assert result.exit_code == 1
    assert result.stderr == "error: unknown stream 'nope'; configured streams: series, telemetry\n"


def test_cli_bad_speed_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["produce", "file", str(tmp_path), "--speed", "warp"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --speed must be 'max', 'realtime' or a positive number")


def test_cli_status_json_when_nothing_runs() -> None:
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0
    assert '"name": "kafka"' in result.stdout
    assert '"running": false' in result.stdout

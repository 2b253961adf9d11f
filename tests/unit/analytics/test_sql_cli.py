from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pulsecast.analytics.named import analyses
from pulsecast.cli import app
from pulsecast.config import Settings
from tests.unit.analytics.conftest import SINCE, config_file

runner = CliRunner()


def sql(settings: Settings, folder: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["--config", str(config_file(settings, folder)), "sql", *args])
    return result.exit_code, result.stdout, result.stderr


def test_sql_list_table_json_csv(lake: Settings, tmp_path: Path) -> None:
    code, out, _ = sql(lake, tmp_path, "--list")
    assert code == 0
    lines = out.splitlines()
    for name, analysis in analyses().items():
        assert f"{name}: {analysis.summary}" in lines
    assert "    limit      int        = 20         most rows" in lines
    assert "    key        str        = (empty)    one entity (empty: every entity)" in lines
    code, out, _ = sql(lake, tmp_path, "--list", "--format", "json")
    listed = [json.loads(line) for line in out.splitlines()]
    assert [a["name"] for a in listed] == sorted(analyses())
    top = next(a for a in listed if a["name"] == "top_anomalies")
    assert top["params"][-1] == {
        "name": "limit",
        "type": "int",
        "default": "20",
        "help": "most rows",
    }
    code, out, _ = sql(lake, tmp_path, "--list", "--format", "csv")
    assert out.splitlines()[0] == "analysis,summary,param,type,default,help"
    assert "data_quality," in out.splitlines()[1]


def test_sql_run_with_params_and_formats(lake: Settings, tmp_path: Path) -> None:
    args = ["--run", "heatmap", "--param", f"since={SINCE}", "-p", "key=m-2"]
    code, out, err = sql(lake, tmp_path, *args, "--format", "csv")
    assert (code, err) == (0, "")
    assert out == (
        "metric,weekday,hour,readings,mean\ntemperature_c,0,10,1,70.0\ntemperature_c,1,9,3,71.0\n"
    )
    code, out, _ = sql(lake, tmp_path, *args, "--format", "json")
    assert json.loads(out.splitlines()[1]) == {
        "metric": "temperature_c", "weekday": 1, "hour": 9, "readings": 3, "mean": 71.0
    }  # fmt: skip
    code, out, _ = sql(lake, tmp_path, *args)
    assert out.splitlines()[0].split() == ["metric", "weekday", "hour", "readings", "mean"]
    assert out.splitlines()[-1] == "(2 rows)"
    code, out, _ = sql(lake, tmp_path, "--run", "top_anomalies", "-p", f"since={SINCE}",
                       "-p", "limit=1", "--format", "csv")  # fmt: skip
    assert out.splitlines()[1] == (
        "m-2,temperature_c,2026-05-04T10:01:00+00:00,2026-05-04T10:02:00+00:00,0.0,0.95,True,"
        "novelty-1"
    )


def test_sql_run_explain(lake: Settings, tmp_path: Path) -> None:
    code, out, _ = sql(
        lake, tmp_path, "--run", "entity_traffic", "-p", "since=2026-05-05", "--explain"
    )
    assert code == 0
    # one partition (2026-05-05, hour 9) and its one file, of four
    assert out.splitlines()[1].split()[:7] == ["gold_telemetry_1m", "1", "of", "4", "1", "of", "4"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "nope"], "error: no analysis named 'nope'; analyses: data_quality, "),
        (["--run", "top_anomalies", "-p", "lim=3"],
         "error: analysis top_anomalies has no param 'lim'; its params: stream, since, until, "
         "key, min_score, limit\n"),
        (["--run", "top_anomalies", "-p", "limit=many"],
         "error: param limit of top_anomalies: expected an integer, got 'many'\n"),
        (["--run", "top_anomalies", "-p", "limit"],
         "error: --param must be NAME=VALUE, got 'limit'\n"),
        (["SELECT 1", "-p", "limit=1"], "error: --param goes with --run NAME\n"),
        (["SELECT 1", "--run", "heatmap"], "error: give one of: a QUERY, --list, or --run NAME\n"),
        ([], "error: give one of: a QUERY, --list, or --run NAME\n"),
        (["--list", "--format", "xml"], "error: --format must be table, json or csv, got 'xml'\n"),
    ],
)  # fmt: skip
def test_sql_errors_are_one_line(
    lake: Settings, tmp_path: Path, args: list[str], message: str
) -> None:
    code, out, err = sql(lake, tmp_path, *args)
    assert code == 1
    assert out == ""
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_sql_run_on_an_empty_lake_says_what_to_run(empty_lake: Settings, tmp_path: Path) -> None:
    code, _, err = sql(empty_lake, tmp_path, "--run", "entity_traffic")
    assert code == 1
    assert (
        err
        == "error: table gold_telemetry_1m does not exist yet: `pulsecast stream run` creates it\n"
    )

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from typer.testing import CliRunner

from pulsecast.analytics.explain import explain
from pulsecast.analytics.output import render_explanation
from pulsecast.analytics.sql import QueryError
from pulsecast.cli import app
from pulsecast.config import Settings
from pulsecast.testing import settings_for

HOURS = (10, 11, 12)
KEYS = ("m-0001", "m-0002", "m-0003", "m-0004")


@pytest.fixture
def lake(tmp_path: Path) -> Settings:
    """silver_telemetry: 3 hour partitions x 4 appends, each append one key (12 files)."""
    settings = settings_for(tmp_path / "state", lake={"uri": (tmp_path / "lake").as_uri()})
    uri = f"{settings.lake_uri}/silver/telemetry"
    for key in KEYS:
        n = len(HOURS) * 5
        write_deltalake(
            uri,
            pa.table(
                {
                    "event_id": [f"{key}-{i}" for i in range(n)],
                    "key": [key] * n,
                    "event_time": [datetime(2026, 5, 1, h, i) for h in HOURS for i in range(5)],
                    "temperature_c": [60.0 + i for i in range(n)],
                    "event_date": [date(2026, 5, 1)] * n,
                    "event_hour": [h for h in HOURS for _ in range(5)],
                }
            ),
            partition_by=["event_date", "event_hour"],
            mode="append",
        )
    return settings


def sizes(settings: Settings) -> dict[int, list[int]]:
    """File sizes of silver_telemetry by hour partition."""
    actions = pa.table(
        DeltaTable(f"{settings.lake_uri}/silver/telemetry").get_add_actions(flatten=True)
    )
    out: dict[int, list[int]] = {}
    for hour, size in zip(
        actions.column("partition.event_hour").to_pylist(),
        actions.column("size_bytes").to_pylist(),
        strict=True,
    ):
        out.setdefault(hour, []).append(size)
    return out


def test_explain_partition_filter_reads_one_partition(lake: Settings) -> None:
    report = explain(
        lake,
        "SELECT key, count(*) FROM silver_telemetry "
        "WHERE event_date = DATE '2026-05-01' AND event_hour = 11 GROUP BY key",
    )
    (scan,) = report.scans
    by_hour = sizes(lake)
    assert scan.table == "silver_telemetry"
    assert (scan.partitions_read, scan.partitions_total) == (1, 3)
    assert (scan.files_read, scan.files_total) == (4, 12)
    assert scan.bytes_read == sum(by_hour[11])
    assert scan.bytes_total == sum(sum(v) for v in by_hour.values())
    assert scan.files_after_partition_filters is None  # Spark's planner only
    assert report.rows == 4
    assert report.engine == "duckdb"
    assert "event_hour" in report.plan  # the filter pushed into the scan


def test_explain_statistics_skip_files_of_other_keys(lake: Settings) -> None:
    (scan,) = explain(lake, "SELECT * FROM silver_telemetry WHERE key = 'm-0002'").scans
    assert (scan.partitions_read, scan.files_read) == (3, 3)
    (scan,) = explain(
        lake, "SELECT * FROM silver_telemetry WHERE key = 'm-0002' AND event_hour >= 12"
    ).scans
    assert (scan.partitions_read, scan.files_read) == (1, 1)


def test_explain_pruned_to_nothing_and_no_table(lake: Settings) -> None:
    (scan,) = explain(
        lake, "SELECT count(*) FROM silver_telemetry WHERE event_date = DATE '2026-05-02'"
    ).scans
    assert (scan.partitions_read, scan.files_read, scan.bytes_read) == (0, 0, 0)
    assert explain(lake, "SELECT 1").scans == []
    # A CTE over a lake table still names the table.
    (scan,) = explain(
        lake, "WITH s AS (SELECT * FROM silver_telemetry WHERE event_hour = 10) SELECT * FROM s"
    ).scans
    assert (scan.partitions_read, scan.files_read) == (1, 4)


def test_explain_bad_query_is_one_line(lake: Settings) -> None:
    with pytest.raises(QueryError) as info:
        explain(lake, "SELECT nope FROM silver_telemetry")
    assert "\n" not in str(info.value)
    assert 'Referenced column "nope" not found' in str(info.value)


def test_render_explanation_text_and_json(lake: Settings) -> None:
    report = explain(lake, "SELECT * FROM silver_telemetry WHERE event_hour = 10")
    text = render_explanation(report, "table").splitlines()
    assert text[0].split() == ["table", "partitions", "read", "files", "read", "size", "read"]
    assert text[1].startswith("silver_telemetry  1 of 3")
    assert "4 of 12" in text[1]
    assert text[2].startswith("20 rows in ") and text[2].endswith(" s (duckdb)")
    assert text[4] == "plan:"
    data = json.loads(render_explanation(report, "json"))
    assert data["scans"][0]["files_read"] == 4
    assert data["rows"] == 20


def test_cli_sql_explain(lake: Settings, tmp_path: Path) -> None:
    config = tmp_path / "pulsecast.toml"
    config.write_text(f'[lake]\nuri = "{lake.lake_uri}"\n')
    runner = CliRunner()
    query = "SELECT * FROM silver_telemetry WHERE event_hour = 12"
    result = runner.invoke(app, ["--config", str(config), "sql", "--explain", query])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith("silver_telemetry  1 of 3")
    result = runner.invoke(
        app, ["--config", str(config), "sql", "--explain", "--format", "json", query]
    )
    assert json.loads(result.stdout)["scans"][0]["partitions_read"] == 1
    result = runner.invoke(
        app, ["--config", str(config), "sql", "--explain", "--format", "csv", query]
    )
    assert result.exit_code == 1
    assert result.stderr == "error: --explain prints text or, with --format json, JSON; not csv\n"

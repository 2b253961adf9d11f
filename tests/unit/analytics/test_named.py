from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake

from pulsecast.analytics import sql as sql_module
from pulsecast.analytics.errors import AnalysisNotFoundError, MissingTableError, ParamError
from pulsecast.analytics.explain import explain
from pulsecast.analytics.named import (
    TIMESTAMP_MAX,
    TIMESTAMP_MIN,
    analyses,
    bind,
    get_analysis,
    parse_analysis,
    render,
    run_analysis,
)
from pulsecast.analytics.sql import DuckDBEngine, run_sql
from pulsecast.bench.query import set_write_times
from pulsecast.config import Settings
from pulsecast.stream.batch_stats import BATCH_STATS_SCHEMA, RELATIVE_ACCURACY
from pulsecast.testing import settings_for
from tests.unit.analytics.conftest import SINCE, _batch_stats, at

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def rows(settings: Settings, name: str, **params: Any) -> list[tuple[Any, ...]]:
    return run_analysis(settings, name, {"since": SINCE, **params}, now=NOW).rows


def columns(settings: Settings, name: str) -> list[str]:
    return run_analysis(settings, name, {"since": SINCE}, now=NOW).columns


# -- every analysis, exact results on the fixture lake -------------------------------------------


def test_named_entity_traffic(lake: Settings) -> None:
    assert columns(lake, "entity_traffic") == [
        "key", "metric", "hour", "readings", "mean", "min", "max"
    ]  # fmt: skip
    assert rows(lake, "entity_traffic") == [
        ("m-1", "cpu_util", at(4, 10), 2, 40.0, 38.0, 42.0),
        ("m-1", "temperature_c", at(4, 10), 4, 61.0, 59.0, 63.0),
        ("m-1", "temperature_c", at(4, 11), 4, 64.0, 63.0, 65.0),
        ("m-2", "temperature_c", at(4, 10), 1, 70.0, 70.0, 70.0),
        ("m-2", "temperature_c", at(5, 9), 3, 71.0, 70.0, 72.0),
    ]
    assert rows(lake, "entity_traffic", key="m-2", until="2026-05-05") == [
        ("m-2", "temperature_c", at(4, 10), 1, 70.0, 70.0, 70.0),
    ]
    assert rows(lake, "entity_traffic", metric="cpu_util", since="min") == [
        ("m-1", "cpu_util", at(4, 10), 2, 40.0, 38.0, 42.0),
    ]
    # The window before SINCE is there with since=min.
    assert ("m-2", "temperature_c", at(1, 0), 5, 50.0, 49.0, 51.0) in rows(
        lake, "entity_traffic", since="min"
    )


def test_named_entity_trend(lake: Settings) -> None:
    assert columns(lake, "entity_trend") == [
        "key", "metric", "hours", "readings", "mean", "first_hour_mean", "last_hour_mean",
        "slope_per_hour", "change_pct",
    ]  # fmt: skip
    assert rows(lake, "entity_trend") == [
        ("m-1", "cpu_util", 1, 2, 40.0, 40.0, 40.0, None, 0.0),
        ("m-1", "temperature_c", 2, 8, 62.5, 61.0, 64.0, pytest.approx(3.0), 300 / 61),
        # 1 degree over the 23 hours from Monday 10:00 to Tuesday 09:00
        ("m-2", "temperature_c", 2, 4, 70.75, 70.0, 71.0, pytest.approx(1 / 23), 100 / 70),
    ]


def test_named_heatmap(lake: Settings) -> None:
    assert columns(lake, "heatmap") == ["metric", "weekday", "hour", "readings", "mean"]
    # 2026-05-04 is a Monday (weekday 0)
    assert rows(lake, "heatmap") == [
        ("cpu_util", 0, 10, 2, 40.0),
        ("temperature_c", 0, 10, 5, 62.8),
        ("temperature_c", 0, 11, 4, 64.0),
        ("temperature_c", 1, 9, 3, 71.0),
    ]
    assert rows(lake, "heatmap", key="m-2") == [
        ("temperature_c", 0, 10, 1, 70.0),
        ("temperature_c", 1, 9, 3, 71.0),
    ]


def test_named_top_anomalies(lake: Settings) -> None:
    assert columns(lake, "top_anomalies") == [
        "key", "metric", "window_start", "window_end", "value", "score", "flagged", "detector"
    ]  # fmt: skip
    flagged = [
        ("m-2", "temperature_c", at(4, 10, 1), at(4, 10, 2), 0.0, 0.95, True, "novelty-1"),
        ("m-1", "temperature_c", at(4, 10, 1), at(4, 10, 2), 62.0, 0.9, True, "novelty-1"),
        ("m-2", "events", at(4, 10, 0), at(4, 10, 1), 3.0, 0.7, True, "novelty-1"),
        ("m-1", "temperature_c", at(4, 10, 3), at(4, 10, 4), 70.0, 0.5, True, "novelty-1"),
    ]
    assert rows(lake, "top_anomalies") == flagged
    assert rows(lake, "top_anomalies", limit="2") == flagged[:2]
    assert rows(lake, "top_anomalies", key="m-2", min_score=0.8) == flagged[:1]
    assert [r[5] for r in rows(lake, "top_anomalies", min_score="0", since="min")] == [
        0.99, 0.95, 0.9, 0.7, 0.5, 0.3, 0.2, 0.1
    ]  # fmt: skip


def test_named_forecast_vs_actual(lake: Settings) -> None:
    assert columns(lake, "forecast_vs_actual") == [
        "key", "metric", "window_start", "model_version", "horizon_min", "forecast", "actual",
        "error", "abs_error", "pct_error",
    ]  # fmt: skip
    # 10:00's forecast covers the windows of 10:01 and 10:02 (2 minutes): (62*2 + 66*2)/4 = 64;
    # 10:01's covers 10:02 and 10:03: (66*2 + 70*2)/4 = 68. 10:03's horizon (5 min) has not
    # passed: the newest window starts at 10:03. m-2's actual is 0: no percentage error.
    assert rows(lake, "forecast_vs_actual") == [
        ("m-1", "temperature_c", at(4, 10, 0), 3, 2, 61.0, 64.0, 3.0, 3.0, 300 / 64),
        ("m-1", "temperature_c", at(4, 10, 1), 4, 2, 63.0, 68.0, 5.0, 5.0, 500 / 68),
        ("m-2", "temperature_c", at(4, 10, 0), 3, 1, 72.0, 0.0, -72.0, 72.0, None),
    ]
    assert rows(lake, "forecast_vs_actual", key="m-2", metric="cpu_util") == []


def test_named_forecast_error(lake: Settings) -> None:
    assert columns(lake, "forecast_error") == [
        "key", "metric", "model_version", "forecasts", "mae", "rmse", "bias", "mape"
    ]  # fmt: skip
    assert rows(lake, "forecast_error") == [
        ("m-1", "temperature_c", 3, 1, 3.0, 3.0, 3.0, 300 / 64),
        ("m-1", "temperature_c", 4, 1, 5.0, 5.0, 5.0, 500 / 68),
        ("m-2", "temperature_c", 3, 1, 72.0, 72.0, -72.0, None),
    ]
    assert rows(lake, "forecast_error", key="m-2") == [
        ("m-2", "temperature_c", 3, 1, 72.0, 72.0, -72.0, None),
    ]
    assert rows(lake, "forecast_error", metric="cpu_util") == []
    # until: made before 10:01; since: made at 10:01 or later
    assert [r[:3] for r in rows(lake, "forecast_error", until="2026-05-04T10:01")] == [
        ("m-1", "temperature_c", 3),
        ("m-2", "temperature_c", 3),
    ]
    assert [r[:3] for r in rows(lake, "forecast_error", since="2026-05-04T10:01")] == [
        ("m-1", "temperature_c", 4),
    ]
    assert rows(lake, "forecast_error", since="2026-05-05") == []


def test_named_forecast_error_reads_the_errors_table_not_the_scores(lake: Settings) -> None:
    sql = render(get_analysis("forecast_error"), lake, {"since": SINCE}, now=NOW)
    assert "gold_telemetry_forecast_errors" in sql
    assert "gold_telemetry_scores" not in sql


def test_fixture_forecast_errors_are_what_the_live_check_resolves_from_the_scores(
    lake: Settings,
) -> None:
    from pulsecast.ml.live_error import ForecastCheck, error_rows
    from pulsecast.stream.scoring import _check_rows

    scores = run_sql(lake, "SELECT * FROM gold_telemetry_scores ORDER BY window_start").table
    check = ForecastCheck(step_s=60)
    # One batch per window start, oldest first, as scoring closes them.
    starts = sorted(set(scores["window_start"].to_pylist()))
    resolved = [
        check.add(_check_rows(scores.filter(pc.equal(scores["window_start"], s)))) for s in starts
    ]
    found = error_rows(pa.concat_tables(resolved)).sort_by([("key", "ascending")])
    table = run_sql(lake, "SELECT * FROM gold_telemetry_forecast_errors ORDER BY key, window_start")
    assert found.to_pylist() == table.table.select(found.schema.names).to_pylist()
    detail = rows(lake, "forecast_vs_actual", since="min")
    assert [tuple(r.values()) for r in found.drop_columns(["window_date"]).to_pylist()] == [
        (r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]) for r in detail
    ]


def test_named_data_quality(lake: Settings) -> None:
    assert columns(lake, "data_quality") == [
        "hour", "received", "accepted", "rejected", "late", "rejected_rate", "late_rate"
    ]  # fmt: skip
    # 10:00: offset 3 was rejected. 11:00: offset 5 was rejected, and (1, 0) accepted with an
    # event time older than batch 0's newest.
    assert rows(lake, "data_quality") == [
        (at(4, 10), 4, 3, 1, 0, 0.25, 0.0),
        (at(4, 11), 3, 2, 1, 1, 1 / 3, 0.5),
    ]
    assert rows(lake, "data_quality", since="2026-05-04T11:00Z") == [
        (at(4, 11), 3, 2, 1, 1, 1 / 3, 0.5),
    ]


def test_named_freshness(lake: Settings) -> None:
    assert columns(lake, "freshness") == [
        "hour", "batches", "events", "lag_p50_s", "lag_p95_s", "lag_max_s", "pipeline_p95_s"
    ]  # fmt: skip

    # batch 0 written at 10:00:12: lags 12, 11, 10 s; from ingest 7, 6, 5 s.
    # batch 1 written at 11:00:10: lags 10 and 3,670 s (the late event); from ingest 9 and 7 s.
    # Quantiles are the events' (the smallest lag with at least that share of the events
    # at or below it), read from histograms: within 2%. The largest lag is exact.
    def near(seconds: float) -> Any:
        return pytest.approx(seconds, rel=RELATIVE_ACCURACY)

    assert rows(lake, "freshness") == [
        (at(4, 10), 1, 3, near(11.0), near(12.0), 12.0, near(7.0)),
        (at(4, 11), 1, 2, near(10.0), near(3670.0), 3670.0, near(9.0)),
    ]
    assert rows(lake, "freshness", since="2026-05-04T11:00Z") == [
        (at(4, 11), 1, 2, near(10.0), near(3670.0), 3670.0, near(9.0)),
    ]


def test_named_rejections(lake: Settings) -> None:
    assert columns(lake, "rejections") == ["hour", "reason", "records", "rate"]
    # 10:00: offset 3 was malformed. 11:00: offset 5 repeated an event id silver held.
    assert rows(lake, "rejections") == [
        (at(4, 10), "malformed_json", 1, 0.25),
        (at(4, 11), "duplicate", 1, 1 / 3),
    ]
    assert rows(lake, "rejections", until="2026-05-04T11:00Z") == [
        (at(4, 10), "malformed_json", 1, 0.25),
    ]


def test_named_every_analysis_has_an_exact_test() -> None:
    tested = {
        name.removeprefix("test_named_")
        for name in globals()
        if name.startswith("test_named_") and name.removeprefix("test_named_") in analyses()
    }
    assert tested == set(analyses())


# -- definitions and parameters ------------------------------------------------------------------


def test_named_analyses_render_with_defaults(settings: Settings) -> None:
    assert len(analyses()) >= 6
    for analysis in analyses().values():
        assert analysis.summary and not analysis.summary.endswith(".")
        assert [p.name for p in analysis.params][:1] == ["stream"]
        sql = render(analysis, settings, now=NOW)
        assert "{" not in sql and "}" not in sql, analysis.name
        assert "TIMESTAMP '2026-05-25 12:00:00.000000'" in sql, analysis.name  # since = 7d


def test_named_timestamp_forms(settings: Settings) -> None:
    traffic = get_analysis("entity_traffic")

    def since(value: object) -> object:
        return bind(traffic, settings, {"since": value}, now=NOW)["since"]

    assert since("24h") == datetime(2026, 5, 31, 12, tzinfo=UTC)
    assert since("30m") == datetime(2026, 6, 1, 11, 30, tzinfo=UTC)
    assert since("2w") == datetime(2026, 5, 18, 12, tzinfo=UTC)
    assert since("now") == NOW
    assert since("min") == TIMESTAMP_MIN
    assert since("MAX") == TIMESTAMP_MAX
    assert since("2026-05-04") == at(4, 0)
    assert since("2026-05-04T12:00+02:00") == at(4, 10)
    assert since(date(2026, 5, 4)) == at(4, 0)
    assert since(datetime(2026, 5, 4, 10)) == at(4, 10)


def test_named_param_errors(settings: Settings) -> None:
    with pytest.raises(AnalysisNotFoundError) as info:
        get_analysis("nope")
    assert str(info.value).startswith("no analysis named 'nope'; analyses: data_quality, ")
    top = get_analysis("top_anomalies")
    cases = {
        "limit": ("ten", "param limit of top_anomalies: expected an integer, got 'ten'"),
        "min_score": ("nan", "param min_score of top_anomalies: expected a finite number, "
                      "got 'nan'"),
        "key": ("m'1", "param key of top_anomalies: expected text without quotes, backslashes "
                "or control characters, got \"m'1\""),
        "stream": ("nope", "param stream of top_anomalies: expected a configured stream "
                   "(series, telemetry), got 'nope'"),
        "since": ("yesterday", "param since of top_anomalies: expected an ISO date or time "
                  "(2026-05-01, 2026-05-01T12:00Z), an age before now (30m, 24h, 7d, 2w), "
                  "now, min or max, got 'yesterday'"),
    }  # fmt: skip
    for name, (value, message) in cases.items():
        with pytest.raises(ParamError) as error:
            bind(top, settings, {name: value})
        assert str(error.value) == message
        assert (error.value.analysis, error.value.param) == ("top_anomalies", name)
    with pytest.raises(ParamError) as error:
        bind(top, settings, {"lim": "3"})
    assert str(error.value) == (
        "analysis top_anomalies has no param 'lim'; "
        "its params: stream, since, until, key, min_score, limit"
    )
    with pytest.raises(ParamError) as error:
        bind(get_analysis("heatmap"), settings, {"window": "5m"})
    assert str(error.value) == (
        "param window of heatmap: expected a tumbling window of stream.windows (1m), got '5m'"
    )


def test_named_parse_analysis_rejects_malformed_headers() -> None:
    good = "-- What it does.\n-- param: n: int = 1 -- how many\nSELECT {n}\n"
    analysis = parse_analysis("good", good)
    assert (analysis.summary, analysis.body, analysis.params[0].help) == (
        "What it does", "SELECT {n}", "how many"
    )  # fmt: skip
    bad = {
        "-- x\n-- param: n int = 1\nSELECT 1": (
            "good.sql: malformed param line '-- param: n int = 1'"
        ),
        "-- x\n-- param: n: date = 1\nSELECT {n}": "good.sql: param n has unknown type 'date'",
        "-- x\nSELECT {n}": "good.sql: placeholders without a param line: ['n']",
        "SELECT 1": "good.sql: no description in its leading comment",
    }
    for text, message in bad.items():
        with pytest.raises(ValueError) as info:
            parse_analysis("good", text)
        assert str(info.value) == message


# -- the engines ---------------------------------------------------------------------------------


def test_named_missing_table_says_what_creates_it(empty_lake: Settings) -> None:
    with pytest.raises(MissingTableError) as info:
        run_analysis(empty_lake, "top_anomalies")
    assert str(info.value) == (
        "table gold_telemetry_scores does not exist yet: live scoring in `pulsecast stream "
        "run` creates it (ml.detector.enabled)"
    )
    with pytest.raises(MissingTableError) as info:
        run_sql(empty_lake, "SELECT * FROM silver_telemetry")
    assert str(info.value) == (
        "table silver_telemetry does not exist yet: `pulsecast stream run` creates it"
    )


def test_named_result_is_arrow(lake: Settings) -> None:
    result = run_analysis(lake, "heatmap", {"since": SINCE, "metric": "cpu_util"})
    table = result.to_arrow()
    assert table.schema.field("weekday").type == pa.int32()
    assert table.schema.field("readings").type == pa.int64()
    assert table.column("mean").to_pylist() == [40.0]


def test_named_engine_kept_open_sees_new_commits(lake_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    shutil.copytree(lake_root, root)
    settings = settings_for(tmp_path / "state", lake={"uri": root.as_uri()})
    engine = DuckDBEngine(settings)
    try:
        params = {"since": SINCE, "key": "m-3"}
        assert run_analysis(settings, "entity_traffic", params, engine=engine).rows == []
        gold = pa.table(
            {
                "key": ["m-3"],
                "window_start": pa.array([at(6, 8)], pa.timestamp("us", tz="UTC")),
                "metric": ["cpu_util"],
                "count": pa.array([7], pa.int64()),
                "mean": [10.0],
                "min": [9.0],
                "max": [11.0],
                "window_date": pa.array([date(2026, 5, 6)], pa.date32()),
                "window_hour": pa.array([8], pa.int32()),
            }
        )
        write_deltalake(root / "gold/telemetry_1m", gold, mode="append", schema_mode="merge")
        assert run_analysis(settings, "entity_traffic", params, engine=engine).rows == [
            ("m-3", "cpu_util", at(6, 8), 7, 10.0, 9.0, 11.0)
        ]
    finally:
        engine.close()


def _silver_event(batch: int, event_time: datetime, ingest_time: datetime) -> pa.Table:
    """One silver event of m-1 in micro-batch ``batch`` (Kafka partition 2, a new offset)."""
    ts = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "event_id": [f"e-2-{batch}"],
            "key": ["m-1"],
            "event_time": pa.array([event_time], ts),
            "ingest_time": pa.array([ingest_time], ts),
            "entity_id": ["m-1"],
            "temperature_c": [60.0],
            "cpu_util": [40.0],
            "vibration_mm_s": [3.0],
            "power_kw": [20.0],
            "kafka_partition": pa.array([2], pa.int32()),
            "kafka_offset": pa.array([batch + 10], pa.int64()),
            "batch_id": pa.array([batch], pa.int64()),
            "event_date": pa.array([event_time.date()], pa.date32()),
            "event_hour": pa.array([event_time.hour], pa.int32()),
        }
    )


def _append_silver(root: Path, rows: pa.Table, written: datetime) -> None:
    table = root / "silver/telemetry"
    write_deltalake(table, rows, partition_by=["event_date", "event_hour"], mode="append")
    set_write_times(table, {DeltaTable(table).version(): written})


def test_named_engine_builds_lake_files_once_per_version(
    lake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "lake"
    shutil.copytree(lake_root, root)
    settings = settings_for(tmp_path / "state", lake={"uri": root.as_uri()})
    built: list[int] = []
    build = sql_module.lake_files

    def counted(tables: dict[str, Any]) -> pa.Table:
        built.append(len(tables))
        return build(tables)

    monkeypatch.setattr(sql_module, "lake_files", counted)
    engine = DuckDBEngine(settings)
    per_table = (
        "SELECT table_name, count(*) FROM lake_files "
        "WHERE table_name = 'silver_telemetry' GROUP BY table_name"
    )
    try:
        assert engine.query(per_table).rows == [("silver_telemetry", 3)]
        engine.query("SELECT count(*) FROM lake_files")
        assert len(built) == 1  # once, for the tables' versions
        # A new micro-batch of silver, written at 12:00:05: lake_files is built again.
        _append_silver(root, _silver_event(2, at(4, 12), at(4, 12, 0, 1)), at(4, 12, 0, 5))
        assert engine.query(per_table).rows == [("silver_telemetry", 4)]
        assert len(built) == 2
    finally:
        engine.close()


def test_named_live_panels_read_only_the_batches_of_the_window(
    lake_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    shutil.copytree(lake_root, root)
    settings = settings_for(tmp_path / "state", lake={"uri": root.as_uri()})
    # A batch written on May 1, long before the window: its partition is not read.
    old = _batch_stats(0).to_pylist()
    for row in old:
        row["batch_id"], row["written_at"], row["batch_date"] = -1, at(1, 0), at(1, 0).date()
    write_deltalake(
        root / "state/telemetry_batches",
        pa.Table.from_pylist(old, schema=BATCH_STATS_SCHEMA),
        partition_by=["batch_date"],
        mode="append",
    )
    for name in ("data_quality", "freshness", "throughput", "rejections"):
        sql = render(get_analysis(name), settings, {"since": "2026-05-04T11:00Z"}, now=NOW)
        scans = [s for s in explain(settings, sql).scans if s.table == "batches_telemetry"]
        assert scans, name
        # May 1's partition is pruned, and batch 0's file by its statistics (10:00).
        assert [(s.files_read, s.files_total) for s in scans] == [(1, 3)], name
    assert rows(settings, "data_quality", since="2026-05-04T11:00Z") == [
        (at(4, 11), 3, 2, 1, 1, 1 / 3, 0.5),
    ]


def test_named_lake_files_and_portable_functions(lake: Settings) -> None:
    files = run_sql(
        lake,
        "SELECT table_name, count(*), sum(rows), min(min_batch_id), max(max_batch_id) "
        "FROM lake_files GROUP BY table_name ORDER BY table_name",
    ).rows
    assert files == [
        ("batches_telemetry", 2, 21, 0, 1),
        ("bronze_telemetry", 1, 7, None, None),
        ("gold_telemetry_1m", 4, 7, None, None),
        ("gold_telemetry_forecast_errors", 1, 3, None, None),
        ("gold_telemetry_scores", 2, 8, None, None),
        ("silver_telemetry", 3, 5, 0, 1),
    ]
    assert run_sql(
        lake,
        "SELECT pc_seconds(TIMESTAMP '2026-05-04 10:00:00', TIMESTAMP '2026-05-04 10:01:30'), "
        "pc_weekday(TIMESTAMP '2026-05-10 23:00:00'), extract(hour FROM window_start) "
        "FROM gold_telemetry_1m WHERE key = 'm-2' AND window_date = DATE '2026-05-05'",
    ).rows == [(90.0, 6, 9)]


# -- the dashboard's analyses (throughput, recent_scores, scored_series) ---------------------------


def test_named_throughput(lake: Settings) -> None:
    assert columns(lake, "throughput") == ["minute", "received", "landed", "entities"]
    # bronze: 4 records at 10:00 (one invalid), 3 at 11:00 (one repeat); silver: batch 0
    # (3 events) written at 10:00:12, batch 1 (2 events) at 11:00:10, all of m-1.
    assert rows(lake, "throughput") == [(at(4, 10), 4, 3, 1), (at(4, 11), 3, 2, 1)]
    assert rows(lake, "throughput", until="2026-05-04T10:30") == [(at(4, 10), 4, 3, 1)]
    assert rows(lake, "throughput", since="2026-05-04T11:00:05") == [(at(4, 11), 0, 2, 1)]


def test_named_recent_scores(lake: Settings) -> None:
    assert columns(lake, "recent_scores") == [
        "key", "metric", "window_start", "window_end", "value", "count", "score", "flagged",
        "forecast", "horizon_min", "model_version",
    ]  # fmt: skip
    m1 = [
        ("m-1", "temperature_c", at(4, 10, 3), at(4, 10, 4), 70.0, 2, 0.5, True, 67.0, 5, 4),
        ("m-1", "temperature_c", at(4, 10, 2), at(4, 10, 3), 66.0, 2, 0.2, False, None, None, None),
        ("m-1", "temperature_c", at(4, 10, 1), at(4, 10, 2), 62.0, 2, 0.9, True, 63.0, 2, 4),
        ("m-1", "temperature_c", at(4, 10, 0), at(4, 10, 1), 60.0, 2, 0.1, False, 61.0, 2, 3),
    ]
    assert rows(lake, "recent_scores", key="m-1", metric="temperature_c") == m1
    assert rows(lake, "recent_scores", key="m-1", limit=2) == m1[:2]
    # newest first; the flags only with min_score=0.5
    assert [(r[0], r[1], r[2], r[6]) for r in rows(lake, "recent_scores", min_score=0.5)] == [
        ("m-1", "temperature_c", at(4, 10, 3), 0.5),
        ("m-1", "temperature_c", at(4, 10, 1), 0.9),
        ("m-2", "temperature_c", at(4, 10, 1), 0.95),
        ("m-2", "events", at(4, 10, 0), 0.7),
    ]
    assert len(rows(lake, "recent_scores", since="min")) == 8


def test_named_scored_series(lake: Settings) -> None:
    assert columns(lake, "scored_series") == ["key", "metric", "windows", "last_window", "flags"]
    assert rows(lake, "scored_series") == [
        ("m-1", "temperature_c", 4, at(4, 10, 3), 2),
        ("m-2", "events", 1, at(4, 10, 0), 1),
        ("m-2", "temperature_c", 2, at(4, 10, 1), 1),
    ]
    assert rows(lake, "scored_series", since="min")[0] == (
        "m-1",
        "temperature_c",
        5,
        at(4, 10, 3),
        3,
    )

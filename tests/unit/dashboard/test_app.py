from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pulsecast.cli import app as cli
from pulsecast.config import Settings
from pulsecast.dashboard import DashboardData, create_app, serve
from pulsecast.dashboard.errors import DashboardError
from pulsecast.ml.registry import ModelVersionInfo
from tests.unit.analytics.conftest import at, config_file

NOW = at(4, 11, 3)  # three minutes after the fixture lake's last batch


def client_for(settings: Settings, now: datetime = NOW) -> TestClient:
    return TestClient(create_app(settings, data=DashboardData(settings, now=now)))


@pytest.fixture
def client(lake: Settings) -> Iterator[TestClient]:
    with client_for(lake) as c:
        yield c


def get(client: TestClient, path: str, **params: str) -> dict:
    response = client.get(f"/api/{path}", params={"since": "min", **params})
    assert response.status_code == 200, response.text
    body: dict = response.json()
    assert body["query_ms"] >= 0
    return body


def traces(panel: dict) -> list[str]:
    return [t.get("name", "") for t in panel["figure"]["data"]]


def test_dashboard_page_has_its_config_and_serves_plotly_locally(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    config = page.text.split('type="application/json">')[1].split("</script>")[0]
    assert json.loads(config) == {
        "stream": "telemetry",
        "streams": ["series", "telemetry"],
        "ranges": {
            "15m": "last 15 minutes", "1h": "last hour", "6h": "last 6 hours",
            "24h": "last 24 hours", "7d": "last 7 days", "min": "everything",
        },
        "refresh_s": 5.0,
    }  # fmt: skip
    assert '<script src="/static/plotly.min.js">' in page.text
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200
    assert plotly.headers["content-type"].startswith("text/javascript")
    assert len(plotly.content) > 1_000_000
    assert "Plotly.react" in client.get("/static/app.js").text
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/secret.txt").status_code == 404
    assert client.get("/healthz").json() == {"status": "ok"}


def test_dashboard_overview_rates_freshness_quality_entities(client: TestClient) -> None:
    panel = get(client, "overview")
    assert panel["state"] == "ok"
    assert panel["kpis"] == {
        # the last five minutes hold the 11:00 minute: 3 records in, 2 events landed
        "in_eps": 3 / 300,
        "processed_eps": 2 / 300,
        "received": 7,
        "landed": 5,
        "entities": 1,
        "last_minute": "2026-05-04T11:00:00+00:00",
        "rejected_rate": 2 / 7,
        "late_rate": 1 / 5,
        # the 11:00 hour of freshness: lags of 10 s and 3,670 s, from ingest 7 s and 9 s
        # (quantiles from the job's histograms: within 2%)
        "lag_p50_s": pytest.approx(10.0, rel=0.02),
        "lag_p95_s": pytest.approx(3670.0, rel=0.02),
        "pipeline_p95_s": pytest.approx(9.0, rel=0.02),
    }
    assert traces(panel) == ["in (Kafka)", "processed (lake)"]
    assert panel["figure"]["data"][0]["y"] == [4 / 60, 3 / 60]


def test_dashboard_entity_view_values_forecasts_band_and_anomalies(client: TestClient) -> None:
    series = get(client, "series")
    assert [(s["key"], s["metric"], s["windows"], s["flags"]) for s in series["series"]] == [
        ("m-1", "temperature_c", 5, 3),
        ("m-2", "events", 1, 1),
        ("m-2", "temperature_c", 2, 1),
    ]
    panel = get(client, "entity", key="m-1", metric="temperature_c")
    assert panel["state"] == "ok"
    assert (panel["points"], panel["flags"], panel["last_window"]) == (
        5, 3, "2026-05-04T10:03:00+00:00"
    )  # fmt: skip
    assert panel["mae"] == 4.0  # v3: 3.0 and v4: 5.0, one checked forecast each
    assert traces(panel) == ["value", "forecast ± live MAE (4)", "forecast", "anomaly"]
    value, band, forecast, anomaly = panel["figure"]["data"]
    assert value["y"] == [50.0, 60.0, 62.0, 66.0, 70.0]  # oldest first
    # made at 10:00 (horizon 2 min): drawn at the middle of 10:01..10:03
    assert forecast["x"][:2] == ["2026-05-04T10:02:00+00:00", "2026-05-04T10:03:00+00:00"]
    assert forecast["y"] == [61.0, 63.0, 67.0]
    assert band["y"] == [65.0, 67.0, 71.0, 63.0, 59.0, 57.0]
    assert anomaly["y"] == [50.0, 62.0, 70.0]
    other = get(client, "entity", key="m-2", metric="events", since="1h")
    assert other["state"] == "empty"
    assert other["message"] == "no scores of m-2 events in this range: pick a longer range"


def test_dashboard_alert_feed_newest_first(client: TestClient) -> None:
    panel = get(client, "alerts")
    assert panel["state"] == "ok"
    assert [
        (a["window_start"][11:16], a["key"], a["metric"], a["score"]) for a in panel["alerts"]
    ] == [
        ("10:03", "m-1", "temperature_c", 0.5),
        ("10:01", "m-1", "temperature_c", 0.9),
        ("10:01", "m-2", "temperature_c", 0.95),
        ("10:00", "m-2", "events", 0.7),
        ("00:00", "m-1", "temperature_c", 0.99),
    ]
    assert panel["alertmanager"] == []


def test_dashboard_alert_feed_shows_alertmanager_alerts(lake: Settings) -> None:
    recorded = lake.data_dir / "monitoring" / "alerts.jsonl"
    recorded.parent.mkdir(parents=True)
    line = {
        "received_at": "2026-05-04T11:00:00Z", "status": "firing",
        "alertname": "PulsecastNoEvents", "severity": "warning", "labels": {},
        "annotations": {"summary": "no events on telemetry"}, "starts_at": "", "ends_at": "",
        "fingerprint": "f1", "receiver": "pulsecast",
    }  # fmt: skip
    recorded.write_text(json.dumps(line) + "\n")
    with client_for(lake) as client:
        assert get(client, "alerts")["alertmanager"] == [
            {
                "received_at": "2026-05-04T11:00:00Z", "status": "firing",
                "alertname": "PulsecastNoEvents", "severity": "warning",
                "summary": "no events on telemetry",
            }
        ]  # fmt: skip


def test_dashboard_data_quality_and_freshness(client: TestClient) -> None:
    panel = get(client, "quality")
    assert panel["state"] == "ok"
    assert [(r["received"], r["accepted"], r["rejected"], r["late"]) for r in panel["rows"]] == [
        (4, 3, 1, 0),
        (3, 2, 1, 1),
    ]
    # the rejected records, one bar per reason (the rejections analysis)
    assert traces(panel) == [
        "accepted on time", "accepted late", "rejected: malformed_json", "rejected: duplicate"
    ]  # fmt: skip
    by_reason = {t["name"]: (t["x"], t["y"]) for t in panel["figure"]["data"][2:]}
    assert by_reason == {
        "rejected: malformed_json": (["2026-05-04T10:00:00+00:00"], [1]),
        "rejected: duplicate": (["2026-05-04T11:00:00+00:00"], [1]),
    }
    assert panel["freshness"]["state"] == "ok"
    assert traces(panel["freshness"])[:2] == ["median", "p95"]


def test_dashboard_models_live_error_and_an_empty_registry(client: TestClient) -> None:
    panel = get(client, "models")
    assert panel["state"] == "ok"
    assert [(e["key"], e["model_version"], e["mae"]) for e in panel["errors"]] == [
        ("m-1", 3, 3.0),
        ("m-1", 4, 5.0),
        ("m-2", 3, 72.0),
    ]
    assert traces(panel) == ["model v3", "model v4"]
    assert panel["registry"]["state"] == "empty"
    assert panel["registry"]["message"] == "no model in the registry yet: `pulsecast train`"
    assert panel["registry"]["champions"] == {"forecaster": None, "detector": None}


def test_dashboard_empty_lake_says_what_to_run(empty_lake: Settings) -> None:
    with client_for(empty_lake) as client:
        for path in ("overview", "series", "alerts", "quality"):
            panel = get(client, path)
            assert panel["state"] == "empty", path
            assert "pulsecast stream run" in panel["message"], (path, panel["message"])
        assert get(client, "overview")["message"] == (
            "no data yet: table batches_telemetry does not exist yet: "
            "`pulsecast stream run` creates it"
        )
        entity = get(client, "entity")
        assert entity["state"] == "empty"
        assert entity["figure"]["layout"]["annotations"][0]["text"].startswith("no scores yet")
        assert get(client, "alerts")["message"] == (
            "no data yet: table gold_telemetry_scores does not exist yet: live scoring in "
            "`pulsecast stream run` creates it (ml.detector.enabled)"
        )


def test_dashboard_bad_range_and_unknown_stream(client: TestClient) -> None:
    response = client.get("/api/overview", params={"since": "yesterday"})
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "since must be one of 15m, 1h, 6h, 24h, 7d, min, got 'yesterday'"
    )
    panel = get(client, "overview", stream="nope")
    assert panel["state"] == "error"
    assert panel["message"].startswith("param stream of throughput: expected a configured stream")


def test_dashboard_data_refuses_an_unknown_stream(lake: Settings) -> None:
    with pytest.raises(ValueError, match=r"^stream 'nope' is not configured; streams: series"):
        DashboardData(lake, stream="nope")


def test_dashboard_serve_refuses_a_taken_port(lake: Settings) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        settings = lake.model_copy(
            update={"dashboard": lake.dashboard.model_copy(update={"port": port})}
        )
        with pytest.raises(DashboardError) as error:
            serve(settings)
    assert str(error.value) == (
        f"cannot serve the dashboard on 127.0.0.1:{port}: Address already in use; "
        "choose another port with --port or PULSECAST_DASHBOARD__PORT"
    )
    assert error.value.port == port


def test_dashboard_cli_unknown_stream(lake: Settings, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--config", str(config_file(lake, tmp_path)), "dashboard", "--stream", "nope"]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "error: --stream 'nope' is not configured; streams: series, telemetry"
    )


def test_dashboard_freshness_of_one_hour_gets_an_hour_each_side(client: TestClient) -> None:
    panel = get(client, "quality", since="1h")  # writes since 10:03: the 11:00 hour only
    assert [r["hour"] for r in panel["rows"]] == ["2026-05-04T11:00:00+00:00"]
    assert panel["freshness"]["figure"]["layout"]["xaxis"]["range"] == [
        "2026-05-04T10:00:00+00:00",
        "2026-05-04T12:00:00+00:00",
    ]


class _Registry:
    """Stands in for ModelRegistry's read side (training a model is an integration matter)."""

    def versions(self, stream: str) -> list[ModelVersionInfo]:
        def version(kind: str, number: int, champion: bool, trigger: str) -> ModelVersionInfo:
            return ModelVersionInfo(
                name=f"{stream}-{kind}", stream=stream, kind=kind, version=number,
                run_id=f"r{number}", created=at(4, 9, number), champion=champion,
                metrics={"holdout_mae": 0.5 * number}, tags={"trigger": trigger},
            )  # fmt: skip

        return [
            version("forecaster", 2, True, "drift"),
            version("forecaster", 1, False, "on demand"),
        ]


def test_dashboard_models_champions_and_versions(lake: Settings) -> None:
    data = DashboardData(lake, now=NOW)
    data._registry = _Registry()
    with TestClient(create_app(lake, data=data)) as client:
        registry = get(client, "models")["registry"]
    assert registry["state"] == "ok"
    assert registry["champions"] == {"forecaster": 2, "detector": None}
    assert registry["versions"] == [
        {"kind": "forecaster", "version": 2, "champion": True,
         "created": "2026-05-04T09:02:00+00:00", "holdout_mae": 1.0, "trigger": "drift"},
        {"kind": "forecaster", "version": 1, "champion": False,
         "created": "2026-05-04T09:01:00+00:00", "holdout_mae": 0.5, "trigger": "on demand"},
    ]  # fmt: skip

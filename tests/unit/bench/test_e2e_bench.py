from __future__ import annotations

import doctest
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pulsecast.bench.e2e import (
    ENTITIES,
    ForecastCounts,
    bench_settings,
    forecast_fields,
    resolve_scoring,
    telemetry_records,
)
from pulsecast.cli import app
from pulsecast.config import Settings, SimulatorSettings
from pulsecast.sources.simulator import FleetSimulator


@pytest.mark.parametrize(
    ("scoring", "forecasts", "default", "expected"),
    [
        (None, False, True, True),  # ml.detector.enabled decides
        (None, False, False, False),
        (True, False, False, True),  # --scoring wins
        (False, False, True, False),  # --no-scoring wins
        (None, True, False, True),  # --forecasts implies scoring
        (True, True, False, True),
    ],
)
def test_resolve_scoring_forecasts_imply_scoring(
    scoring: bool | None, forecasts: bool, default: bool, expected: bool
) -> None:
    assert resolve_scoring(scoring, forecasts=forecasts, default=default) is expected


def test_resolve_scoring_refuses_forecasts_without_scoring() -> None:
    with pytest.raises(ValueError, match=r"^--forecasts needs live scoring") as info:
        resolve_scoring(False, forecasts=True, default=True)
    assert str(info.value) == (
        "--forecasts needs live scoring (the scoring query forecasts): drop --no-scoring"
    )


def test_bench_settings_keeps_the_registry_in_the_run_folder(
    settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "run"
    own = bench_settings(settings, "benchx", root, scoring=True, forecasts=True)
    assert own.ml.registry_uri == f"sqlite:///{root}/mlflow/registry.db"
    assert own.ml.artifact_uri == (root / "mlflow" / "artifacts").as_uri()
    assert own.ml.detector.enabled and own.ml.live_forecasts
    # The job does not retrain the benchmark's champion while it is measured.
    assert own.ml.retrain_interval_min == 0 and not own.ml.retrain_on_drift
    assert own.lake_uri == f"file://{root}/lake"
    assert own.checkpoint_uri == f"file://{root}/checkpoints"
    assert own.streams["benchx"] == settings.streams["telemetry"]
    # The user's settings are left as they were.
    assert settings.ml.registry_uri is None and settings.ml.artifact_uri is None
    assert "benchx" not in settings.streams


@pytest.mark.parametrize("scoring", [True, False])
def test_bench_settings_without_forecasts_forecasts_nothing(
    settings: Settings, tmp_path: Path, scoring: bool
) -> None:
    own = bench_settings(settings, "benchx", tmp_path / "run", scoring=scoring)
    assert own.ml.detector.enabled is scoring
    assert own.ml.live_forecasts is False
    assert own.ml.registry_uri == f"sqlite:///{tmp_path}/run/mlflow/registry.db"
    assert own.ml.retrain_interval_min == settings.ml.retrain_interval_min
    assert own.ml.retrain_on_drift == settings.ml.retrain_on_drift


def test_bench_settings_refuses_forecasts_without_scoring(
    settings: Settings, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"^live forecasts need live scoring") as info:
        bench_settings(settings, "benchx", tmp_path, scoring=False, forecasts=True)
    assert str(info.value) == "live forecasts need live scoring (the scoring query makes them)"


def test_forecast_fields_name_every_count() -> None:
    counts = ForecastCounts(
        champion_version=1, history_events=108_000, made=9, sustained=4, scored_sustained=8
    )
    assert forecast_fields(True, counts) == {
        "forecasts": True,
        "forecast_model_version": 1,
        "history_events": 108_000,
        "forecasts_made": 9,
        "forecasts_sustained": 4,
        "scored_sustained": 8,
        "forecasts_capacity": 0,
    }
    off = forecast_fields(False, ForecastCounts())
    assert off["forecasts"] is False
    assert off["forecast_model_version"] is None
    assert {k: v for k, v in off.items() if k not in ("forecasts", "forecast_model_version")} == {
        "history_events": 0,
        "forecasts_made": 0,
        "forecasts_sustained": 0,
        "scored_sustained": 0,
        "forecasts_capacity": 0,
    }


def test_telemetry_records_are_the_simulators_machines() -> None:
    # A backfilled history is only theirs (and forecast) if the ids are the same.
    simulated = FleetSimulator(
        SimulatorSettings(entities=ENTITIES), start=datetime.now(UTC), interval_s=10
    )
    records = [json.loads(r) for r in telemetry_records(2 * ENTITIES, rate=1_000)]
    ids = [r["payload"]["entity_id"] for r in records]
    assert ids[:ENTITIES] == simulated.ids
    assert sorted(set(ids)) == simulated.ids
    assert set(records[0]["payload"]) == {
        "entity_id",
        "temperature_c",
        "cpu_util",
        "vibration_mm_s",
        "power_kw",
    }


def test_cli_bench_e2e_refuses_forecasts_without_scoring_before_starting_anything() -> None:
    result = CliRunner().invoke(app, ["bench", "e2e", "--forecasts", "--no-scoring"])
    assert result.exit_code == 2
    assert "--forecasts needs live scoring" in result.output
    assert "starting kafka" not in result.output


def test_cli_bench_e2e_documents_forecasts() -> None:
    result = CliRunner().invoke(app, ["bench", "e2e", "--help"])
    assert result.exit_code == 0
    assert "--forecasts" in result.output


def test_e2e_doctests_hold() -> None:
    import pulsecast.bench.e2e

    assert doctest.testmod(pulsecast.bench.e2e).failed == 0


def test_steady_eps_counts_the_batches_after_the_first_over_their_time() -> None:
    from pulsecast.bench.e2e import steady_eps
    from pulsecast.stream.job import BatchTimes

    def batch(i: int, records: int, end: float) -> BatchTimes:
        return BatchTimes(i, records, end - 1, end - 0.5, end)

    # The first batch (slow: the start) is left out, with the time up to its end.
    batches = [batch(2, 100, 30.0), batch(0, 1_000, 10.0), batch(1, 300, 20.0)]
    assert steady_eps(batches) == (300 + 100) / (30.0 - 10.0)
    assert steady_eps(batches[:1]) is None

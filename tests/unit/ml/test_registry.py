"""Champion/challenger decisions, and the MLflow registry on a SQLite file (no Spark)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pulsecast.cli import app
from pulsecast.config import Settings
from pulsecast.ml.errors import (
    ModelNotFoundError,
    NoChampionError,
    NoPreviousChampionError,
    PromotionRefusedError,
)
from pulsecast.ml.registry import (
    ModelRegistry,
    ModelVersionInfo,
    baseline_shortfall,
    code_version,
    decide,
    registry_uri,
)

runner = CliRunner()


def info(
    version: int,
    mae: float,
    *,
    horizon: str = "5",
    vs: tuple[int, float, float] | None = None,
    baselines: dict[str, float] | None = None,
) -> ModelVersionInfo:
    metrics = {"holdout_mae": mae, **(baselines or {})}
    tags = {}
    if vs is not None:
        tags["compared_with_version"] = str(vs[0])
        metrics["vs_champion_mae"], metrics["champion_mae"] = vs[1], vs[2]
    return ModelVersionInfo(
        name="s-forecaster",
        stream="s",
        kind="forecaster",
        version=version,
        run_id="r",
        created=datetime(2026, 5, 1, tzinfo=UTC),
        params={"horizon_min": horizon},
        metrics=metrics,
        tags=tags,
    )


def test_decide_promotes_the_first_model() -> None:
    assert decide(info(1, 0.5), None).promote


BEATEN = {"holdout_smape": 1.0, "last_value_mae": 0.6, "last_value_smape": 2.0}


def test_decide_promotes_a_forecaster_only_if_it_beats_both_baselines() -> None:
    beaten = {**BEATEN, "seasonal_mae": 0.9, "seasonal_smape": 3.0}
    assert decide(info(1, 0.5, baselines=beaten), None).promote
    assert baseline_shortfall({"holdout_mae": 0.5, **beaten}) is None
    worse = {**beaten, "last_value_mae": 0.4}
    d = decide(info(1, 0.5, baselines=worse), None)
    assert not d.promote
    assert d.reason == "it does not beat the baselines: MAE 0.5 vs 0.4 for the last value"
    tie = {**beaten, "seasonal_smape": 1.0}
    d = decide(info(2, 0.4, baselines=tie), info(1, 0.5))
    assert not d.promote and d.champion_version == 1
    assert d.reason.endswith("sMAPE 1 vs 1 for the seasonal naive forecast")
    forced = decide(info(1, 0.5, baselines=worse), None, force=True)
    assert forced.promote and forced.reason.startswith("forced: it does not beat the baselines")


def test_decide_needs_a_strictly_lower_mae() -> None:
    better = decide(info(2, 0.4), info(1, 0.5))
    assert better.promote and better.reason.startswith("it beats the champion: MAE 0.4 vs")
    equal = decide(info(2, 0.5), info(1, 0.5))
    assert not equal.promote
    assert equal.reason == (
        "it does not beat the champion: MAE 0.5 vs champion version 1's 0.5 each on its own holdout"
    )
    forced = decide(info(2, 0.9), info(1, 0.5), force=True)
    assert forced.promote and forced.reason.startswith("forced: MAE 0.9")


def test_decide_prefers_the_same_holdout_rows() -> None:
    # Worse on its own holdout than the champion's record, better on the same rows.
    d = decide(info(2, 0.6, vs=(1, 0.45, 0.47)), info(1, 0.5))
    assert d.promote and d.same_holdout
    assert (d.candidate_mae, d.champion_mae) == (0.45, 0.47)
    # A comparison with another champion does not count.
    d = decide(info(3, 0.6, vs=(1, 0.45, 0.47)), info(2, 0.5))
    assert not d.promote and not d.same_holdout


def test_decide_does_not_compare_horizons() -> None:
    d = decide(info(2, 0.1, horizon="10"), info(1, 0.5))
    assert not d.promote and d.reason == "it forecasts 10 min ahead, the champion 5 min"
    assert decide(info(2, 0.1, horizon="10"), info(1, 0.5), force=True).promote


def test_decide_on_the_champion_itself_is_a_no_op() -> None:
    d = decide(info(1, 0.5), info(1, 0.5))
    assert not d.promote and d.reason == "it is the champion already"


def test_code_version_names_pulsecast_and_the_commit() -> None:
    found = code_version()
    assert found["pulsecast_version"] == "0.1.0"
    assert len(found.get("git_commit", "x" * 40)) == 40


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables made (creating them takes seconds)."""
    from pulsecast.testing import settings_for

    state = tmp_path_factory.mktemp("store") / "state"
    ModelRegistry(settings_for(state)).versions("telemetry")
    return state / "mlflow" / "registry.db"


@pytest.fixture
def registry(settings: Settings, empty_store: Path) -> ModelRegistry:
    store = settings.data_dir / "mlflow" / "registry.db"
    store.parent.mkdir(parents=True)
    shutil.copy(empty_store, store)
    return ModelRegistry(settings)


def register(registry: ModelRegistry, tmp_path: Path, mae: float, **extra: float) -> int:
    folder = tmp_path / f"model-{mae}"
    folder.mkdir()
    (folder / "weights.txt").write_text(str(mae))
    version = registry.log_version(
        stream="telemetry",
        kind="forecaster",
        folder=folder,
        params={"horizon_min": 5},
        metrics={"holdout_mae": mae, **extra},
        tags={"data.first_window": "2026-05-01T00:00:00Z"},
    )
    return version.version


def test_registry_store_is_sqlite_under_the_data_dir(settings: Settings) -> None:
    assert registry_uri(settings) == f"sqlite:///{settings.data_dir}/mlflow/registry.db"


def test_registry_versions_promote_refuse_force_rollback(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    assert registry.champion("telemetry", "forecaster") is None
    v1 = register(registry, tmp_path, 0.5)
    v2 = register(registry, tmp_path, 0.4)
    v3 = register(registry, tmp_path, 0.45)
    assert (v1, v2, v3) == (1, 2, 3)
    listed = registry.versions("telemetry", "forecaster")
    assert [v.version for v in listed] == [3, 2, 1]
    assert listed[0].metrics["holdout_mae"] == 0.45
    assert listed[0].params == {"horizon_min": "5"}
    assert listed[0].tags["data.first_window"] == "2026-05-01T00:00:00Z"
    assert listed[0].tags["pulsecast_version"] == "0.1.0"
    assert registry.promote("telemetry", "forecaster", 1).promote
    assert registry.promote("telemetry", "forecaster", 2).promote
    with pytest.raises(PromotionRefusedError) as refused:
        registry.promote("telemetry", "forecaster", 3)
    assert str(refused.value) == (
        "not promoting telemetry-forecaster version 3: it does not beat the champion: "
        "MAE 0.45 vs champion version 2's 0.4 each on its own holdout (--force overrides)"
    )
    champion = registry.champion("telemetry", "forecaster")
    assert champion is not None and champion.version == 2 and champion.champion
    assert registry.promote("telemetry", "forecaster", 3, force=True).promote
    assert registry.rollback("telemetry", "forecaster") == (3, 2)
    assert registry.rollback("telemetry", "forecaster") == (2, 1)
    with pytest.raises(NoPreviousChampionError, match="no previous champion to roll back to"):
        registry.rollback("telemetry", "forecaster")
    files = registry.download(registry.version("telemetry", "forecaster", 2))
    assert (files / "weights.txt").read_text() == "0.4"
    assert registry.download(registry.version("telemetry", "forecaster", 2)) == files


def test_registry_promote_and_rollback_are_audited(
    registry: ModelRegistry, settings: Settings, tmp_path: Path
) -> None:
    from pulsecast.security.audit import audit_log

    register(registry, tmp_path, 0.5)
    register(registry, tmp_path, 0.4)
    registry.promote("telemetry", "forecaster", 1)
    registry.promote("telemetry", "forecaster", 2)
    registry.rollback("telemetry", "forecaster")
    records = list(audit_log(settings).records())
    assert [(r["action"], r["target"]) for r in records] == [
        ("model.promote", "telemetry-forecaster"),
        ("model.promote", "telemetry-forecaster"),
        ("model.rollback", "telemetry-forecaster"),
    ]
    assert records[1]["details"]["version"] == 2 and records[1]["details"]["force"] is False
    assert records[2]["details"] == {"from": 2, "to": 1}
    assert audit_log(settings).verify().ok


def test_registry_errors_name_what_is_missing(registry: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no model telemetry-detector in the registry"):
        registry.version("telemetry", "detector", 1)
    with pytest.raises(NoChampionError, match="telemetry-forecaster has no champion yet"):
        registry.rollback("telemetry", "forecaster")
    register(registry, tmp_path, 0.5)
    with pytest.raises(ModelNotFoundError, match="telemetry-forecaster has no version 7"):
        registry.promote("telemetry", "forecaster", 7)


def test_cli_models_list_promote_rollback(
    settings: Settings, registry: ModelRegistry, tmp_path: Path
) -> None:
    register(registry, tmp_path, 0.5)
    register(registry, tmp_path, 0.6)
    config = tmp_path / "pulsecast.toml"
    config.write_text(f'[paths]\ndata_dir = "{settings.paths.data_dir}"\n')
    base = ["--config", str(config), "models"]
    empty = runner.invoke(app, [*base, "list", "--stream", "series"])
    assert empty.exit_code == 0
    assert "no models of series yet" in empty.output
    ok = runner.invoke(app, [*base, "promote", "1"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("telemetry-forecaster version 1 is the champion")
    refused = runner.invoke(app, [*base, "promote", "2"])
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [
        "error: not promoting telemetry-forecaster version 2: it does not beat the champion: "
        "MAE 0.6 vs champion version 1's 0.5 each on its own holdout (--force overrides)"
    ]
    assert runner.invoke(app, [*base, "promote", "2", "--force"]).exit_code == 0
    listed = runner.invoke(app, [*base, "list"])
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert lines[0].split()[:3] == ["model", "version", "alias"]
    assert lines[1].split()[:3] == ["telemetry-forecaster", "2", "champion"]
    back = runner.invoke(app, [*base, "rollback"])
    assert back.output.strip() == (
        "telemetry-forecaster: version 1 is the champion again (version 2 demoted)"
    )
    again = runner.invoke(app, [*base, "rollback"])
    assert again.exit_code == 1
    assert again.output.strip() == (
        "error: telemetry-forecaster has no previous champion to roll back to"
    )
    bad = runner.invoke(app, [*base, "list", "--model", "nope"])
    assert bad.exit_code == 1
    assert bad.output.strip() == "error: --model must be forecaster, detector or all, got 'nope'"


@pytest.mark.parametrize(
    "args",
    [["train"], ["models"], ["models", "list"], ["models", "promote"], ["models", "rollback"]],
)
def test_cli_ml_commands_have_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: pulsecast" in result.output


def test_cli_train_refuses_a_bad_model_before_spark(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--model", "everything"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: --model must be forecaster, detector or all, got 'everything'"
    )

"""Train on backfilled history, register, promote, list, refuse a worse model, roll back.

Real Spark (the suite's session) and a real MLflow store (SQLite) in the test's
folder; no Kafka: the history is written through the stream job's transforms.
"""

from __future__ import annotations

import json
from pathlib import Path

from pyspark.sql import SparkSession
from typer.testing import CliRunner

from pulsecast.cli import app
from pulsecast.config import load_settings
from pulsecast.ml.registry import ModelRegistry, load_champion, load_detector_profile
from pulsecast.ml.train import train

runner = CliRunner()
CONFIG = """\
[paths]
data_dir = "{state}"
[spark]
master = "local[2]"
shuffle_partitions = 2
[ml]
gbt_max_iter = 5
backfill_interval_s = 60.0
"""


def test_ml_train_register_promote_rollback(spark: SparkSession, tmp_path: Path) -> None:
    config = tmp_path / "pulsecast.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    settings = load_settings(config)
    cli = ["--config", str(config)]

    first = runner.invoke(app, [*cli, "train", "--backfill-days", "2", "--entities", "3", "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout.strip().splitlines()[-1])
    # Three machines, a reading a minute for two days, less the simulated dropouts.
    assert 0.9 * 2 * 1440 * 3 < report["backfill"]["events"] <= 2 * 1440 * 3
    forecaster, detector = report["models"]
    assert (forecaster["kind"], forecaster["version"], forecaster["promoted"]) == (
        "forecaster",
        1,
        True,
    )
    assert forecaster["decision"] == "there is no champion yet"
    m = forecaster["metrics"]
    assert forecaster["beats_baselines"] is True
    assert m["holdout_mae"] < m["last_value_mae"] and m["holdout_mae"] < m["seasonal_mae"]
    assert m["holdout_smape"] < m["last_value_smape"] and m["holdout_smape"] < m["seasonal_smape"]
    assert forecaster["params"]["season_min"] == 1440
    assert {p["metric"] for p in forecaster["per_metric"]} == {
        "temperature_c",
        "cpu_util",
        "vibration_mm_s",
        "power_kw",
    }
    assert (detector["kind"], detector["version"], detector["promoted"]) == ("detector", 1, True)
    assert detector["metrics"]["profile_rows"] == 3 * 4 * 24

    # A worse challenger (a single stump) is scored against the champion on the same rows.
    stump = {"gbt_max_iter": 1, "gbt_max_depth": 1}
    worse = settings.model_copy(update={"ml": settings.ml.model_copy(update=stump)})
    second = train(spark, worse, "telemetry", kinds=["forecaster"], promote=True).models[0]
    assert second.version == 2 and not second.promoted, second.decision
    mine, theirs = second.metrics["vs_champion_mae"], second.metrics["champion_mae"]
    assert second.decision == (
        f"it does not beat the champion: MAE {mine:.4g} vs champion version 1's "
        f"{theirs:.4g} on the same holdout rows"
    )
    assert second.champion_version == 1

    refused = runner.invoke(app, [*cli, "models", "promote", "2"])
    assert refused.exit_code == 1
    assert refused.output.startswith("error: not promoting telemetry-forecaster version 2:")
    forced = runner.invoke(app, [*cli, "models", "promote", "2", "--force"])
    assert forced.exit_code == 0, forced.output
    listed = json.loads(runner.invoke(app, [*cli, "models", "list", "--json"]).stdout)
    champions = {(v["kind"], v["version"]) for v in listed["versions"] if v["champion"]}
    assert champions == {("forecaster", 2), ("detector", 1)}
    v1 = next(v for v in listed["versions"] if v["kind"] == "forecaster" and v["version"] == 1)
    assert v1["tags"]["data.entities"] == "3"
    assert v1["tags"]["pulsecast_version"] == "0.1.0"
    assert v1["metrics"]["train_rows"] > 0

    back = runner.invoke(app, [*cli, "models", "rollback"])
    assert back.exit_code == 0, back.output
    champion = ModelRegistry(settings).champion("telemetry", "forecaster")
    assert champion is not None and champion.version == 1

    model, version = load_champion(settings, "telemetry", spark=spark)
    assert version == 1 and model.spec.horizon_min == 5
    profile = load_detector_profile(settings, "telemetry")
    assert profile.version == 1 and len(profile) == 3 * 4 * 24

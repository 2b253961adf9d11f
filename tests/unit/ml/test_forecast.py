"""The forecaster's training: labels clipped to ``label_clip_sd``, on a local Spark."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pulsecast.ml.features import FeatureSpec, build_features, fit_normaliser
from pulsecast.ml.forecast import Forecaster
from tests.unit.stream.conftest import spark as spark  # the one local SparkSession

T0 = 1_800_000_000 - 1_800_000_000 % 86_400
SPEC = FeatureSpec(
    horizon_min=1,
    lags_min=(1,),
    rolling_min=(5,),
    season_min=30,
    metrics=("cpu_util",),
    time_of_day=False,
)
PARAMS = {"max_iter": 3, "max_depth": 3, "step_size": 0.5, "subsampling_rate": 1.0, "seed": 1}


def series(spark: SparkSession) -> DataFrame:
    """One machine, a level of 50 with a small wiggle and, every 20 minutes, a spike of 500."""
    rows = [
        ("m-0", "cpu_util", T0 + 60 * m, 6, 500.0 if m % 20 == 10 else 50.0 + (m % 3) * 0.1, 0.1)
        for m in range(240)
    ]
    schema = "key string, metric string, ts long, count long, mean double, stddev double"
    return spark.createDataFrame(rows, schema)


def largest_change(spark: SparkSession, clip: float | None) -> float:
    """The largest predicted change, in the entity's standard deviations, over the rows."""
    rows = build_features(series(spark), SPEC).where(F.col("target").isNotNull())
    stats = fit_normaliser(rows, until_s=T0 + 86_400)
    params = {**PARAMS, **({"label_clip_sd": clip} if clip is not None else {})}
    model = Forecaster.fit(rows, stats, SPEC, params)
    sd = stats.where(F.col("key") == "m-0").first()["sd"]  # type: ignore[index]
    out = model.predict(rows).select(F.max(F.abs(F.col("forecast") - F.col("value")) / sd))
    return float(out.first()[0])  # type: ignore[index]


def test_labels_beyond_the_clip_do_not_teach_extreme_forecasts(spark: SparkSession) -> None:
    # The spikes are about 3.9 sd from the level; the last value before one is 50.
    assert largest_change(spark, None) > 3
    assert largest_change(spark, 1.0) <= 1.0 + 1e-9

"""MAE and sMAPE (Python and Spark agree), the baselines, the detector profile, the season."""

from __future__ import annotations

import statistics
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from pulsecast.ml.accuracy import accuracy, mae, smape
from pulsecast.ml.forecast import baseline_scores
from pulsecast.ml.profile import DetectorProfile, fit_profile, profile_scores
from pulsecast.ml.train import choose_season
from tests.unit.stream.conftest import spark as spark  # the one local SparkSession

ACTUAL = [100.0, 0.0, 0.0, 50.0, -10.0]
PREDICTED = [110.0, 0.0, 5.0, 40.0, -12.0]


def test_mae_by_hand() -> None:
    assert mae(ACTUAL, PREDICTED) == pytest.approx((10 + 0 + 5 + 10 + 2) / 5)


def test_smape_by_hand_with_a_zero_denominator() -> None:
    terms = [20 / 210, 0.0, 2.0, 20 / 90, 4 / 22]
    assert smape(ACTUAL, PREDICTED) == pytest.approx(100 * sum(terms) / 5)
    assert smape([0.0], [0.0]) == 0.0
    assert smape([1.0], [-1.0]) == 200.0


def test_metrics_refuse_mismatched_or_empty_input() -> None:
    with pytest.raises(ValueError, match="2 actual values but 1 predictions"):
        mae([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no values to score"):
        smape([], [])


def test_spark_accuracy_matches_python_and_skips_missing(spark: SparkSession) -> None:
    rows = [("a", a, p, p + 1) for a, p in zip(ACTUAL, PREDICTED, strict=True)]
    rows.append(("b", None, 1.0, 1.0))
    rows.append(("b", 3.0, None, 1.0))
    df = spark.createDataFrame(rows, "metric string, actual double, f double, g double")
    results = accuracy(df, actual="actual", predictions={"one": "f", "two": "g"}, by="metric")
    assert len(results) == 2  # group b has no complete row
    total, per_a = results
    assert total["rows"] == 5 and total["group"] is None
    assert total["one_mae"] == pytest.approx(mae(ACTUAL, PREDICTED))
    assert total["one_smape"] == pytest.approx(smape(ACTUAL, PREDICTED))
    assert total["two_smape"] == pytest.approx(smape(ACTUAL, [p + 1 for p in PREDICTED]))
    assert per_a["group"] == "a" and per_a["one_mae"] == total["one_mae"]


def test_baselines_are_scored_on_the_same_rows(spark: SparkSession) -> None:
    # target, last value, seasonal, model forecast
    rows = [
        ("cpu", 10.0, 9.0, 12.0, 10.5),
        ("cpu", 20.0, 18.0, 21.0, 19.0),
        ("cpu", 30.0, 29.0, None, 30.0),  # no seasonal value: left out for all three
        ("temp", 5.0, 5.5, 4.0, 5.0),
    ]
    df = spark.createDataFrame(
        rows, "metric string, target double, value double, seasonal double, forecast double"
    )
    total, cpu, temp = baseline_scores(df)
    assert total["rows"] == 3
    assert total["model_mae"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert total["last_value_mae"] == pytest.approx((1.0 + 2.0 + 0.5) / 3)
    assert total["seasonal_mae"] == pytest.approx((2.0 + 1.0 + 1.0) / 3)
    assert total["seasonal_smape"] == pytest.approx(smape([10, 20, 5], [12, 21, 4]))
    assert (cpu["group"], cpu["rows"], temp["group"]) == ("cpu", 2, "temp")
    assert temp["model_mae"] == 0.0


def test_profile_levels_spreads_and_scores(spark: SparkSession, tmp_path: Path) -> None:
    hour = 3600
    rows = [
        ("m-0", "cpu", h * hour + 60 * i, 6, float(v), None)
        for h in (0, 1)
        for i, v in enumerate([1, 2, 3, 4, 100])
    ]
    rows += [("m-0", "cpu", 86_400 + 60 * i, 6, float(v), None) for i, v in enumerate([2, 3, 40])]
    series = spark.createDataFrame(
        rows, "key string, metric string, ts long, count long, mean double, stddev double"
    )
    profile = fit_profile(series, until_s=86_400)
    got = {r.hour: r for r in profile.collect()}
    assert sorted(got) == [0, 1]
    assert got[0].n == 5 and got[0].mean == pytest.approx(22.0)
    assert got[0].median == 3.0 and got[0].mad == 1.0
    assert got[0].std == pytest.approx(statistics.stdev([1, 2, 3, 4, 100]))
    scores = profile_scores(profile, series, since_s=86_400)
    assert scores["rows"] == 3.0
    assert scores["mae"] == pytest.approx((1 + 0 + 37) / 3)
    assert scores["coverage_3sd"] == 1.0
    loaded = DetectorProfile(profile.toArrow(), version=3)
    loaded.write(tmp_path)
    again = DetectorProfile.read(tmp_path, version=3)
    assert len(again) == 2 and again.version == 3
    expected = again.expected("m-0", "cpu", 0)
    assert expected is not None and expected.median == 3.0
    assert again.expected("m-9", "cpu", 0) is None


def test_profile_needs_its_columns() -> None:
    with pytest.raises(ValueError, match=r"missing \['n', 'mean'"):
        DetectorProfile(pa.table({"key": ["a"], "metric": ["b"], "hour": [1]}))


def test_season_falls_back_to_an_hour_on_short_history() -> None:
    day = 86_400
    assert choose_season(2 * day, holdout_fraction=0.2, season_min=1440, horizon_min=5) == (
        1440,
        None,
    )
    season, note = choose_season(day, holdout_fraction=0.2, season_min=1440, horizon_min=5)
    assert season == 60
    assert note is not None and "spans 24.0 h, too short for a season of 1440 min" in note
    with pytest.raises(ValueError, match=r"training needs at least 1\.6 h"):
        choose_season(3600, holdout_fraction=0.2, season_min=1440, horizon_min=5)

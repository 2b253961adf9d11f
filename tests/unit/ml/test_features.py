"""Forecaster features: causal, gap-aware lags, look-ahead label, split, normalisation."""

from __future__ import annotations

import math

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pulsecast.ml.features import (
    ANY_KEY,
    FeatureSpec,
    build_features,
    fit_normaliser,
    gold_series,
    normalise,
    split_point,
    time_split,
)
from tests.unit.stream.conftest import spark as spark  # the one local SparkSession

T0 = 1_800_000_000 - 1_800_000_000 % 86_400  # a midnight, epoch seconds
SERIES = "key string, metric string, ts long, count long, mean double, stddev double"
SPEC = FeatureSpec(
    horizon_min=3,
    lags_min=(1, 2, 10),
    rolling_min=(5,),
    season_min=30,
    metrics=("temperature_c", "cpu_util"),
)
RAW = [
    "value",
    "w_std",
    "lag_1m",
    "lag_2m",
    "lag_10m",
    "roll_mean_5m",
    "roll_std_5m",
    "season_lag",
    "seasonal",
]


def value(key: int, minute: int) -> float:
    return 50.0 + 10 * key + 5 * math.sin(minute / 20) + (minute % 7) * 0.3


def series_rows(minutes: int = 120, *, skip: frozenset[int] = frozenset()) -> list[tuple]:
    rows = []
    for k in range(2):
        for metric in ("temperature_c", "cpu_util"):
            for m in range(minutes):
                if m in skip:
                    continue
                rows.append((f"m-{k}", metric, T0 + 60 * m, 6, value(k, m), 0.5))
    return rows


def frame(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, SERIES)


def by_row(df: DataFrame, columns: list[str]) -> dict[tuple, tuple]:
    return {
        (r["key"], r["metric"], r["ts"]): tuple(r[c] for c in columns)
        for r in df.select("key", "metric", "ts", *columns).collect()
    }


def test_features_future_change_never_changes_earlier_rows(spark: SparkSession) -> None:
    changed_at = T0 + 60 * 70
    base = series_rows()
    altered = [
        (k, m, ts, n, mean + 1000.0 if ts >= changed_at else mean, sd)
        for k, m, ts, n, mean, sd in base
    ]
    before = by_row(build_features(frame(spark, base), SPEC), RAW)
    after = by_row(build_features(frame(spark, altered), SPEC), RAW)
    assert before.keys() == after.keys()
    earlier = [k for k in before if k[2] < changed_at]
    later = [k for k in before if k[2] >= changed_at]
    assert earlier and later
    assert all(before[k] == after[k] for k in earlier)
    assert any(before[k] != after[k] for k in later)


def test_features_normalised_rows_are_causal_given_fixed_statistics(spark: SparkSession) -> None:
    changed_at = T0 + 60 * 70
    base = series_rows()
    altered = [
        (k, m, ts, n, mean * 3 if ts >= changed_at else mean, sd) for k, m, ts, n, mean, sd in base
    ]
    base_rows = build_features(frame(spark, base), SPEC)
    stats = fit_normaliser(base_rows, until_s=T0 + 60 * 60)
    columns = SPEC.feature_columns
    before = {
        (r["key"], r["metric"], r["as_of_s"]): tuple(r[c] for c in columns)
        for r in normalise(base_rows, stats, SPEC).collect()
    }
    after = {
        (r["key"], r["metric"], r["as_of_s"]): tuple(r[c] for c in columns)
        for r in normalise(build_features(frame(spark, altered), SPEC), stats, SPEC).collect()
    }
    assert all(before[k] == after[k] for k in before if k[2] - 60 < changed_at)


def test_features_lags_follow_time_not_rows(spark: SparkSession) -> None:
    rows = build_features(frame(spark, series_rows(skip=frozenset({40}))), SPEC)
    got = by_row(rows.where("key = 'm-0' AND metric = 'cpu_util'"), ["lag_1m", "lag_2m", "value"])
    at = {ts: v for (_, _, ts), v in got.items()}
    assert at[T0 + 60 * 41][0] is None  # the window a minute earlier is missing
    assert at[T0 + 60 * 41][1] == pytest.approx(value(0, 39))
    assert at[T0 + 60 * 42][1] is None
    assert at[T0 + 60 * 42][0] == pytest.approx(value(0, 41))


def test_features_target_is_the_event_mean_of_the_next_windows(spark: SparkSession) -> None:
    rows = series_rows()
    # Minute 51 holds 3 events instead of 6: the mean of the next minutes weighs it less.
    rows = [(k, m, ts, 3 if ts == T0 + 60 * 51 else n, mean, sd) for k, m, ts, n, mean, sd in rows]
    got = by_row(
        build_features(frame(spark, rows), SPEC),
        ["as_of_s", "target", "target_windows", "seasonal", "season_lag", "roll_mean_5m"],
    )[("m-1", "temperature_c", T0 + 60 * 50)]
    as_of, target, windows, seasonal, season_lag, roll = got
    assert as_of == T0 + 60 * 51
    v = [value(1, m) for m in range(0, 60)]
    assert target == pytest.approx((3 * v[51] + 6 * v[52] + 6 * v[53]) / 15)
    assert windows == 3
    assert seasonal == pytest.approx((v[21] + v[22] + v[23]) / 3)
    assert season_lag == pytest.approx(v[20])
    assert roll == pytest.approx(sum(v[46:51]) / 5)


def test_features_no_target_past_the_end_and_no_season_at_the_start(spark: SparkSession) -> None:
    got = by_row(build_features(frame(spark, series_rows(60)), SPEC), ["target", "seasonal"])
    assert got[("m-0", "cpu_util", T0 + 60 * 59)][0] is None
    assert got[("m-0", "cpu_util", T0 + 60 * 56)][0] is not None
    assert got[("m-0", "cpu_util", T0 + 60 * 20)][1] is None
    assert got[("m-0", "cpu_util", T0 + 60 * 40)][1] is not None


def test_split_point_takes_the_latest_fraction() -> None:
    assert split_point(0, 6000, holdout_fraction=0.2) == 4800
    assert split_point(T0, T0 + 100 * 60 + 30, holdout_fraction=0.25) == T0 + 75 * 60
    with pytest.raises(ValueError, match=r"holdout_fraction must be in \(0, 1\), got 1"):
        split_point(0, 10, holdout_fraction=1)


def test_time_split_keeps_labels_out_of_the_holdout(spark: SparkSession) -> None:
    rows = build_features(frame(spark, series_rows()), SPEC)
    split = T0 + 60 * 90
    train, holdout = time_split(rows, split, horizon_min=SPEC.horizon_min)
    train_as_of = [r[0] for r in train.select("as_of_s").collect()]
    holdout_as_of = [r[0] for r in holdout.select("as_of_s").collect()]
    assert max(train_as_of) + 60 * SPEC.horizon_min == split
    assert min(holdout_as_of) == split
    # The rows between are in neither: their labels straddle the split.
    assert rows.count() == len(train_as_of) + len(holdout_as_of) + 4 * (SPEC.horizon_min - 1)


def test_normaliser_sees_the_training_range_only(spark: SparkSession) -> None:
    until = T0 + 60 * 60
    base = build_features(frame(spark, series_rows()), SPEC)
    late = [
        (k, m, ts, n, mean + 500 if ts >= until else mean, sd)
        for k, m, ts, n, mean, sd in series_rows()
    ]
    altered = build_features(frame(spark, late), SPEC)
    a = {(r.key, r.metric): (r.mu, r.sd) for r in fit_normaliser(base, until_s=until).collect()}
    b = {(r.key, r.metric): (r.mu, r.sd) for r in fit_normaliser(altered, until_s=until).collect()}
    assert a == b
    assert (ANY_KEY, "cpu_util") in a
    values = [value(0, m) for m in range(60)]
    mu = sum(values) / 60
    assert a[("m-0", "cpu_util")][0] == pytest.approx(mu)


def test_normalise_maps_label_and_features_to_the_entity_scale(spark: SparkSession) -> None:
    rows = build_features(frame(spark, series_rows()), SPEC)
    stats = spark.createDataFrame(
        [("m-0", "cpu_util", 50.0, 2.0), (ANY_KEY, "cpu_util", 0.0, 4.0)],
        "key string, metric string, mu double, sd double",
    )
    out = normalise(rows.where("metric = 'cpu_util'"), stats, SPEC)
    r0 = out.where(F.col("key") == "m-0").orderBy("as_of_s").collect()[30]
    assert r0.sd == 2.0
    assert r0.label == pytest.approx((r0.target - r0.value) / 2.0)
    assert r0.level_z == pytest.approx((r0.value - 50.0) / 2.0)
    r1 = out.where(F.col("key") == "m-1").first()
    assert r1 is not None and r1.sd == 4.0  # unseen entity: the metric's fallback scale
    assert r0.metric_idx == 1.0
    assert out.columns[-1] == "label"


def test_feature_spec_round_trips_and_validates() -> None:
    assert FeatureSpec.from_dict(SPEC.as_dict()) == SPEC
    with pytest.raises(ValueError, match="need 1 <= horizon_min < season_min"):
        FeatureSpec(horizon_min=5, lags_min=(1,), rolling_min=(5,), season_min=5, metrics=())


def test_gold_series_keeps_final_windows(spark: SparkSession) -> None:
    gold = spark.createDataFrame(
        [
            ("m-0", "cpu_util", "2026-05-01 00:00:00", 6, 1.0, 0.1, True),
            ("m-0", "cpu_util", "2026-05-01 00:01:00", 6, 2.0, 0.1, False),
        ],
        "key string, metric string, window_start string, count long, mean double, "
        "stddev double, is_final boolean",
    ).withColumn("window_start", F.to_timestamp("window_start"))
    rows = gold_series(gold).collect()
    assert [(r.ts, r.mean) for r in rows] == [(1_777_593_600, 1.0)]


def test_the_minute_of_day_is_a_feature_only_when_asked() -> None:
    with_clock = SPEC.feature_columns
    without = FeatureSpec(**{**SPEC.as_dict(), "time_of_day": False}).feature_columns
    assert {"mod_sin", "mod_cos"} <= set(with_clock)
    assert set(with_clock) - set(without) == {"mod_sin", "mod_cos"}
    # A spec stored before the switch existed had the clock: it still has.
    older = {k: v for k, v in SPEC.as_dict().items() if k != "time_of_day"}
    assert FeatureSpec.from_dict(older).feature_columns == with_clock

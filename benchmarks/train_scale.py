"""Training at scale: feature building and GBT training time on N rows of gold-like history.

Generates `--rows` rows (default 10 million) of one-minute gold windows in
Spark (no servers, no lake: `spark.range`), `--days` of history per series,
with as many entities (4 metrics each) as that takes. Each series has its own
level, a daily cycle, noise and a few level shifts, like the simulator's.
Then it times, as `pulsecast train` runs them:

  features    build_features + persist + count (window functions)
  split       split point, training/holdout rows, normalisation statistics
  fit         GBTRegressor (ml.gbt_* defaults unless overridden)
  score       holdout forecasts, model vs last value vs seasonal naive

and prints one JSON object (times, rows, MAE and sMAPE of the model and both
baselines), also appended to benchmarks/results/train_scale.jsonl unless
`--no-save`.

    .venv/bin/python benchmarks/train_scale.py [--rows 10000000] [--days 7] [--trees 20]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import functions as F

from pulsecast.ml.features import (
    FeatureSpec,
    build_features,
    fit_normaliser,
    split_point,
    time_split,
)
from pulsecast.ml.forecast import Forecaster, baseline_scores, gbt_params
from pulsecast.stream.session import spark_session
from pulsecast.testing import settings_for

METRICS = ("temperature_c", "cpu_util", "vibration_mm_s", "power_kw")
T0 = 1_780_000_000 - 1_780_000_000 % 86_400
RESULTS = Path(__file__).resolve().parent / "results" / "train_scale.jsonl"


def gold_like(spark: Any, rows: int, minutes: int) -> Any:
    """Series rows (key, metric, ts, count, mean, stddev) as gold_series gives them."""
    series = F.floor(F.col("id") / minutes)
    minute = F.col("id") % minutes
    entity = F.floor(series / len(METRICS))
    phase = (F.hash(entity) % 1000) / 1000.0 * 2 * math.pi
    level = 50 + (F.hash(series) % 400) / 10.0
    amplitude = 3 + (F.hash(series, F.lit(1)) % 100) / 10.0
    day = 2 * math.pi * minute / 1440.0
    # A level shift of 3 amplitudes for 30 minutes in every 1000.
    shift = F.when((minute % 1000) < 30, 3 * amplitude).otherwise(0.0)
    noise = F.randn(seed=7) * amplitude * 0.05
    return spark.range(rows).select(
        F.concat(F.lit("m-"), entity.cast("string")).alias("key"),
        F.element_at(F.array(*[F.lit(m) for m in METRICS]), (series % 4 + 1).cast("int")).alias(
            "metric"
        ),
        (F.lit(T0) + minute * 60).cast("long").alias("ts"),
        F.lit(6).cast("long").alias("count"),
        (level + amplitude * F.sin(day + phase) + shift + noise).alias("mean"),
        (amplitude * 0.12).alias("stddev"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--trees", type=int, default=None, help="default ml.gbt_max_iter")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pulsecast-train-scale-") as tmp:
        settings = settings_for(
            Path(tmp) / "state",
            spark={
                "driver_memory": "8g",
                "shuffle_partitions": 4,
                "conf": {"spark.ui.showConsoleProgress": "false"},
            },
        )
        ml = settings.ml
        params = gbt_params(ml)
        if args.trees:
            params["max_iter"] = args.trees
        minutes = int(args.days * 1440)
        marks: dict[str, float] = {}
        started = time.monotonic()
        spark = spark_session(settings, app_name="pulsecast-bench-train")
        marks["spark_s"] = time.monotonic() - started

        t = time.monotonic()
        series = gold_like(spark, args.rows, minutes)
        spec = FeatureSpec.from_settings(ml, METRICS, day_of_week=args.days >= 14)
        features = build_features(series, spec).persist()
        feature_rows = features.count()
        marks["features_s"] = time.monotonic() - t

        t = time.monotonic()
        split_s = split_point(
            T0 + 60, T0 + minutes * 60, holdout_fraction=ml.holdout_fraction, step_s=60
        )
        train, holdout = time_split(features, split_s, horizon_min=spec.horizon_min)
        train = train.where(F.col("target").isNotNull()).persist()
        train_rows = train.count()
        stats = fit_normaliser(features, until_s=split_s).persist()
        stats.count()
        marks["split_s"] = time.monotonic() - t

        t = time.monotonic()
        model = Forecaster.fit(train, stats, spec, params)
        marks["fit_s"] = time.monotonic() - t

        t = time.monotonic()
        scores = baseline_scores(model.predict(holdout.where(F.col("target").isNotNull())))[0]
        marks["score_s"] = time.monotonic() - t

        result = {
            "benchmark": "train_scale",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "rows": args.rows,
            "days": args.days,
            "entities": math.ceil(args.rows / minutes / len(METRICS)),
            "feature_rows": feature_rows,
            "train_rows": train_rows,
            "holdout_rows": scores["rows"],
            "gbt": params,
            **{k: round(v, 1) for k, v in marks.items()},
            "total_s": round(time.monotonic() - started, 1),
            **{
                k: round(float(v), 5)  # type: ignore[arg-type]
                for k, v in scores.items()
                if k.endswith(("_mae", "_smape"))
            },
        }
        print(json.dumps(result))
        if not args.no_save:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            with RESULTS.open("a") as out:
                out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

"""How stable is the forecaster's training? The demo's history, trained with several seeds.

Backfills the history `pulsecast demo` trains on (`--days` of simulated
telemetry, `--entities` machines, the simulator's seed, ending at a fixed
time) into a lake of its own, then runs `pulsecast train`'s forecaster
training on it once per GBT seed (`ml.gbt_seed`), without promoting. For each
seed it prints the holdout MAE of the model, the last value and the seasonal
naive forecast, and whether the model beats both baselines (the promotion
gate); then the spread of the model's MAE over the seeds. One JSON object,
also appended to benchmarks/results/forecaster_stability.jsonl unless
`--no-save`. No servers: Spark, a local lake and a SQLite registry.

    .venv/bin/python benchmarks/forecaster_stability.py [--days 1] [--entities 10] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pulsecast.ml.train import train
from pulsecast.stream.backfill import backfill_simulated
from pulsecast.stream.session import spark_session
from pulsecast.testing import settings_for

RESULTS = Path(__file__).resolve().parent / "results" / "forecaster_stability.jsonl"
STREAM = "telemetry"
END = datetime(2026, 11, 28, 21, 50, tzinfo=UTC)  # the README demo's history ended there


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=1.0, help="history, days (demo: 1)")
    parser.add_argument("--entities", type=int, default=10, help="machines (demo: 10)")
    parser.add_argument("--seeds", type=int, default=5, help="trainings, seeds 1..N")
    parser.add_argument("--no-save", action="store_true", help="do not append to results/")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pulsecast-stability-") as tmp:
        root = Path(tmp)
        settings = settings_for(
            root / "state",
            lake={"uri": (root / "lake").as_uri()},
            ml={
                "registry_uri": f"sqlite:///{root / 'registry.db'}",
                "artifact_uri": (root / "artifacts").as_uri(),
            },
            spark={"driver_memory": "2g", "shuffle_partitions": 2},
        )
        spark = spark_session(settings, app_name="pulsecast-forecaster-stability")
        started = time.monotonic()
        history = backfill_simulated(
            spark, settings, STREAM, days=args.days, entities=args.entities, end=END
        )
        runs: list[dict[str, Any]] = []
        for seed in range(1, args.seeds + 1):
            seeded = settings.model_copy(
                update={"ml": settings.ml.model_copy(update={"gbt_seed": seed})}
            )
            report = train(spark, seeded, STREAM, kinds=["forecaster"], promote=False)
            model = report.models[0]
            m = model.metrics
            runs.append(
                {
                    "seed": seed,
                    "model_mae": round(m["holdout_mae"], 4),
                    "last_value_mae": round(m["last_value_mae"], 4),
                    "seasonal_mae": round(m["seasonal_mae"], 4),
                    "beats_baselines": model.beats_baselines,
                    "seconds": round(model.seconds, 1),
                }
            )
            print(json.dumps(runs[-1]), flush=True)
        maes = [r["model_mae"] for r in runs]
        result = {
            "benchmark": "forecaster_stability",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "days": args.days,
            "entities": args.entities,
            "history_events": history.events,
            "features": model.params.get("features"),
            "runs": runs,
            "model_mae_min": min(maes),
            "model_mae_median": statistics.median(maes),
            "model_mae_max": max(maes),
            "all_beat_baselines": all(r["beats_baselines"] for r in runs),
            "seconds": round(time.monotonic() - started, 1),
            "load_avg": os.getloadavg(),
        }
    print(json.dumps(result))
    if not args.no_save:
        with RESULTS.open("a") as fh:
            fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

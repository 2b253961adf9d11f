"""How much pulsecast's NAB score depends on each detector parameter.

Varies one parameter of `pulsecast.ml.detector.DetectorParams` at a time around the defaults
and scores every variant on the NAB corpus (three profiles), then scores the defaults on each
category alone (a category's windows only, normalised on its own). A score that falls off a
cliff next to the defaults would mean they were fitted to this corpus; a flat neighbourhood
is what should carry over to the NAB series that are not in ../shared/data/nab.

    .venv/bin/python benchmarks/nab_sensitivity.py [--data DIR] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from pulsecast.ml.detector import DetectorParams, score_series
from pulsecast.ml.evaluation import NabSeries, load_nab_corpus, nab_score

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"

VARIANTS: dict[str, list[float]] = {
    "slot_s": [3_600, 7_200, 14_400, 21_600, 43_200],
    "slot_weight": [0.0, 0.3, 0.5, 0.7, 1.0],
    "min_slot_obs": [24, 48, 96],
    "rest_points": [0, 10, 20, 50, 100],
    "range_decay": [0.0, 1e-4, 3e-4, 1e-3],
    "warmup_points": [20, 50, 100],
    "flag_novelty": [0.05, 0.1, 0.2, 0.3],
}


def _scores(corpus: list[NabSeries], params: DetectorParams) -> dict[str, np.ndarray]:
    return {
        s.name: score_series(
            s.timestamps.astype("datetime64[s]").astype(np.int64), s.values, params
        )
        for s in corpus
    }


def _row(corpus: list[NabSeries], scores: dict[str, np.ndarray]) -> dict[str, float]:
    results = nab_score(corpus, {s.name: scores[s.name] for s in corpus})
    return {profile: round(r.score, 2) for profile, r in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="NAB corpus: data/ and labels/")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    corpus = load_nab_corpus(args.data)
    defaults = DetectorParams()
    rows: list[dict[str, object]] = []
    for name, values in VARIANTS.items():
        for value in values:
            kind = type(getattr(defaults, name))
            params = dataclasses.replace(defaults, **{name: kind(value)})
            scores = _scores(corpus, params)
            is_default = params == defaults
            rows.append(
                {"vary": name, "value": value, "default": is_default, **_row(corpus, scores)}
            )
    scores = _scores(corpus, defaults)
    for category in sorted({s.name.split("/")[0] for s in corpus}):
        subset = [s for s in corpus if s.name.startswith(category + "/")]
        if any(s.windows for s in subset):
            rows.append({"category": category, "files": len(subset), **_row(subset, scores)})
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            label = (
                f"{row['vary']}={row['value']}{' (default)' if row['default'] else ''}"
                if "vary" in row
                else f"category {row['category']} ({row['files']} files)"
            )
            print(
                f"{label:<40} standard {row['standard']:>6}  low-FP "
                f"{row['reward_low_FP_rate']:>6}  low-FN {row['reward_low_FN_rate']:>6}"
            )


if __name__ == "__main__":
    main()

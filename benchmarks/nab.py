"""NAB: score an anomaly detector on the Numenta Anomaly Benchmark corpus.

Scores either a detector's results in NAB's layout or one of the reference detectors built
in here, with `pulsecast.ml.evaluation` (NAB v1.1's scoring rules: one threshold per cost
profile chosen over the whole corpus, then normalised so that never firing scores 0 and a
perfect detector 100), and prints each profile's score, threshold and TP/FP/FN counts
(windows detected, detections outside windows, windows missed). No servers, no Spark.

    .venv/bin/python benchmarks/nab.py --detector windowed-gaussian [--json] [--per-file]
    .venv/bin/python benchmarks/nab.py --results DIR [--data ../shared/data/nab] [--json]

A results folder holds one CSV per data file, `<category>/<detector>_<file>.csv` (as NAB's
`results/<detector>/` does) or `<category>/<file>.csv`, with columns
`timestamp,value,anomaly_score[,label,...]` and one row per row of the data file.
`--out DIR` writes a built-in detector's scores in that layout.

The reference detectors (a detector is a function NabSeries -> one score per row; add one
to DETECTORS):

    null               0.5 everywhere, as NAB's null detector: never worth firing, scores 0
    perfect            1 on the first scored row of every window, else 0: scores 100
    random             uniform in [0, 1) from Python's `random` seeded 42 for each file, as
                       NAB's random detector
    windowed-gaussian  NAB's windowedGaussian: 1 - the Gaussian tail probability of each
                       value under the mean and standard deviation of the past values held
                       in a window (the last 6400, refreshed every 100 rows once full)
    windowed-gaussian-published
                       the same as NAB's published windowedGaussian results were made: only
                       values above the mean count, scores rounded to 12 digits; reproduces
                       NAB's per-file scores exactly
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pulsecast.ml.detector import score_series
from pulsecast.ml.evaluation import (
    PROFILES,
    NabSeries,
    load_nab_corpus,
    nab_score,
    probation_rows,
    read_nab_results,
    score_files,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"

Detector = Callable[[NabSeries], np.ndarray]


def null_detector(series: NabSeries) -> np.ndarray:
    """A constant: no threshold separates anything, so never firing is best."""
    return np.full(series.timestamps.size, 0.5)


def perfect_detector(series: NabSeries) -> np.ndarray:
    """Fires on the first scored row of every window (the normalisation's 100)."""
    scores = np.zeros(series.timestamps.size)
    first = probation_rows(series.timestamps.size)
    for start, end in series.windows:
        rows = np.flatnonzero((series.timestamps >= start) & (series.timestamps <= end))
        rows = rows[rows >= first]
        if rows.size:
            scores[rows[0]] = 1.0
    return scores


def random_detector(series: NabSeries, seed: int = 42) -> np.ndarray:
    """Uniform scores, reseeded for each file as NAB's random detector does."""
    rng = random.Random(seed)
    return np.array([rng.random() for _ in range(series.timestamps.size)])


WG_WINDOW = 6400  # values held once the window is full (NAB's windowSize)
WG_STEP = 100  # values buffered before the full window slides (NAB's stepSize)
WG_MIN_STD = 1e-6  # standard deviation used when the window's values are all equal
_erfc = np.frompyfunc(math.erfc, 1, 1)


def _window_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the window each row is compared with.

    The window holds the values before the row: all of them up to WG_WINDOW, then the last
    WG_WINDOW as of the last multiple of WG_STEP rows past WG_WINDOW.
    """
    n = x.size
    mean = np.zeros(n)
    std = np.ones(n)
    # Rows 1 .. WG_WINDOW - 1 see every value before them. Running sums of the values
    # less the first one keep the variance free of cancellation for large offsets.
    fill = min(n, WG_WINDOW)
    if fill > 1:
        shifted = x[: fill - 1] - x[0]
        count = np.arange(1, fill)
        running = np.cumsum(shifted) / count
        mean[1:fill] = running + x[0]
        variance = np.cumsum(shifted * shifted) / count - running * running
        std[1:fill] = np.sqrt(np.maximum(variance, 0.0))
    # From row WG_WINDOW on, the window is x[k*STEP : WINDOW + k*STEP] for STEP rows.
    for start in range(0, n - WG_WINDOW, WG_STEP):
        held = x[start : start + WG_WINDOW]
        rows = slice(WG_WINDOW + start, WG_WINDOW + start + WG_STEP)
        mean[rows] = held.mean()
        std[rows] = held.std()
    std[std == 0.0] = WG_MIN_STD
    return mean, std


def _upper_tail(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Q(z) of each value mirrored above the mean, as NAB computes it."""
    upper = np.where(x < mean, 2.0 * mean - x, x)
    z = (upper - mean) / std
    tail: np.ndarray = 0.5 * _erfc(z / math.sqrt(2.0)).astype(np.float64)
    return tail


def windowed_gaussian_detector(series: NabSeries) -> np.ndarray:
    """NAB's windowedGaussian detector (its current code), vectorised.

    The score of a row is ``1 - Q(z)``, Q the Gaussian tail probability and ``z`` the
    distance of its value from the window's mean in standard deviations, on either side of
    the mean. The first row scores 0.
    """
    x = series.values
    mean, std = _window_stats(x)
    scores: np.ndarray = 1.0 - _upper_tail(x, mean, std)
    scores[:1] = 0.0
    return scores


def windowed_gaussian_published_detector(series: NabSeries) -> np.ndarray:
    """windowedGaussian as NAB's published results were computed.

    NAB's results files come from the detector before its tail probability was fixed (NAB
    pull request #269): a value below the mean scored ``Q(z)`` instead of ``1 - Q(z)``, so
    only values above the mean could look anomalous. They were written by Python 2, with 12
    significant digits, which turns every score above 1 - 5e-13 into 1.0.
    """
    x = series.values
    mean, std = _window_stats(x)
    tail = _upper_tail(x, mean, std)
    scores = np.where(x < mean, tail, 1.0 - tail)
    scores[:1] = 0.0
    return np.array([float(f"{v:.12g}") for v in scores.tolist()])


def pulsecast_detector(series: NabSeries) -> np.ndarray:
    """pulsecast's online detector with its default parameters (`pulsecast detect`)."""
    seconds = series.timestamps.astype("datetime64[s]").astype(np.int64)
    return score_series(seconds, series.values)


DETECTORS: dict[str, Detector] = {
    "pulsecast": pulsecast_detector,
    "null": null_detector,
    "perfect": perfect_detector,
    "random": random_detector,
    "windowed-gaussian": windowed_gaussian_detector,
    "windowed-gaussian-published": windowed_gaussian_published_detector,
}


def find_results(folder: Path, series: NabSeries) -> Path:
    """The results file of one series: `<category>/<file>.csv` or `<category>/*_<file>.csv`."""
    category, _, file_name = series.name.rpartition("/")
    directory = folder / category
    for candidate in (directory / file_name, directory / f"{folder.name}_{file_name}"):
        if candidate.is_file():
            return candidate
    matches = sorted(directory.glob(f"*_{file_name}"))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        msg = (
            f"no results for {series.name} in {folder} "
            f"(looked for {category}/{file_name} and {category}/*_{file_name})"
        )
    else:
        names = ", ".join(p.name for p in matches)
        msg = f"several results for {series.name} in {directory}: {names}"
    raise ValueError(msg)


def read_results(folder: Path, corpus: list[NabSeries]) -> dict[str, np.ndarray]:
    """Every series' anomaly scores from a results folder, checked against the data."""
    scores = {}
    for series in corpus:
        path = find_results(folder, series)
        timestamps, anomaly_scores = read_nab_results(path)
        if timestamps.size != series.timestamps.size:
            msg = f"{path}: {timestamps.size} rows, the data file has {series.timestamps.size}"
            raise ValueError(msg)
        if not np.array_equal(timestamps, series.timestamps):
            row = int(np.argmax(timestamps != series.timestamps))
            msg = (
                f"{path}:{row + 2}: timestamp {timestamps[row]} differs from the data file's "
                f"{series.timestamps[row]}"
            )
            raise ValueError(msg)
        scores[series.name] = anomaly_scores
    return scores


def write_results(
    folder: Path, detector: str, corpus: list[NabSeries], scores: dict[str, np.ndarray]
) -> None:
    """Write scores in NAB's results layout: `<category>/<detector>_<file>.csv`."""
    for series in corpus:
        category, _, file_name = series.name.rpartition("/")
        path = folder / category / f"{detector}_{file_name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        stamps = np.datetime_as_string(series.timestamps, unit="s")
        lines = ["timestamp,value,anomaly_score,label"]
        lines += [
            f"{stamp.replace('T', ' ')},{value!r},{score!r},{label}"
            for stamp, value, score, label in zip(
                stamps,
                series.values.tolist(),
                scores[series.name].tolist(),
                series.labels().tolist(),
                strict=True,
            )
        ]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", type=Path, help="a detector's results in NAB's layout")
    source.add_argument("--detector", choices=sorted(DETECTORS), help="a built-in detector")
    parser.add_argument("--data", type=Path, default=DATA, help="NAB corpus: data/ and labels/")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--per-file", action="store_true", help="each file's raw scores too")
    parser.add_argument("--out", type=Path, help="write the built-in detector's results here")
    args = parser.parse_args()
    if args.out and not args.detector:
        parser.error("--out needs --detector")

    try:
        corpus = load_nab_corpus(args.data)
        started = time.perf_counter()
        if args.detector:
            name = args.detector
            scores = {s.name: DETECTORS[name](s) for s in corpus}
        else:
            name = str(args.results)
            scores = read_results(args.results, corpus)
        detect_s = time.perf_counter() - started
        started = time.perf_counter()
        results = nab_score(corpus, scores)
        sweep_s = time.perf_counter() - started
        # Again: what each further call costs in a tuning loop (layouts are cached).
        started = time.perf_counter()
        nab_score(corpus, scores)
        warm_s = time.perf_counter() - started
        if args.out:
            write_results(args.out, name, corpus, scores)
    except (OSError, ValueError) as exc:
        print(f"nab: {exc}", file=sys.stderr)
        raise SystemExit(1) from None

    files = []
    if args.per_file:
        thresholds = {profile: r.threshold for profile, r in results.items()}
        files = score_files(corpus, scores, thresholds)
    windows = sum(len(s.windows) for s in corpus)
    rows = sum(s.timestamps.size for s in corpus)
    if args.json:
        record = {
            "benchmark": "nab",
            "detector": name,
            "data": str(args.data),
            "files": len(corpus),
            "rows": rows,
            "windows": windows,
            "detect_s": round(detect_s, 3),
            "sweep_s": round(sweep_s, 4),
            "sweep_warm_s": round(warm_s, 4),
            "profiles": {
                profile: {
                    "score": r.score,
                    "threshold": r.threshold,
                    "raw": r.raw,
                    "tp": r.tp,
                    "fp": r.fp,
                    "fn": r.fn,
                }
                for profile, r in results.items()
            },
        }
        if args.per_file:
            record["per_file"] = [
                {
                    "file": f.name,
                    "profile": f.profile,
                    "raw": f.raw,
                    "tp": f.tp,
                    "fp": f.fp,
                    "fn": f.fn,
                }
                for f in files
            ]
        print(json.dumps(record))
        return

    print(
        f"NAB, {name}: {len(corpus)} files, {rows:,} rows, {windows} windows "
        f"(scores {detect_s:.2f} s, sweep {sweep_s * 1000:.0f} ms, again {warm_s * 1000:.0f} ms)"
    )
    print(
        f"{'profile':<20} {'score':>7} {'threshold':>12} {'TP':>4} {'FP':>5} {'FN':>4} {'raw':>9}"
    )
    for profile in PROFILES:
        r = results[profile]
        print(
            f"{profile:<20} {r.score:>7.2f} {r.threshold:>12.6g} {r.tp:>4} {r.fp:>5} "
            f"{r.fn:>4} {r.raw:>9.3f}"
        )
    if args.per_file:
        print(f"\n{'file':<58} {'profile':<20} {'raw':>8} {'TP':>3} {'FP':>4} {'FN':>3}")
        for f in files:
            print(f"{f.name:<58} {f.profile:<20} {f.raw:>8.3f} {f.tp:>3} {f.fp:>4} {f.fn:>3}")


if __name__ == "__main__":
    main()

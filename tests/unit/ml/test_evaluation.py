"""NAB scoring on hand-worked examples.

Notation: sigma(y) = 2 / (1 + e^(5y)) - 1 = tanh(-5y / 2), so sigma(-1) = tanh(2.5) = 0.98661...
A detection on row i of a window [l, r] of width w = r - l + 1 earns
A_TP * sigma(-(r - i + 1) / w) / sigma(-1); a detection after a window costs
A_FP * sigma((i - r) / (w - 1)); a detection with no window before it costs A_FP.

Most examples use a 20-row series (probation floor(0.15 * 20) = 3 rows: 0, 1, 2) with one
window on rows 10..14 (w = 5).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pulsecast.ml.evaluation import (
    PROFILES,
    CostProfile,
    NabSeries,
    load_nab_corpus,
    load_windows,
    nab_score,
    probation_rows,
    read_nab_csv,
    score_files,
)

START = np.datetime64("2026-01-01T00:00:00", "s")
MINUTE = np.timedelta64(60, "s")

# tanh(1.5) / tanh(2.5): a detection on row 12, y = -(14 - 12 + 1) / 5 = -0.6
MIDDLE = 0.9174286804284078
# tanh(0.5) / tanh(2.5): a detection on row 14, y = -(14 - 14 + 1) / 5 = -0.2
LAST = 0.4683868439022782
# tanh(-1.25): a detection on row 16, y = (16 - 14) / (5 - 1) = 0.5
AFTER = -0.8482836399575129


def series(
    rows: int = 20, windows: tuple[tuple[int, int], ...] = ((10, 14),), name: str = "a/x.csv"
) -> NabSeries:
    stamps = START + MINUTE * np.arange(rows)
    return NabSeries(
        name,
        stamps,
        np.zeros(rows),
        tuple((stamps[left], stamps[right]) for left, right in windows),
    )


def detections(s: NabSeries, *rows: int) -> dict[str, np.ndarray]:
    scores = np.zeros(s.timestamps.size)
    scores[list(rows)] = 1.0
    return {s.name: scores}


def raw(s: NabSeries, *rows: int, profile: str = "standard") -> float:
    (result,) = score_files([s], detections(s, *rows), {profile: 1.0})
    return result.raw


def test_probation_rows_is_15_percent_capped_at_750() -> None:
    assert probation_rows(20) == 3  # floor(3.0)
    assert probation_rows(1127) == 169  # floor(169.05)
    assert probation_rows(4032) == 604  # floor(604.8)
    assert probation_rows(5000) == 750
    assert probation_rows(15902) == 750


def test_profiles_are_nab_cost_matrices() -> None:
    assert PROFILES == {
        "standard": CostProfile("standard", tp=1.0, fp=0.11, fn=1.0),
        "reward_low_FP_rate": CostProfile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
        "reward_low_FN_rate": CostProfile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
    }


def test_detection_at_window_start_earns_full_reward() -> None:
    # y = -(14 - 10 + 1) / 5 = -1: sigma(-1) / sigma(-1) = 1
    assert raw(series(), 10) == pytest.approx(1.0, abs=1e-12)


def test_detection_in_window_middle() -> None:
    assert raw(series(), 12) == pytest.approx(MIDDLE, abs=1e-12)


def test_detection_at_window_end() -> None:
    # the last row still earns something: y = -1/5, not 0
    assert raw(series(), 14) == pytest.approx(LAST, abs=1e-12)


def test_only_earliest_detection_in_window_counts() -> None:
    (result,) = score_files([series()], detections(series(), 12, 13, 14), {"standard": 1.0})
    assert result.raw == pytest.approx(MIDDLE, abs=1e-12)
    assert (result.tp, result.fp, result.fn) == (1, 0, 0)


def test_detection_in_probation_is_ignored() -> None:
    # row 1 is probationary: no FP; the window is missed: -A_FN
    (result,) = score_files([series()], detections(series(), 1), {"standard": 1.0})
    assert result.raw == -1.0
    assert (result.tp, result.fp, result.fn) == (0, 0, 1)


def test_false_positive_before_any_window_costs_a_fp() -> None:
    # row 5: -A_FP * 1, plus the missed window -A_FN
    assert raw(series(), 5) == pytest.approx(-0.11 - 1.0, abs=1e-12)
    assert raw(series(windows=()), 5) == pytest.approx(-0.11, abs=1e-12)


def test_false_positive_after_window_is_sigmoid_weighted() -> None:
    # row 16: A_FP * sigma(0.5) = 0.11 * -0.84828... = -0.09331...; window missed: -1
    assert raw(series(), 16) == pytest.approx(-1.0 + 0.11 * AFTER, abs=1e-12)


def test_false_positive_beyond_three_window_lengths_costs_a_fp() -> None:
    # 40 rows, window 10..14: row 27 is at y = 13 / 4 = 3.25 > 3, so sigma = -1
    s = series(rows=40)
    assert raw(s, 10, 27) == pytest.approx(1.0 - 0.11, abs=1e-12)


def test_window_inside_probation_counts_for_nothing() -> None:
    # 100 rows: probation is rows 0..14; window 2..6 has no scored row, window 50..54 does
    s = series(rows=100, windows=((2, 6), (50, 54)))
    (result,) = score_files([s], detections(s, 3), {"standard": 1.0})
    assert (result.raw, result.tp, result.fp, result.fn) == (-1.0, 0, 0, 1)
    # a detection after the early window is weighed from it: y = (20 - 6) / 4 = 3.5 > 3
    assert raw(s, 20, 50) == pytest.approx(-0.11 + 1.0, abs=1e-12)


def test_profiles_weigh_costs_differently() -> None:
    s = series()
    assert raw(s, 5, profile="standard") == pytest.approx(-1.11, abs=1e-12)
    assert raw(s, 5, profile="reward_low_FP_rate") == pytest.approx(-1.22, abs=1e-12)
    assert raw(s, 5, profile="reward_low_FN_rate") == pytest.approx(-2.11, abs=1e-12)


def test_null_scores_0_and_perfect_scores_100() -> None:
    corpus = [
        series(rows=200, windows=((100, 104),), name="a/x.csv"),
        series(rows=300, windows=((60, 63), (150, 160)), name="b/y.csv"),
    ]
    # NAB's null detector: one constant score, so the sweep can only fire everywhere
    # (hundreds of FPs) or never; never wins and scores 0 by definition.
    constant = {s.name: np.full(s.timestamps.size, 0.5) for s in corpus}
    perfect = {
        "a/x.csv": detections(corpus[0], 100)["a/x.csv"],
        "b/y.csv": detections(corpus[1], 60, 150)["b/y.csv"],
    }
    for result in nab_score(corpus, constant).values():
        assert result.score == 0.0
        assert (result.threshold, result.tp, result.fp, result.fn) == (1.1, 0, 0, 3)
    for result in nab_score(corpus, perfect).values():
        assert result.score == pytest.approx(100.0, abs=1e-9)
        assert result.raw == pytest.approx(3.0, abs=1e-12)
        assert (result.threshold, result.tp, result.fp, result.fn) == (1.0, 3, 0, 0)


def test_sweep_picks_best_threshold() -> None:
    s = series()
    scores = np.full(20, 0.1)
    scores[12], scores[5], scores[16] = 0.9, 0.8, 0.7
    # thresholds: 1.1 -> -1; 0.9 -> MIDDLE = 0.91743; 0.8 -> MIDDLE - 0.11;
    # 0.7 -> MIDDLE - 0.11 + 0.11 * AFTER; 0.1 -> window from row 10 (+1) but 12 FPs
    result = nab_score([s], {s.name: scores})["standard"]
    assert result.threshold == 0.9
    assert result.raw == pytest.approx(MIDDLE, abs=1e-12)
    assert (result.tp, result.fp, result.fn) == (1, 0, 0)
    # null = -1, perfect = 1: 100 * (MIDDLE + 1) / 2
    assert result.score == pytest.approx(95.87143402142038, abs=1e-9)


def test_profiles_choose_their_own_threshold() -> None:
    # 100 rows (probation 15), window 50..54; 15 FPs before it (rows 20..34) score 0.9,
    # a detection on row 52 scores 0.5.
    s = series(rows=100, windows=((50, 54),))
    scores = np.zeros(100)
    scores[20:35] = 0.9
    scores[52] = 0.5
    results = nab_score([s], {s.name: scores})
    # standard: never = -1, 0.9 = -1.65 - 1, 0.5 = -1.65 + MIDDLE = -0.73257 (best)
    assert results["standard"].threshold == 0.5
    assert results["standard"].raw == pytest.approx(-1.65 + MIDDLE, abs=1e-12)
    assert results["standard"].score == pytest.approx(13.371434021420392, abs=1e-9)
    # low FP: 0.5 = -3.3 + MIDDLE = -2.38 < never = -1
    assert results["reward_low_FP_rate"].threshold == 1.1
    assert results["reward_low_FP_rate"].score == 0.0
    assert (results["reward_low_FP_rate"].tp, results["reward_low_FP_rate"].fn) == (0, 1)
    # low FN: never = -2, 0.5 = -0.73257; null -2, perfect 1: 100 * 1.26743 / 3
    assert results["reward_low_FN_rate"].threshold == 0.5
    assert results["reward_low_FN_rate"].score == pytest.approx(42.247622680946925, abs=1e-9)
    assert results["reward_low_FN_rate"].fp == 15


def test_sweep_matches_fixed_threshold_scoring() -> None:
    rng = np.random.default_rng(3)
    corpus = [
        series(rows=60, windows=((20, 25), (40, 41)), name="a/x.csv"),
        series(rows=35, windows=((9, 9), (30, 34)), name="b/y.csv"),
        series(rows=30, windows=(), name="c/z.csv"),
    ]
    scores = {s.name: np.round(rng.random(s.timestamps.size), 1) for s in corpus}
    results = nab_score(corpus, scores)
    for threshold in [*np.unique(np.concatenate(list(scores.values()))), 1.1]:
        files = score_files(corpus, scores, dict.fromkeys(PROFILES, float(threshold)))
        for name, result in results.items():
            total = sum(f.raw for f in files if f.profile == name)
            assert total <= result.raw + 1e-12
    thresholds = {name: r.threshold for name, r in results.items()}
    files = score_files(corpus, scores, thresholds)
    for name, result in results.items():
        mine = [f for f in files if f.profile == name]
        assert sum(f.raw for f in mine) == pytest.approx(result.raw, abs=1e-12)
        assert sum(f.fp for f in mine) == result.fp
        assert sum(f.tp for f in mine) == result.tp


def test_labels_mark_window_rows() -> None:
    assert series().labels().tolist() == [0] * 10 + [1] * 5 + [0] * 5


def test_scores_must_fit_the_series() -> None:
    s = series()
    with pytest.raises(ValueError, match=r"^a/x.csv: 19 anomaly scores for 20 rows$"):
        nab_score([s], {s.name: np.zeros(19)})
    with pytest.raises(ValueError, match=r"^no anomaly scores for a/x.csv$"):
        nab_score([s], {})
    with pytest.raises(ValueError, match="normalised NAB score is undefined"):
        nab_score([series(windows=())], {"a/x.csv": np.zeros(20)})


def test_windows_must_not_overlap() -> None:
    with pytest.raises(ValueError, match="in time order, not overlapping"):
        series(windows=((5, 10), (8, 12)))


def test_read_nab_csv(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("timestamp,value\n2015-02-26 21:42:53,104\n2015-02-26 21:47:53,1.5")
    stamps, values = read_nab_csv(path)
    assert stamps.dtype == np.dtype("datetime64[s]")
    assert stamps.tolist() == [
        np.datetime64("2015-02-26T21:42:53", "s").item(),
        np.datetime64("2015-02-26T21:47:53", "s").item(),
    ]
    assert values.tolist() == [104.0, 1.5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "{path}: empty file, expected a header with timestamp, value"),
        ("time,value\n", "{path}:1: header 'time,value' lacks column(s) timestamp"),
        (
            "timestamp,value\n2015-01-01 00:00:00,1\n2015-01-01 00:05:00\n",
            "{path}:3: expected 2 comma-separated fields, got '2015-01-01 00:05:00'",
        ),
        (
            "timestamp,value\n2015-01-01 00:00:00,1\n2015-13-01 00:05:00,2\n",
            "{path}:3: bad timestamp '2015-13-01 00:05:00', expected YYYY-MM-DD HH:MM:SS",
        ),
        (
            "timestamp,value\n2015-01-01 00:00:00,1\n2015-01-01 00:05:00,x\n",
            "{path}:3: bad value 'x', expected a number",
        ),
        ("timestamp,value\n2015-01-01 00:00:00,nan\n", "{path}:2: value 'nan' is not finite"),
        (
            "timestamp,value\n2015-01-01 00:05:00,1\n2015-01-01 00:00:00,2\n",
            "{path}:3: timestamp '2015-01-01 00:00:00' goes back in time",
        ),
    ],
)
def test_read_nab_csv_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError) as caught:
        read_nab_csv(path)
    assert str(caught.value) == message.format(path=path)


def test_load_corpus(tmp_path: Path) -> None:
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    rows = "\n".join(f"2015-01-01 00:{m:02d}:00,{m}" for m in range(20))
    (tmp_path / "data" / "a" / "x.csv").write_text(f"timestamp,value\n{rows}\n")
    windows = {"a/x.csv": [["2015-01-01 00:10:00.000000", "2015-01-01 00:14:00.000000"]]}
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    assert load_windows(tmp_path / "labels" / "combined_windows.json") == {
        "a/x.csv": (
            (np.datetime64("2015-01-01T00:10:00", "s"), np.datetime64("2015-01-01T00:14:00", "s")),
        )
    }
    (s,) = load_nab_corpus(tmp_path)
    assert s.name == "a/x.csv"
    assert s.values.tolist() == [float(m) for m in range(20)]
    assert s.labels().sum() == 5

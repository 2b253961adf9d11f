"""The online detector: causality, resumable state, what it flags, and its offline replay."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pulsecast.config import DetectorSettings
from pulsecast.ml.detector import DetectorParams, DetectorState, NoveltyDetector, score_series
from pulsecast.ml.errors import DetectInputError
from pulsecast.ml.offline import detect_files

STEP_S = 300
DAY_POINTS = 86_400 // STEP_S


def daily(days: int, *, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A noisy daily cycle, 5-minute steps, starting at midnight."""
    rng = np.random.default_rng(seed)
    times = np.arange(days * DAY_POINTS, dtype=np.float64) * STEP_S
    values = 50 + 20 * np.sin(2 * math.pi * times / 86_400) + rng.normal(0, 1, times.size)
    return times, values


def test_a_future_value_never_changes_a_past_score() -> None:
    times, values = daily(4)
    before = score_series(times, values)
    rng = np.random.default_rng(7)
    for cut in rng.integers(100, times.size - 1, size=10):
        changed = values.copy()
        changed[cut:] = rng.normal(0, 1e6, times.size - cut)  # wild futures
        after = score_series(times, changed)
        assert np.array_equal(before[:cut], after[:cut])


def test_a_resumed_state_scores_exactly_like_an_unbroken_run() -> None:
    times, values = daily(3)
    values[700] += 500
    whole = score_series(times, values)
    first = NoveltyDetector()
    head = first.score_many(times[:400].tolist(), values[:400].tolist())
    saved = first.state.to_bytes()
    second = NoveltyDetector(state=DetectorState.from_bytes(saved))
    tail = second.score_many(times[400:].tolist(), values[400:].tolist())
    assert np.array_equal(whole, np.array(head + tail))


def test_a_spike_beyond_the_range_is_flagged_once_then_the_detector_rests() -> None:
    times, values = daily(3)
    values[600:605] = 500  # a five-point incident, far above anything seen
    scores = score_series(times, values, DetectorParams(rest_points=20))
    assert scores[600] >= 0.5
    assert np.all(scores[601:621] == 0)  # resting: one alert per incident
    assert np.all(scores[300:600] < 0.5)  # the ordinary cycle before it is quiet


def test_a_broken_daily_pattern_is_flagged_with_ordinary_values() -> None:
    times, values = daily(12)
    noon = 10 * DAY_POINTS + DAY_POINTS // 4  # the daily peak (sin = 1) of day 10
    values[noon - 12 : noon + 12] = 32  # the peak is missing: a level seen every night
    scores = score_series(times, values)
    assert scores[noon - 12 : noon + 12].max() >= 0.5
    assert scores[DAY_POINTS : noon - 12].max() < 0.5
    without = score_series(times, values, DetectorParams(slot_weight=0))
    assert without[noon - 12 : noon + 12].max() < 0.5  # only the time-of-day range sees it


def test_nothing_is_scored_during_warm_up_and_non_finite_values_are_skipped() -> None:
    times, values = daily(1)
    values[10] = 1e9
    values[200] = math.nan
    values[250] = math.inf
    detector = NoveltyDetector(DetectorParams(warmup_points=50))
    scores = detector.score_many(times.tolist(), values.tolist())
    assert scores[10] == 0  # warm-up
    assert scores[200] == 0 and scores[250] == 0
    assert detector.state.seen == times.size - 2  # NaN and inf taught it nothing
    assert detector.score(times[-1] + STEP_S, 1e12) >= 0.5  # and did not break it


def test_scores_are_in_unit_interval_and_half_at_the_flag_novelty() -> None:
    params = DetectorParams(warmup_points=2, flag_novelty=0.1, min_slot_obs=10**6, range_decay=0)
    detector = NoveltyDetector(params)
    detector.score_many([0, 1, 2], [0.0, 10.0, 5.0])  # range [0, 10]
    assert detector.score(3, 11.0) == pytest.approx(0.5)  # 0.1 range widths above
    assert 0 <= score_series(*daily(2)).min() and score_series(*daily(2)).max() < 1


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"slot_s": 7000}, "divide a day"),
        ({"flag_novelty": 0}, "flag_novelty"),
        ({"range_decay": 1.0}, "range_decay"),
        ({"rest_points": -1}, "must not be negative"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        DetectorParams(**kwargs)  # type: ignore[arg-type]


def test_a_state_from_other_parameters_is_refused() -> None:
    state = NoveltyDetector(DetectorParams(slot_s=3600)).state
    with pytest.raises(ValueError, match="24 time-of-day slots"):
        NoveltyDetector(DetectorParams(slot_s=14_400), state)


def _write_series(path: Path, rows: int, spike_at: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    start = np.datetime64("2024-01-01T00:00:00")
    lines = ["timestamp,value"]
    for i in range(rows):
        stamp = str(start + np.timedelta64(i * STEP_S, "s")).replace("T", " ")
        lines.append(f"{stamp},{1000 if i == spike_at else 10 + i % 7}")
    path.write_text("\n".join(lines))  # no trailing newline, as some NAB files


def test_detect_writes_nab_layout_with_labels_under_the_same_relative_paths(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    _write_series(data / "cat" / "a.csv", 300, spike_at=200)
    _write_series(data / "b.csv", 120, spike_at=-1)
    labels = tmp_path / "windows.json"
    labels.write_text(
        '{"cat/a.csv": [["2024-01-01 16:20:00.000000", "2024-01-01 17:00:00.000000"]]}'
    )
    report = detect_files([data], tmp_path / "out", labels=labels)
    assert (report.files, report.rows, report.labelled) == (2, 420, 1)
    rows = (tmp_path / "out" / "cat" / "a.csv").read_text().splitlines()
    assert rows[0] == "timestamp,value,anomaly_score,label"
    assert rows[201].startswith("2024-01-01 16:40:00,1000.0,")
    assert float(rows[201].split(",")[2]) >= 0.5
    labelled = [int(r.split(",")[3]) for r in rows[1:]]
    assert sum(labelled) == 9 and labelled[196] == 1 and labelled[195] == 0
    assert (tmp_path / "out" / "b.csv").read_text().splitlines()[0] == (
        "timestamp,value,anomaly_score"
    )


def test_detect_names_the_file_and_line_of_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,oops\n")
    with pytest.raises(DetectInputError, match=r"bad\.csv:3: bad value 'oops'"):
        detect_files([bad], tmp_path / "out")
    with pytest.raises(DetectInputError, match="no such file"):
        detect_files([tmp_path / "missing.csv"], tmp_path / "out")


def test_a_constant_series_flags_its_first_change() -> None:
    detector = NoveltyDetector(DetectorParams(warmup_points=3, min_slot_obs=10**6))
    scores = detector.score_many(range(10), [6.0] * 9 + [3.0])
    assert scores[:9] == [0.0] * 9
    assert scores[9] >= 0.5  # a quiet machine sends 3 events a window instead of 6


def test_floating_point_noise_is_not_a_change() -> None:
    detector = NoveltyDetector(DetectorParams(warmup_points=3, min_slot_obs=10**6))
    # The computed stddev of six equal readings: 0 or a few 1e-16.
    scores = detector.score_many(range(8), [0.0, 4.4e-16, 0.0, 8.9e-16, 0.0, 1.8e-15, 0.0, 0.5])
    assert scores[:7] == [0.0] * 7
    assert scores[7] >= 0.5


def test_the_settings_defaults_are_the_detectors_defaults() -> None:
    assert DetectorParams.from_settings(DetectorSettings()) == DetectorParams()


def test_detect_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    _write_series(tmp_path / "a.csv", 60, spike_at=-1)
    with pytest.raises(DetectInputError, match="would overwrite this input"):
        detect_files([tmp_path], tmp_path)

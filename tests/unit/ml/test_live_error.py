"""Live forecast errors: forecasts resolved against the windows after them; drift."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pulsecast.ml.live_error import ROWS_SCHEMA, DriftMonitor, ForecastCheck

STEP = 60
HORIZON = 180  # three windows


def batch(*rows: tuple[str, int, float, int, float | None]) -> pa.Table:
    """Rows of (key, minute, value, count, forecast) for metric ``t``."""
    return pa.Table.from_pylist(
        [
            {
                "key": key,
                "metric": "t",
                "window_s": minute * STEP,
                "value": value,
                "count": count,
                "forecast": forecast,
                "horizon_s": HORIZON if forecast is not None else None,
                "model_version": 1 if forecast is not None else None,
            }
            for key, minute, value, count, forecast in rows
        ],
        schema=ROWS_SCHEMA,
    )


def test_a_forecast_resolves_once_its_horizon_has_closed_to_the_count_weighted_mean() -> None:
    check = ForecastCheck(step_s=STEP)
    assert check.add(batch(("a", 0, 10.0, 6, 12.0))).num_rows == 0
    # Minutes 1 and 2 follow; the horizon (minutes 1..3) is not over yet.
    assert check.add(batch(("a", 1, 11.0, 1, None), ("a", 2, 14.0, 3, None))).num_rows == 0
    assert check.pending == 1
    # Minute 3 closes it: (11*1 + 14*3 + 20*2) / 6 = 15.5; minute 4 is beyond the horizon.
    resolved = check.add(batch(("a", 3, 20.0, 2, None), ("a", 4, 99.0, 9, None))).to_pylist()
    assert resolved == [
        {
            "key": "a",
            "metric": "t",
            "window_s": 0,
            "model_version": 1,
            "forecast": 12.0,
            "actual": 15.5,
            "abs_error": 3.5,
            "horizon_s": HORIZON,
        }
    ]
    assert check.pending == 0
    assert check.add(batch(("a", 5, 1.0, 1, None))).num_rows == 0  # resolved only once


def test_forecasts_of_entities_stay_apart_and_a_horizon_without_data_is_dropped() -> None:
    check = ForecastCheck(step_s=STEP)
    check.add(batch(("a", 0, 1.0, 1, 2.0), ("b", 0, 1.0, 1, 5.0)))
    # b goes quiet: its horizon passes with no data; a's resolves on its own windows.
    resolved = check.add(batch(("a", 1, 3.0, 1, None), ("a", 3, 3.0, 1, None))).to_pylist()
    assert [(r["key"], r["actual"], r["abs_error"]) for r in resolved] == [("a", 3.0, 1.0)]
    assert check.pending == 0


def test_the_check_forgets_windows_no_pending_forecast_needs() -> None:
    check = ForecastCheck(step_s=STEP)
    for minute in range(100):
        check.add(batch(("a", minute, float(minute), 1, float(minute))))
    assert check.pending == 3  # the last three minutes' horizons are still open
    assert check._actuals.num_rows <= 3


def resolved(minutes: range, error: float, version: int = 1) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "key": "a",
                "metric": "t",
                "window_s": m * STEP,
                "model_version": version,
                "forecast": 0.0,
                "actual": error,
                "abs_error": error,
                "horizon_s": HORIZON,
            }
            for m in minutes
        ]
    )


def test_drift_needs_a_whole_window_of_errors_above_the_ratio() -> None:
    monitor = DriftMonitor(ratio=2.0, window_s=30 * STEP, min_errors=10)
    assert not monitor.status().drifting  # no model yet
    monitor.watch(1, {"t": 1.0})
    monitor.add(resolved(range(10), 5.0))
    status = monitor.status()
    assert not status.drifting and status.reason == "watched 540 s of 1800 s"
    monitor.add(resolved(range(10, 40), 5.0))
    status = monitor.status()
    assert status.drifting, status
    assert status.live_mae == {"t": 5.0} and status.errors == 30  # the last 30 minutes only
    assert status.reason == "live MAE of t is 5.0x its holdout MAE (5 vs 1) over 1740 s"


def test_no_drift_within_the_ratio_and_a_new_model_starts_afresh() -> None:
    monitor = DriftMonitor(ratio=2.0, window_s=30 * STEP, min_errors=10)
    monitor.watch(1, {"t": 1.0})
    monitor.add(resolved(range(40), 1.9))
    assert not monitor.status().drifting
    monitor.add(resolved(range(40, 80), 3.0))
    assert monitor.status().drifting
    monitor.watch(2, {"t": 1.0})
    assert monitor.status().errors == 0
    monitor.add(resolved(range(80, 120), 3.0, version=1))  # the old model's late resolutions
    assert monitor.status().errors == 0 and not monitor.status().drifting


@pytest.mark.parametrize("holdout", [{}, {"t": 0.0}, {"other": 1.0}])
def test_a_metric_without_a_holdout_error_is_never_judged(holdout: dict[str, float]) -> None:
    monitor = DriftMonitor(ratio=2.0, window_s=30 * STEP, min_errors=10)
    monitor.watch(1, holdout)
    monitor.add(resolved(range(40), 100.0))
    assert not monitor.status().drifting


def test_a_seeded_check_resolves_what_the_check_it_replaces_would_have() -> None:
    # Each batch closes the windows of every entity up to a minute, as the watermark does.
    batches = [
        batch(("a", 0, 10.0, 2, 11.0), ("b", 0, 5.0, 1, 4.0)),
        batch(("a", 1, 12.0, 1, 13.0), ("b", 1, 6.0, 3, None)),
        batch(("a", 2, 14.0, 2, None), ("a", 3, 20.0, 1, 21.0), ("b", 3, 7.0, 1, 9.0)),
        batch(("a", 4, 22.0, 1, None), ("b", 4, 1.0, 1, None)),
        batch(("a", 5, 2.0, 1, None), ("b", 6, 3.0, 2, None)),
        batch(("a", 7, 1.0, 1, None), ("b", 7, 8.0, 1, None)),
    ]
    uninterrupted = ForecastCheck(step_s=STEP)
    expected = [uninterrupted.add(b).to_pylist() for b in batches]
    # Minute 3 resolves a@0 and b@0; minute 4 a@1; minute 6 a@3 and b@3.
    assert [[(r["key"], r["window_s"] // STEP) for r in e] for e in expected[3:]] == [
        [("a", 1)],
        [("a", 3), ("b", 3)],
        [],
    ]
    # A restart after batch 2: the check is taken back from the windows written so far.
    seeded = ForecastCheck(step_s=STEP)
    seeded.seed(pa.concat_tables(batches[:3]), newest_s=3 * STEP)
    assert seeded.pending == 3  # a@1, a@3 and b@3 (a@0's and b@0's horizons have passed)
    assert seeded.add(batches[2]).num_rows == 0  # a replayed batch: taken already
    assert seeded.pending == 3
    assert [seeded.add(b).to_pylist() for b in batches[3:]] == expected[3:]
    assert seeded.pending == uninterrupted.pending == 0


def test_the_newest_window_of_any_series_closes_horizons() -> None:
    check = ForecastCheck(step_s=STEP)
    check.add(batch(("a", 0, 1.0, 1, 2.0), ("a", 1, 3.0, 1, None), ("a", 2, 3.0, 1, None)))
    # The batch of minute 3 holds no window of metric t, but another series' closes minute 3.
    resolved = check.add(batch(), newest_s=3 * STEP).to_pylist()
    assert [(r["window_s"], r["actual"]) for r in resolved] == [(0, 3.0)]

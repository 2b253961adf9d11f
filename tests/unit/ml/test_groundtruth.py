"""Alerts against the simulator's labels: the matching rules, worked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pulsecast.ml.groundtruth import Alert, Label, match_alerts, read_labels

T = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


def minute(n: int) -> datetime:
    return T + timedelta(minutes=n)


def alert(entity: str, series: str, start_min: int) -> Alert:
    return Alert(entity, series, minute(start_min), minute(start_min + 1))


LABELS = [
    Label("m-1", "cpu_util", "level_shift", minute(10), minute(30)),
    Label("m-1", "*", "dropout", minute(60), minute(70)),
    Label("m-2", "power_kw", "drift", minute(0), minute(40)),
]


def test_precision_recall_f1_and_delay_by_hand() -> None:
    alerts = [
        alert("m-1", "cpu_util", 12),  # level shift, ends 12:13: delay 3 min
        alert("m-1", "cpu_util.stddev", 11),  # same label, earlier: delay 2 min
        alert("m-1", "events", 74),  # dropout, 4 min after its end (within 5): delay 15 min
        alert("m-2", "cpu_util", 20),  # m-2's drift is in power_kw: a false alert
        alert("m-3", "power_kw", 20),  # no label for m-3: false
    ]
    quality = match_alerts(LABELS, alerts)
    assert (quality.labels, quality.detected) == (3, 2)
    assert (quality.alerts, quality.true_alerts) == (5, 3)
    assert quality.precision == pytest.approx(3 / 5)
    assert quality.recall == pytest.approx(2 / 3)
    assert quality.f1 == pytest.approx(2 * 0.6 * (2 / 3) / (0.6 + 2 / 3))
    assert quality.median_delay_s == 0.5 * (120 + 900)
    assert quality.recall_by_kind == {"level_shift": 1.0, "dropout": 1.0, "drift": 0.0}


def test_the_tolerance_bounds_late_alerts() -> None:
    late = [alert("m-1", "cpu_util", 36)]  # starts 6 min after the end
    assert match_alerts(LABELS, late).true_alerts == 0
    assert match_alerts(LABELS, late, tolerance=timedelta(minutes=6)).true_alerts == 1
    before = [alert("m-1", "cpu_util", 9)]  # ends exactly when the anomaly starts
    assert match_alerts(LABELS, before).true_alerts == 0


def test_warm_up_is_not_scored_but_its_labels_still_explain_alerts() -> None:
    alerts = [alert("m-2", "power_kw", 39), alert("m-1", "cpu_util", 5)]
    quality = match_alerts(LABELS, alerts, scored_from=minute(8))
    assert quality.labels == 2  # m-2's drift started at minute 0, before scoring
    assert quality.alerts == 1  # the alert of minute 5 ends before minute 8
    assert quality.true_alerts == 1  # ... and m-2's alert is explained by its drift
    assert quality.detected == 0


def test_no_alerts_and_no_labels() -> None:
    quality = match_alerts([], [])
    assert (quality.precision, quality.recall, quality.median_delay_s) == (1.0, 1.0, None)


def test_read_labels_names_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(
        '{"entity_id": "m-1", "metric": "*", "kind": "dropout", '
        '"start": "2026-01-02T12:00:00+00:00", "end": "2026-01-02T12:05:00+00:00"}\n'
        '{"entity_id": "m-1"}\n'
    )
    with pytest.raises(ValueError, match=r"labels\.jsonl:2: not a simulator label"):
        read_labels(path)
    path.write_text(path.read_text().splitlines()[0])
    assert read_labels(path) == [Label("m-1", "*", "dropout", T, T + timedelta(minutes=5))]


def test_read_labels_needs_time_zones(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(
        '{"entity_id": "m-1", "metric": "*", "kind": "dropout", '
        '"start": "2026-01-02T12:00:00", "end": "2026-01-02T12:05:00"}\n'
    )
    with pytest.raises(ValueError, match=r"labels\.jsonl:1: .*time zone"):
        read_labels(path)

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pulsecast.config import Settings, SimulatorSettings
from pulsecast.events import Rejection, SchemaRegistry
from pulsecast.sources.simulator import ANOMALY_KINDS, FleetSimulator

START = datetime(2026, 3, 2, tzinfo=UTC)


def run(config: SimulatorSettings, ticks: int, interval_s: float = 60.0) -> tuple[list[Any], str]:
    out = io.StringIO()
    fleet = FleetSimulator(config, start=START, interval_s=interval_s, labels_out=out)
    events = [e for _ in range(ticks) for e in fleet.next_tick()[1]]
    return events, out.getvalue()


def test_simulator_same_seed_same_events_and_labels() -> None:
    config = SimulatorSettings(entities=20, seed=7, anomalies_per_entity_day=24)
    assert run(config, 200) == run(config, 200)


def test_simulator_other_start_other_ids() -> None:
    config = SimulatorSettings(entities=5, seed=1)
    a = FleetSimulator(config, start=START, interval_s=60).next_tick()[1]
    later = START + timedelta(days=1)
    b = FleetSimulator(config, start=later, interval_s=60).next_tick()[1]
    assert {e["event_id"] for e in a}.isdisjoint({e["event_id"] for e in b})


def test_simulator_other_seed_other_events() -> None:
    a, _ = run(SimulatorSettings(entities=5, seed=1), 10)
    b, _ = run(SimulatorSettings(entities=5, seed=2), 10)
    assert [e["payload"] for e in a] != [e["payload"] for e in b]
    assert {e["event_id"] for e in a}.isdisjoint({e["event_id"] for e in b})


def test_simulator_events_are_valid_and_paced_in_event_time(settings: Settings) -> None:
    events, _ = run(SimulatorSettings(entities=10, seed=3, anomalies_per_entity_day=0), 30)
    assert len(events) == 300
    schema = SchemaRegistry(settings.streams)["telemetry"]
    results = schema.validate_many(events)
    assert not [r for r in results if isinstance(r, Rejection)]
    times = sorted({e["event_time"] for e in events})
    assert times[0] == START
    assert times[1] - times[0] == timedelta(seconds=60)
    assert len({e["event_id"] for e in events}) == 300


def test_simulator_has_daily_seasonality() -> None:
    events, _ = run(SimulatorSettings(entities=1, seed=5, anomalies_per_entity_day=0), 24 * 60)
    temps = [e["payload"]["temperature_c"] for e in events]
    hourly = [sum(temps[h * 60 : (h + 1) * 60]) / 60 for h in range(24)]
    assert max(hourly) - min(hourly) > 4  # amplitude 3-8 degrees, noise averaged out


def test_simulator_labels_cover_every_kind_and_match_the_data() -> None:
    config = SimulatorSettings(entities=30, seed=11, anomalies_per_entity_day=12)
    events, text = run(config, 24 * 60)
    labels = [json.loads(line) for line in text.splitlines()]
    assert {label["kind"] for label in labels} == set(ANOMALY_KINDS)
    # A dropout's machine sends nothing during the labelled window.
    dropout = next(label for label in labels if label["kind"] == "dropout")
    start, end = datetime.fromisoformat(dropout["start"]), datetime.fromisoformat(dropout["end"])
    during = [
        e
        for e in events
        if e["payload"]["entity_id"] == dropout["entity_id"] and start <= e["event_time"] <= end
    ]
    assert during == []
    # A stuck sensor repeats one value for the whole window.
    stuck = next(label for label in labels if label["kind"] == "stuck")
    start, end = datetime.fromisoformat(stuck["start"]), datetime.fromisoformat(stuck["end"])
    values = {
        e["payload"][stuck["metric"]]
        for e in events
        if e["payload"]["entity_id"] == stuck["entity_id"] and start <= e["event_time"] <= end
    }
    assert len(values) == 1
    # A spike is far from its machine's usual level.
    spike = next(label for label in labels if label["kind"] == "spike")
    series = [
        (e["event_time"], e["payload"][spike["metric"]])
        for e in events
        if e["payload"]["entity_id"] == spike["entity_id"]
    ]
    at = datetime.fromisoformat(spike["start"])
    spiked = next(v for t, v in series if t == at)
    nearby = [v for t, v in series if abs((t - at).total_seconds()) <= 600 and t != at]
    mean = sum(nearby) / len(nearby)
    assert abs(spiked - mean) > 3 * (max(nearby) - min(nearby)) / 2 or spiked in (0.0, 100.0)


def test_simulator_invalid_fraction_makes_rejections(settings: Settings) -> None:
    config = SimulatorSettings(entities=50, seed=9, invalid_fraction=0.1)
    events, _ = run(config, 40)
    results = SchemaRegistry(settings.streams)["telemetry"].validate_many(events)
    reasons = Counter(r.reason for r in results if isinstance(r, Rejection))
    assert set(reasons) == {"out_of_range", "missing_field", "wrong_type", "invalid_timestamp"}
    assert 0.05 < sum(reasons.values()) / len(events) < 0.15


def test_simulator_rejects_naive_start() -> None:
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        FleetSimulator(SimulatorSettings(), start=datetime(2026, 1, 1), interval_s=1)

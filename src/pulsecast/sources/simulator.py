"""A deterministic fleet of machines, with anomalies whose truth is known.

Each machine reports ``temperature_c``, ``cpu_util``, ``vibration_mm_s`` and
``power_kw`` every ``interval_s`` of event time. Values follow a per-machine
level with daily and weekly seasonality, a slow trend and noise; anomalies of
five kinds are injected at random (seeded) times:

- ``spike``: one reading far off (6-10 sd);
- ``level_shift``: the level jumps (3-5 sd) for 10-60 minutes;
- ``drift``: the level slides away (up to 5-8 sd) over 20-90 minutes;
- ``stuck``: the sensor repeats its last value for 10-40 minutes;
- ``dropout``: the machine sends nothing for 5-20 minutes.

Every injected anomaly is written to a JSON Lines labels file (entity, metric,
kind, start, end) so detectors can be scored. The same seed, settings and start
time give the same events, ids and labels. Generation is vectorised with numpy
across the fleet, one tick at a time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np

from pulsecast.config import SimulatorSettings

__all__ = ["ANOMALY_KINDS", "METRICS", "AnomalyLabel", "FleetSimulator"]

log = logging.getLogger(__name__)

METRICS: Final = ("temperature_c", "cpu_util", "vibration_mm_s", "power_kw")
ANOMALY_KINDS: Final = ("spike", "level_shift", "drift", "stuck", "dropout")
_DAY_S: Final = 86_400.0
_WEEK_S: Final = 7 * _DAY_S
# Duration ranges of each kind, in minutes of event time.
_DURATION_MIN: Final = {
    "spike": (0, 0),
    "level_shift": (10, 60),
    "drift": (20, 90),
    "stuck": (10, 40),
    "dropout": (5, 20),
}
_LOWER: Final = np.array([-50.0, 0.0, 0.0, 0.0])
_UPPER: Final = np.array([200.0, 100.0, 1000.0, 10000.0])


@dataclass(frozen=True)
class AnomalyLabel:
    """One injected anomaly (ground truth).

    Attributes:
        entity_id: The machine.
        metric: The metric affected (``*`` for a dropout: all of them).
        kind: One of :data:`ANOMALY_KINDS`.
        start: Event time of the first affected reading.
        end: Event time of the last affected reading.
    """

    entity_id: str
    metric: str
    kind: str
    start: datetime
    end: datetime

    def as_json(self) -> str:
        """One JSON line."""
        data = asdict(self)
        data["start"] = self.start.isoformat()
        data["end"] = self.end.isoformat()
        return json.dumps(data)


@dataclass
class _Active:
    kind: str
    metric: int  # index into METRICS, -1 for all
    ticks_total: int
    ticks_left: int
    magnitude: float
    frozen: np.ndarray | None = None


class FleetSimulator:
    """Generates the fleet's readings tick by tick.

    Args:
        config: The simulator's settings.
        start: Event time of the first tick (timezone-aware).
        interval_s: Event time between two ticks.
        labels_out: Where to append ground-truth labels as they are injected.
    """

    def __init__(
        self,
        config: SimulatorSettings,
        *,
        start: datetime,
        interval_s: float,
        labels_out: TextIO | None = None,
    ) -> None:
        if start.tzinfo is None:
            msg = f"start must be timezone-aware, got {start.isoformat()}"
            raise ValueError(msg)
        if interval_s <= 0:
            msg = f"interval_s must be positive, got {interval_s}"
            raise ValueError(msg)
        self.config = config
        self.start = start.astimezone(UTC)
        self.interval_s = interval_s
        self.labels_out = labels_out
        self.labels: list[AnomalyLabel] = []
        self.ids = [f"m-{i:04d}" for i in range(config.entities)]
        self._rng = np.random.default_rng(config.seed)
        # Ids come from their own generator, seeded by seed *and* start: two runs
        # with the same seed but other start times never share an event id.
        start_us = int(self.start.timestamp() * 1_000_000)
        self._ids = np.random.default_rng([config.seed, start_us])
        n = config.entities
        rng = self._rng
        # Per-machine character: levels, seasonal amplitudes, trend, noise.
        self._level = np.column_stack(
            [
                rng.uniform(55, 70, n),
                rng.uniform(25, 55, n),
                rng.uniform(2, 5, n),
                rng.uniform(20, 60, n),
            ]
        )
        self._daily = np.column_stack(
            [
                rng.uniform(3, 8, n),
                rng.uniform(8, 20, n),
                rng.uniform(0.3, 1.0, n),
                rng.uniform(4, 12, n),
            ]
        )
        self._weekly = self._daily * rng.uniform(0.2, 0.5, (n, 1))
        self._phase = rng.uniform(0, 2 * np.pi, (n, 1))
        self._trend_per_day = self._daily * rng.uniform(-0.02, 0.05, (n, 1))
        self._noise = self._daily * rng.uniform(0.08, 0.15, (n, 1))
        self._p_anomaly = config.anomalies_per_entity_day * interval_s / _DAY_S
        self._active: dict[int, _Active] = {}
        self._last = self._level.copy()
        self.tick = 0

    def _start_anomalies(self, when: datetime) -> None:
        rng = self._rng
        draws = rng.random(self.config.entities)
        for entity in np.flatnonzero(draws < self._p_anomaly):
            if entity in self._active:
                continue
            kind = ANOMALY_KINDS[int(rng.integers(len(ANOMALY_KINDS)))]
            metric = -1 if kind == "dropout" else int(rng.integers(len(METRICS)))
            lo, hi = _DURATION_MIN[kind]
            minutes = rng.uniform(lo, hi)
            ticks = max(1, round(minutes * 60 / self.interval_s))
            sign = 1.0 if rng.random() < 0.5 else -1.0
            sigma = {"spike": (6, 10), "level_shift": (3, 5), "drift": (5, 8)}.get(kind, (0, 0))
            magnitude = sign * rng.uniform(*sigma) if sigma != (0, 0) else 0.0
            active = _Active(kind, metric, ticks, ticks, magnitude)
            if kind == "stuck":
                active.frozen = self._last[entity].copy()
            self._active[int(entity)] = active
            label = AnomalyLabel(
                entity_id=self.ids[entity],
                metric="*" if metric < 0 else METRICS[metric],
                kind=kind,
                start=when,
                end=when + timedelta(seconds=(ticks - 1) * self.interval_s),
            )
            self.labels.append(label)
            if self.labels_out is not None:
                self.labels_out.write(label.as_json() + "\n")
                self.labels_out.flush()

    def _values(self, seconds: float) -> np.ndarray:
        rng = self._rng
        day = 2 * np.pi * seconds / _DAY_S
        week = 2 * np.pi * seconds / _WEEK_S
        values = (
            self._level
            + self._daily * np.sin(day + self._phase)
            + self._weekly * np.sin(week + self._phase)
            + self._trend_per_day * (seconds / _DAY_S)
            + self._noise * rng.standard_normal(self._level.shape)
        )
        return values

    def next_tick(self) -> tuple[datetime, list[dict[str, Any]]]:
        """Advance one tick.

        Returns:
            The tick's event time and its events (mappings with ``event_id``,
            ``event_time`` and ``payload``), one per reporting machine.
        """
        when = self.start + timedelta(seconds=self.tick * self.interval_s)
        seconds = self.tick * self.interval_s
        self._start_anomalies(when)
        values = self._values(seconds)
        silent: set[int] = set()
        for entity, anomaly in list(self._active.items()):
            m = anomaly.metric
            scale = self._daily[entity, m] if m >= 0 else 0.0
            if anomaly.kind == "spike" or anomaly.kind == "level_shift":
                values[entity, m] += anomaly.magnitude * scale
            elif anomaly.kind == "drift":
                done = 1 - anomaly.ticks_left / anomaly.ticks_total
                values[entity, m] += anomaly.magnitude * scale * done
            elif anomaly.kind == "stuck" and anomaly.frozen is not None:
                values[entity, m] = anomaly.frozen[m]
            elif anomaly.kind == "dropout":
                silent.add(entity)
            anomaly.ticks_left -= 1
            if anomaly.ticks_left <= 0:
                del self._active[entity]
        values = np.clip(values, _LOWER, _UPPER).round(3)
        self._last = values
        ids = self._ids.bytes(16 * self.config.entities).hex()
        rows = values.tolist()
        events = [
            {
                "event_id": ids[32 * i : 32 * i + 32],
                "event_time": when,
                "payload": {
                    "entity_id": self.ids[i],
                    "temperature_c": row[0],
                    "cpu_util": row[1],
                    "vibration_mm_s": row[2],
                    "power_kw": row[3],
                },
            }
            for i, row in enumerate(rows)
            if i not in silent
        ]
        self._corrupt(events)
        self.tick += 1
        return when, events

    def _corrupt(self, events: list[dict[str, Any]]) -> None:
        """Make a share of events invalid on purpose (exercises the dead-letter path)."""
        fraction = self.config.invalid_fraction
        if fraction <= 0 or not events:
            return
        rng = self._rng
        for i in np.flatnonzero(rng.random(len(events)) < fraction):
            event = events[int(i)]
            payload = dict(event["payload"])
            kind = int(rng.integers(4))
            if kind == 0:
                payload["cpu_util"] = 180.0
            elif kind == 1:
                del payload["temperature_c"]
            elif kind == 2:
                payload["vibration_mm_s"] = "n/a"
            else:
                event["event_time"] = "yesterday"
            event["payload"] = payload

    def events(self) -> Iterator[list[dict[str, Any]]]:
        """Ticks forever; each item is one tick's events."""
        while True:
            yield self.next_tick()[1]


def open_labels(path: Path) -> TextIO:
    """Open (append) a labels file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", encoding="utf-8")

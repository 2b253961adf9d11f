"""The produce verbs: the simulator and file replay, driven into Kafka."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pulsecast.bus.producer import EventProducer
from pulsecast.config import Settings, SimulatorSettings
from pulsecast.events.schema import SchemaRegistry
from pulsecast.sources.errors import SourceError
from pulsecast.sources.replay import parse_time, replay_events
from pulsecast.sources.runner import ProduceSummary, ProgressFn, produce_batches, time_paced
from pulsecast.sources.simulator import FleetSimulator, open_labels

__all__ = ["labels_path", "parse_speed", "run_replay", "run_simulator", "simulator_clock"]


def parse_speed(text: str) -> float | None:
    """``max`` → None (no pacing), ``realtime`` → 1, else a positive factor.

    Raises:
        SourceError: Anything else.
    """
    if text == "max":
        return None
    if text == "realtime":
        return 1.0
    try:
        factor = float(text)
    except ValueError:
        factor = 0.0
    if factor <= 0:
        msg = f"--speed must be 'max', 'realtime' or a positive number, got {text!r}"
        raise SourceError(msg)
    return factor


def simulator_clock(sim: SimulatorSettings) -> tuple[datetime, float]:
    """Start time and event-time step of a simulator run.

    With a rate, one tick lasts ``entities / rate`` seconds so event time keeps
    pace with the wall clock; as fast as possible, ticks are 10 s apart.
    """
    if sim.start is not None:
        start = parse_time(sim.start)
        if start is None:
            msg = f"simulator.start is not an RFC 3339 time: {sim.start!r}"
            raise SourceError(msg)
    else:
        start = datetime.now(UTC).replace(microsecond=0)
    if sim.interval_s is not None:
        interval = sim.interval_s
    elif sim.rate_eps > 0:
        interval = sim.entities / sim.rate_eps
    else:
        interval = 10.0
    return start, interval


def labels_path(settings: Settings, sim: SimulatorSettings, start: datetime) -> Path:
    """Where a run's ground-truth labels go."""
    if sim.labels_file is not None:
        return sim.labels_file
    stamp = start.strftime("%Y%m%dT%H%M%SZ")
    return settings.data_dir / "simulator" / f"labels-seed{sim.seed}-{stamp}.jsonl"


def run_simulator(
    settings: Settings,
    sim: SimulatorSettings,
    *,
    stream: str = "telemetry",
    count: int | None = None,
    seconds: float | None = None,
    progress: ProgressFn | None = None,
) -> tuple[ProduceSummary, Path]:
    """Produce the simulated fleet into ``stream``.

    Returns:
        The run's totals and the path of its labels file.
    """
    SchemaRegistry(settings.streams)[stream]  # fail fast on an unknown stream
    start, interval = simulator_clock(sim)
    path = labels_path(settings, sim, start)
    with open_labels(path) as labels, EventProducer(settings, source="simulator") as producer:
        fleet = FleetSimulator(sim, start=start, interval_s=interval, labels_out=labels)
        ticks = fleet.events()
        # As fast as possible: merge ticks into large batches for bulk validation.
        batches = ticks if sim.rate_eps > 0 else _merged(ticks, 5000)
        summary = produce_batches(
            producer,
            stream,
            batches,
            count=count,
            seconds=seconds,
            rate_eps=sim.rate_eps,
            progress=progress,
        )
    return summary, path


def _merged(ticks: Iterable[list[dict[str, Any]]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for events in ticks:
        batch.extend(events)
        if len(batch) >= size:
            yield batch
            batch = []


def run_replay(
    settings: Settings,
    paths: list[Path],
    *,
    stream: str = "series",
    speed: float | None = None,
    rate_eps: float = 0.0,
    count: int | None = None,
    time_field: str | None = None,
    key_field: str | None = None,
    progress: ProgressFn | None = None,
) -> ProduceSummary:
    """Replay files into ``stream`` at ``speed`` (event time) or ``rate_eps``."""
    spec = SchemaRegistry(settings.streams)[stream].spec
    events = replay_events(paths, spec, time_field=time_field, key_field=key_field)
    batches = time_paced(events, speed=None if rate_eps > 0 else speed)
    with EventProducer(settings, source="file") as producer:
        return produce_batches(
            producer,
            stream,
            batches,
            count=count,
            rate_eps=rate_eps,
            strict=False,
            progress=progress,
        )

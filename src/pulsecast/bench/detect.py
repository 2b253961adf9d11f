"""`pulsecast bench detect`: live anomaly detection against the simulator's ground truth.

On the local Kafka and PostgreSQL (started if needed), with a stream, lake and
checkpoints of its own:

1. the fleet simulator produces ``days`` of event time for ``entities``
   machines (a reading every ``interval_s``), as fast as possible, with its
   seeded anomalies (spikes, level shifts, drifts, stuck sensors, dropouts)
   and their labels;
2. the streaming job runs as configured, live scoring included, until it has
   processed everything and gone idle;
3. the alerts it raised (``gold_<stream>_scores`` where flagged) are compared
   with the labels (:mod:`pulsecast.ml.groundtruth`), after ``warmup_days``
   in which the detectors learn.

The result is precision, recall, F1, the median detection delay and recall per
anomaly kind. Topics, lake and warehouse rows of the run are removed at the end.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pulsecast.bench.e2e import BenchmarkError, run_settings
from pulsecast.bus.admin import TopicAdmin
from pulsecast.bus.topics import topic_specs
from pulsecast.config import Settings
from pulsecast.ml.groundtruth import lake_alerts, match_alerts, read_labels
from pulsecast.services.kafka import KafkaService
from pulsecast.services.postgres import PostgresService
from pulsecast.sources.produce import run_simulator

__all__ = ["run_detect_benchmark"]

Say = Callable[[str], None]

#: Event time of the simulated fleet's first reading (fixed: the same labels every run).
START = datetime(2026, 1, 5, tzinfo=UTC)


def run_detect_benchmark(
    settings: Settings,
    *,
    entities: int = 20,
    days: float = 3.0,
    warmup_days: float = 1.0,
    interval_s: float = 10.0,
    seed: int = 42,
    say: Say = lambda _t: None,
) -> dict[str, Any]:
    """Run the simulator through the live pipeline and score its alerts; see the module.

    Returns:
        The quality figures (``precision``, ``recall``, ``f1``, ``median_delay_s``,
        ``recall_by_kind``, counts) and the run's parameters and times.

    Raises:
        BenchmarkError: The job did not finish, or live scoring is disabled.
    """
    from pulsecast.stream.job import StreamJob
    from pulsecast.stream.session import spark_session
    from pulsecast.warehouse.schema import Warehouse

    if not settings.ml.detector.enabled:
        msg = "live scoring is off (ml.detector.enabled = false): nothing to measure"
        raise BenchmarkError(msg)
    if warmup_days >= days:
        msg = f"warmup_days ({warmup_days}) must be shorter than days ({days})"
        raise BenchmarkError(msg)
    say("starting kafka and postgres...")
    KafkaService(settings).start()
    PostgresService(settings).start()
    stream = f"detect{uuid.uuid4().hex[:8]}"
    root = settings.data_dir / "bench" / stream
    sim = settings.simulator.model_copy(
        update={
            "entities": entities,
            "seed": seed,
            "rate_eps": 0.0,
            "interval_s": interval_s,
            "start": START.isoformat(),
            "invalid_fraction": 0.0,
            "labels_file": root / "labels.jsonl",
        }
    )
    own = run_settings(settings, stream, root)
    admin = TopicAdmin(settings)
    specs = topic_specs(own, [stream])
    admin.ensure(specs)
    warehouse = Warehouse(own)
    count = round(entities * days * 86_400 / interval_s)
    try:
        say(f"simulating {entities} machines for {days:g} days ({count:,} events)...")
        produced, labels_file = run_simulator(own, sim, stream=stream, count=count)
        say("running the streaming job with live scoring until it is idle...")
        started = time.monotonic()
        spark = spark_session(own, app_name="pulsecast-bench")
        job = StreamJob(spark, own, streams=[stream])
        stats = job.run(until_idle=True, max_seconds=3_600)[stream]
        job_s = time.monotonic() - started
        if stats.records < produced.accepted:
            msg = f"the job processed {stats.records:,} of {produced.accepted:,} events in time"
            raise BenchmarkError(msg)
        alerts = lake_alerts(own, stream)
        labels = read_labels(labels_file)
    finally:
        admin.delete([s.name for s in specs])
        warehouse.delete_stream(stream)
        shutil.rmtree(root, ignore_errors=True)
    quality = match_alerts(labels, alerts, scored_from=START + timedelta(days=warmup_days))
    return {
        **quality.as_dict(),
        "events": produced.accepted,
        # A backlog read unevenly across partitions can leave a few events
        # behind the watermark: the job sends them to the DLQ as late.
        "rejected": dict(stats.rejected),
        "scored_windows": stats.scored,
        "job_s": round(job_s, 1),
        "entities": entities,
        "days": days,
        "warmup_days": warmup_days,
        "interval_s": interval_s,
        "seed": seed,
        "window_s": settings.ml.detector.window_s,
        "delay_s": (
            settings.stream.allowed_lateness_s
            if settings.ml.detector.delay_s is None
            else settings.ml.detector.delay_s
        ),
        "cpus": os.cpu_count(),
    }

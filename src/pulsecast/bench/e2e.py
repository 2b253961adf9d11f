"""`pulsecast bench e2e`: the streaming job under load, against Spark's own pass-through.

In one run, on the local Kafka and PostgreSQL (started if needed), with a
fresh stream, lake and checkpoint of its own, after a warm-up (10 s of load
at ``latency_rate``, drained: a cold JVM's first batches are not the steady
state):

1. **Sustained load.** A separate process produces simulated telemetry at a
   fixed ``rate`` for ``seconds`` through pulsecast's producer (validated,
   stamped with ``ingest_time`` as it is sent) while the streaming job runs
   as configured. After a warm-up, the events/s the job processed, the Kafka
   lag's trend (events/s it grew by; near zero when the job keeps up) and the
   micro-batch durations are measured.
2. **Latency.** After the backlog drained, the same at ``latency_rate``: each
   event's latency is the time from its ``ingest_time`` (just before it was
   produced) to the commit of the gold merge (``to_gold``) and of the
   warehouse upsert (``to_warehouse``) of the batch that carried it.
3. **Capacity against the reference.** On the same records (everything the
   two phases produced): the job from the earliest offset with a fresh lake
   and checkpoint until it has processed them all (``job_eps``), and Spark's
   minimal pass-through, Kafka → Parquet with no parsing, same source options
   (``passthrough_eps``). ``ratio = job_eps / passthrough_eps``.

Topics, lake and warehouse rows of the run are removed at the end.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pulsecast.bus.admin import TopicAdmin
from pulsecast.bus.clients import spark_kafka_options
from pulsecast.bus.consumer import end_offsets
from pulsecast.bus.producer import EventProducer
from pulsecast.bus.topics import TOPIC_KINDS, TopicSpec, topic_name
from pulsecast.config import Settings
from pulsecast.errors import PulsecastError
from pulsecast.services.kafka import KafkaService
from pulsecast.services.postgres import PostgresService
from pulsecast.stream.job import BatchTimes, StreamJob

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from pyspark.sql import SparkSession

__all__ = [
    "BenchmarkError",
    "job_capacity",
    "run_e2e_benchmark",
    "run_settings",
    "telemetry_records",
]

Say = Callable[[str], None]
_TEMPLATE = (
    '{"event_id":"%s-%d","event_time":"%sZ","payload":{"entity_id":"m-%03d",'
    '"temperature_c":%.2f,"cpu_util":%.2f,"vibration_mm_s":%.3f,"power_kw":%.1f}}'
)


class BenchmarkError(PulsecastError):
    """The benchmark could not run to the end."""


def run_settings(settings: Settings, stream: str, root: Path) -> Settings:
    """``settings`` with a benchmark's own stream (the telemetry schema), lake and checkpoints."""
    return settings.model_copy(
        update={
            "streams": {**settings.streams, stream: settings.streams["telemetry"]},
            "lake": settings.lake.model_copy(update={"uri": f"file://{root}/lake"}),
            "stream": settings.stream.model_copy(
                update={"checkpoint_uri": f"file://{root}/checkpoints"}
            ),
        }
    )


def telemetry_records(
    count: int, *, rate: float, entities: int = 100, run: str = "b", seed: int = 7
) -> list[bytes]:
    """``count`` valid telemetry events as JSON, event time advancing at ``rate`` per second.

    Built in bulk with numpy (the load generator must not be the bottleneck);
    event ids are ``<run>-<n>``, unique within a run.
    """
    rng = np.random.default_rng(seed)
    n = np.arange(count)
    start = np.datetime64(datetime.now(UTC).replace(tzinfo=None), "ms")
    times = np.datetime_as_string(start + (n * 1000 / rate).astype("timedelta64[ms]"), unit="ms")
    entity = n % entities
    temperature = 60 + 5 * np.sin(n / 5000) + rng.normal(0, 1, count)
    cpu = np.clip(40 + rng.normal(0, 10, count), 0, 100)
    vibration = np.abs(rng.normal(2, 0.5, count))
    power = 200 + entity + rng.normal(0, 5, count)
    return [
        (_TEMPLATE % row).encode()
        for row in zip(
            [run] * count,
            n.tolist(),
            times.tolist(),
            entity.tolist(),
            temperature.tolist(),
            cpu.tolist(),
            vibration.tolist(),
            power.tolist(),
            strict=True,
        )
    ]


def _load(
    settings: Settings, stream: str, rate: float, seconds: float, run: str, pipe: Connection
) -> None:
    """Child process: generate, say ready, wait for go, then produce at ``rate``."""
    records = telemetry_records(round(rate * seconds), rate=rate, run=run)
    pipe.send("ready")
    pipe.recv()
    sent = 0
    with EventProducer(settings, source="bench") as producer:
        started = time.monotonic()
        while sent < len(records):
            due = min(len(records), int((time.monotonic() - started) * rate) + 1)
            if due > sent:
                report = producer.send_json(stream, records[sent:due])
                if report.rejected:
                    pipe.send({"error": f"load events rejected: {dict(report.reasons)}"})
                    return
                sent = due
            else:
                time.sleep(0.002)
            producer.poll(0)
        producer.flush()
        elapsed = time.monotonic() - started
    pipe.send({"sent": sent, "seconds": elapsed})


@dataclass
class _Phase:
    """What one load phase measured."""

    offered_eps: float
    produced: int
    processed_eps: float
    lag_growth_eps: float
    final_lag: int
    batches: list[BatchTimes]  # started in the measured window
    started_at: float  # wall clock when the load began


def _slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points, strict=True)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


class _Bench:
    """The run's own stream (``bench<run>``, the telemetry schema), its topic and its load."""

    def __init__(self, settings: Settings, run: str) -> None:
        self.settings = settings
        self.run = run
        self.phases = 0
        self.stream = f"bench{run}"
        self.partitions = settings.kafka.partitions
        self.topic = topic_name(self.stream, "events")

    def produced(self) -> int:
        return sum(end_offsets(self.settings, self.topic, self.partitions).values())

    def load_phase(self, job: StreamJob, *, rate: float, seconds: float, warmup_s: float) -> _Phase:
        """Produce at ``rate`` for ``seconds`` while ``job`` runs; sample every second."""
        writer = job.writers[self.stream]
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        # Event ids unique across the run's phases: the job drops repeated ids as duplicates.
        self.phases += 1
        process = context.Process(
            target=_load,
            args=(self.settings, self.stream, rate, seconds, f"{self.run}p{self.phases}", child),
            daemon=True,
        )
        process.start()
        try:
            if not parent.poll(600) or parent.recv() != "ready":
                msg = "the load generator did not get ready"
                raise BenchmarkError(msg)
            base_produced = self.produced()
            base_processed = writer.stats.records
            parent.send("go")
            started = time.monotonic()
            started_at = time.time()
            samples: list[tuple[float, int, int]] = []  # (t, produced, processed)
            while not parent.poll(1.0):
                job.poll()
                t = time.monotonic() - started
                produced = self.produced() - base_produced
                samples.append((t, produced, writer.stats.records - base_processed))
                if t > seconds * 3 + 60:
                    msg = "the load generator did not finish"
                    raise BenchmarkError(msg)
            outcome = parent.recv()
        finally:
            process.join(timeout=30)
        if "error" in outcome:
            raise BenchmarkError(outcome["error"])
        measured = [s for s in samples if s[0] >= warmup_s]
        if len(measured) < 2:
            msg = f"the load lasted {samples[-1][0] if samples else 0:.0f} s: too short to measure"
            raise BenchmarkError(msg)
        (t0, _, done0), (t1, _, done1) = measured[0], measured[-1]
        lag = [(t, float(p - d)) for t, p, d in measured]
        wall0 = time.time() - (time.monotonic() - started - t0)
        wall1 = time.time() - (time.monotonic() - started - t1)
        return _Phase(
            offered_eps=outcome["sent"] / outcome["seconds"],
            produced=outcome["sent"],
            processed_eps=(done1 - done0) / (t1 - t0),
            lag_growth_eps=_slope(lag[len(lag) // 2 :]),
            final_lag=int(lag[-1][1]),
            batches=[b for b in writer.stats.recent if wall0 <= b.started_at <= wall1],
            started_at=started_at,
        )

    def drain(self, job: StreamJob, *, timeout_s: float = 600) -> None:
        """Wait until the job processed everything produced so far."""
        writer = job.writers[self.stream]
        target = self.produced()
        deadline = time.monotonic() + timeout_s
        while writer.stats.records < target:
            job.poll()
            if time.monotonic() > deadline:
                msg = f"the job did not catch up within {timeout_s:.0f} s"
                raise BenchmarkError(msg)
            time.sleep(0.5)


def _percentiles(values: list[float], *qs: float) -> list[float | None]:
    """Nearest-rank percentiles; None when there is no value (no batch ran in the window)."""
    if not values:
        return [None] * len(qs)
    ordered = sorted(values)
    return [round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) for q in qs]


def _latencies(spark: SparkSession, settings: Settings, stream: str, batches: list[BatchTimes]):  # type: ignore[no-untyped-def]
    """p50/p95 of event → gold and event → warehouse latency over ``batches``' events."""
    from pyspark.sql import functions as F

    from pulsecast.lake.tables import LakeTables

    times = spark.createDataFrame(
        [(b.batch_id, b.gold_at, b.warehouse_at) for b in batches],
        "batch_id long, gold_at double, warehouse_at double",
    )
    silver = spark.read.format("delta").load(LakeTables.from_settings(settings).silver(stream))
    ingest = F.unix_micros("ingest_time") / 1e6
    row = (
        silver.join(times, "batch_id")
        .agg(
            F.percentile_approx(F.col("gold_at") - ingest, [0.5, 0.95], 10000).alias("gold"),
            F.percentile_approx(F.col("warehouse_at") - ingest, [0.5, 0.95], 10000).alias("wh"),
            F.count(F.lit(1)).alias("events"),
        )
        .first()
    )
    assert row is not None  # noqa: S101 (an aggregate has one row)
    return row["gold"], row["wh"], row["events"]


def job_capacity(
    spark: SparkSession, settings: Settings, stream: str, total: int, say: Say = lambda _t: None
) -> float:
    """The job from the earliest offset on a fresh lake: events/s until it has processed all.

    ``settings`` name the lake and checkpoints (fresh ones: see :func:`run_settings`);
    ``total`` is how many records ``stream``'s topic holds. The job writes
    bronze, silver, gold and the warehouse, as configured.

    Raises:
        BenchmarkError: The catch-up took over 30 minutes.
    """
    job = StreamJob(spark, settings, streams=[stream], warehouse=True)
    job.start()
    try:
        writer = job.writers[stream]
        started = time.monotonic()
        while writer.stats.records < total:
            job.poll()
            time.sleep(0.2)
            if time.monotonic() - started > 1800:
                msg = "the job's catch-up took over 30 minutes"
                raise BenchmarkError(msg)
        elapsed = time.monotonic() - started
    finally:
        job.stop()
    say(f"  {total / elapsed:,.0f} events/s ({writer.stats.batches} batches)")
    return total / elapsed


def _passthrough(spark: SparkSession, settings: Settings, stream: str, total: int) -> float:
    """Spark's minimal pass-through of the same records: Kafka → Parquet, no parsing."""
    out = settings.data_dir / "bench" / stream / "passthrough"
    query = (
        spark.readStream.format("kafka")
        .options(**spark_kafka_options(settings))
        .option("subscribe", topic_name(stream, "events"))
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", settings.stream.max_offsets_per_trigger)
        .load()
        .writeStream.format("parquet")
        .option("path", str(out / "data"))
        .option("checkpointLocation", str(out / "checkpoint"))
        .trigger(availableNow=True)
    )
    started = time.monotonic()
    running = query.start()
    running.awaitTermination()
    elapsed = time.monotonic() - started
    written = spark.read.parquet(str(out / "data")).count()
    if written != total:
        msg = f"the pass-through wrote {written:,} records, expected {total:,}"
        raise BenchmarkError(msg)
    return total / elapsed


def run_e2e_benchmark(
    settings: Settings,
    *,
    rate: float = 60_000,
    seconds: float = 60,
    latency_rate: float = 10_000,
    latency_seconds: float = 30,
    warmup_s: float = 15,
    scoring: bool = True,
    say: Say = lambda _t: None,
) -> dict[str, Any]:
    """Run the three measurements; see the module's description.

    With ``scoring`` (the default, as ``ml.detector.enabled``) the job runs
    its live anomaly scoring too; without it, the job alone: the two give the
    scoring's overhead.

    Returns:
        ``sustained_eps``, ``batch_p50_s``, ``batch_p95_s``, ``latency_p50_s``,
        ``latency_p95_s`` (to gold), ``warehouse_latency_p50_s``/``p95_s``,
        ``job_eps``, ``passthrough_eps``, ``ratio`` and the run's parameters.

    Raises:
        BenchmarkError: A phase failed (the message says which).
    """
    from pulsecast.stream.session import spark_session
    from pulsecast.warehouse.schema import Warehouse

    say("starting kafka and postgres...")
    KafkaService(settings).start()
    PostgresService(settings).start()
    run = uuid.uuid4().hex[:8]
    stream = f"bench{run}"
    root = settings.data_dir / "bench" / stream
    bench_settings = run_settings(settings, stream, root).model_copy(
        update={
            "ml": settings.ml.model_copy(
                update={"detector": settings.ml.detector.model_copy(update={"enabled": scoring})}
            ),
        }
    )
    bench = _Bench(bench_settings, run)
    admin = TopicAdmin(settings)
    specs = [
        TopicSpec(topic_name(stream, kind), bench.partitions if kind == "events" else 1, 3_600_000)
        for kind in TOPIC_KINDS
    ]
    topics = [spec.name for spec in specs]
    admin.ensure(specs)
    warehouse = Warehouse(bench_settings)
    try:
        spark = spark_session(bench_settings, app_name="pulsecast-bench")
        job = StreamJob(spark, bench_settings, streams=[stream])
        job.start()
        try:
            # A cold JVM's first batches take tens of seconds: not the steady state.
            say(f"warm-up: {latency_rate:,.0f} events/s for 10 s...")
            bench.load_phase(job, rate=latency_rate, seconds=10, warmup_s=0)
            bench.drain(job)
            say(f"sustained: {rate:,.0f} events/s for {seconds:.0f} s (generating events first)...")
            load = bench.load_phase(job, rate=rate, seconds=seconds, warmup_s=warmup_s)
            say(
                f"  offered {load.offered_eps:,.0f}, processed {load.processed_eps:,.0f} "
                f"events/s, lag growing {load.lag_growth_eps:,.0f} events/s"
            )
            bench.drain(job)
            say(f"latency: {latency_rate:,.0f} events/s for {latency_seconds:.0f} s...")
            quiet = bench.load_phase(
                job, rate=latency_rate, seconds=latency_seconds, warmup_s=min(5, warmup_s)
            )
            bench.drain(job)
        finally:
            job.stop()
        # The job was drained before the phase: its events are in the batches started since.
        carried = [b for b in job.writers[stream].stats.recent if b.started_at >= quiet.started_at]
        gold, wh, latency_events = _latencies(spark, bench_settings, stream, carried)
        say(f"  to gold p50 {gold[0]:.2f} s, p95 {gold[1]:.2f} s")
        total = bench.produced()
        say(f"capacity: the job from the earliest offset over the same {total:,} events...")
        capacity_settings = bench_settings.model_copy(
            update={
                "lake": settings.lake.model_copy(update={"uri": f"file://{root}/lake2"}),
                "stream": bench_settings.stream.model_copy(
                    update={"checkpoint_uri": f"file://{root}/checkpoints2"}
                ),
            }
        )
        job_eps = job_capacity(spark, capacity_settings, stream, total, say)
        say("reference: Spark pass-through, Kafka → Parquet...")
        passthrough_eps = _passthrough(spark, bench_settings, stream, total)
        say(f"  {passthrough_eps:,.0f} events/s")
    finally:
        admin.delete(topics)
        warehouse.delete_stream(stream)
        shutil.rmtree(root, ignore_errors=True)
    durations = [b.duration_s for b in load.batches]
    p50, p95 = _percentiles(durations, 0.5, 0.95)
    return {
        "sustained_eps": round(load.processed_eps, 1),
        "offered_eps": round(load.offered_eps, 1),
        "lag_growth_eps": round(load.lag_growth_eps, 1),
        "lag_stable": abs(load.lag_growth_eps) < 0.02 * load.offered_eps,
        "final_lag": load.final_lag,
        "batches": len(durations),
        "batch_p50_s": p50,
        "batch_p95_s": p95,
        "latency_rate_eps": round(quiet.offered_eps, 1),
        "latency_events": latency_events,
        "latency_p50_s": round(gold[0], 3),
        "latency_p95_s": round(gold[1], 3),
        "warehouse_latency_p50_s": round(wh[0], 3),
        "warehouse_latency_p95_s": round(wh[1], 3),
        "job_eps": round(job_eps, 1),
        "passthrough_eps": round(passthrough_eps, 1),
        "ratio": round(job_eps / passthrough_eps, 3),
        "events": total,
        "seconds": seconds,
        "trigger_interval_s": settings.stream.trigger_interval_s,
        "max_offsets_per_trigger": settings.stream.max_offsets_per_trigger,
        "partitions": bench.partitions,
        "shuffle_partitions": settings.spark.shuffle_partitions,
        "scoring": scoring,
        "cpus": os.cpu_count(),
    }

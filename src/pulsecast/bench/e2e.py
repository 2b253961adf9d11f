"""`pulsecast bench e2e`: the streaming job under load, against Spark's own pass-through.

In one run, on the local Kafka and PostgreSQL (started if needed), with a
fresh stream, lake and checkpoint of its own, after a warm-up (10 s of load
at ``latency_rate``, drained, then every query let go idle: a cold JVM's
first batches are not the steady state):

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
   (``passthrough_eps``). ``ratio = job_eps / passthrough_eps``. The job's
   rate after its first batch, which pays for the query's start, is
   ``job_steady_eps``. With live scoring, the job runs its scoring query
   too, on the same cores; it then runs once more without it, another fresh
   lake: ``stream_eps``, ``stream_steady_eps`` and ``stream_ratio``, the
   stream processing (parse, bronze, silver, gold, warehouse) alone, as the
   pass-through runs alone.

With ``forecasts``, before all that, the stream is given a forecaster
champion the way a user would give one: a few hours of simulated history of
the benchmark's machines are backfilled into its lake
(:func:`~pulsecast.stream.backfill.backfill_simulated`, ending now, so the
live events continue it), and a forecaster is trained on them and promoted
(:func:`~pulsecast.ml.train.train`) into a registry of the run's own. The
scoring query then forecasts every window mean it scores, live; the result
counts the forecasts made while the sustained load was measured. None of
this preparation is timed (the scoring query's first batch, which scores
and forecasts the whole history, runs in the warm-up), and the sustained
load starts once its first events close the warm-up's windows (a lateness
after their end), so that a forecasting pass falls in the measured window.
The capacity run's fresh lake has no history: its forecasts lack the
features that look back before the load.

Topics, lake, registry and warehouse rows of the run are removed at the end.
"""

from __future__ import annotations

import dataclasses
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
from pulsecast.bus.clients import spark_kafka_source_options
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
    "ENTITIES",
    "BenchmarkError",
    "ForecastCounts",
    "bench_settings",
    "forecast_fields",
    "job_capacity",
    "resolve_scoring",
    "run_e2e_benchmark",
    "run_settings",
    "telemetry_records",
]

Say = Callable[[str], None]
#: Machines of the benchmark's load, ``m-0000`` to ``m-0099``: the ids the fleet simulator
#: gives them too, so a backfilled history (``forecasts``) is theirs.
ENTITIES = 100
_TEMPLATE = (
    '{"event_id":"%s-%d","event_time":"%sZ","payload":{"entity_id":"m-%04d",'
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


def resolve_scoring(scoring: bool | None, *, forecasts: bool, default: bool) -> bool:
    """Whether the job scores: as asked, else ``default``; live forecasts need scoring.

    >>> resolve_scoring(None, forecasts=True, default=False)
    True

    Raises:
        ValueError: Forecasts were asked for with scoring off.
    """
    if forecasts and scoring is False:
        msg = "--forecasts needs live scoring (the scoring query forecasts): drop --no-scoring"
        raise ValueError(msg)
    if forecasts:
        return True
    return default if scoring is None else scoring


def bench_settings(
    settings: Settings, stream: str, root: Path, *, scoring: bool, forecasts: bool = False
) -> Settings:
    """The run's settings: :func:`run_settings`, scoring and live forecasts as asked.

    The model registry and its files are the run's own, under ``root`` (removed
    with it), never the user's. With ``forecasts`` the job does not retrain
    (neither on a schedule nor on drift): the benchmark measures forecasting,
    and the champion is the one it trained.

    Raises:
        ValueError: ``forecasts`` without ``scoring``.
    """
    if forecasts and not scoring:
        msg = "live forecasts need live scoring (the scoring query makes them)"
        raise ValueError(msg)
    own = run_settings(settings, stream, root)
    ml = own.ml.model_copy(
        update={
            "detector": own.ml.detector.model_copy(update={"enabled": scoring}),
            "live_forecasts": forecasts,
            "registry_uri": f"sqlite:///{root / 'mlflow' / 'registry.db'}",
            "artifact_uri": (root / "mlflow" / "artifacts").as_uri(),
            **({"retrain_interval_min": 0.0, "retrain_on_drift": False} if forecasts else {}),
        }
    )
    return own.model_copy(update={"ml": ml})


@dataclass(frozen=True)
class ForecastCounts:
    """What the live forecasting of a run did (forecasts are 0 without them; all, without scoring).

    Attributes:
        champion_version: The forecaster version trained and promoted for the run.
        history_events: Events of the backfilled history it was trained on.
        made: Forecasts the live job's scoring made in all (the history's windows too).
        sustained: Forecasts made within the sustained phase's measured window.
        scored_sustained: Windows scored within that window.
        capacity: Forecasts made during the capacity run.
    """

    champion_version: int | None = None
    history_events: int = 0
    made: int = 0
    sustained: int = 0
    scored_sustained: int = 0
    capacity: int = 0


def forecast_fields(forecasts: bool, counts: ForecastCounts) -> dict[str, Any]:
    """The result's keys on live forecasting: whether they ran, and how many were made.

    >>> forecast_fields(False, ForecastCounts())["forecasts"]
    False
    """
    return {
        "forecasts": forecasts,
        "forecast_model_version": counts.champion_version,
        "history_events": counts.history_events,
        "forecasts_made": counts.made,
        "forecasts_sustained": counts.sustained,
        "scored_sustained": counts.scored_sustained,
        "forecasts_capacity": counts.capacity,
    }


def telemetry_records(
    count: int, *, rate: float, entities: int = ENTITIES, run: str = "b", seed: int = 7
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
    scored: int = 0  # windows the scoring query scored in the measured window
    forecasts: int = 0  # of which forecast live


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
        scorer = job.scorers.get(self.stream)
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
            # (t, produced, processed, scored, forecast)
            samples: list[tuple[float, int, int, int, int]] = []
            while not parent.poll(1.0):
                job.poll()
                t = time.monotonic() - started
                produced = self.produced() - base_produced
                scored, forecast = (
                    (scorer.stats.scored, scorer.stats.forecasts) if scorer else (0, 0)
                )
                samples.append(
                    (t, produced, writer.stats.records - base_processed, scored, forecast)
                )
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
        (t0, _, done0, scored0, forecast0), (t1, _, done1, scored1, forecast1) = (
            measured[0],
            measured[-1],
        )
        lag = [(t, float(p - d)) for t, p, d, _, _ in measured]
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
            scored=scored1 - scored0,
            forecasts=forecast1 - forecast0,
        )

    def settle(self, job: StreamJob, *, timeout_s: float = 600) -> None:
        """Wait until every query of ``job`` is idle, the scoring query's included.

        After the warm-up: the scoring query's first batch reads all of silver,
        which with ``forecasts`` holds hours of history to score and forecast.
        That must not run in the measured window.
        """
        deadline = time.monotonic() + timeout_s
        while not job.idle():
            job.poll()
            if time.monotonic() > deadline:
                msg = f"the job did not go idle after the warm-up within {timeout_s:.0f} s"
                raise BenchmarkError(msg)
            time.sleep(0.5)

    def idle_until(self, job: StreamJob, wall_s: float) -> None:
        """Keep ``job`` polled until the wall clock reaches ``wall_s`` (epoch seconds)."""
        while time.time() < wall_s:
            job.poll()
            time.sleep(min(0.5, max(0.0, wall_s - time.time())))

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


def _window_end(epoch_s: float, window_s: int) -> int:
    """End of the tumbling window of ``window_s`` that holds ``epoch_s`` (epoch seconds).

    >>> _window_end(125.0, 60), _window_end(120.0, 60)
    (180, 180)
    """
    return (int(epoch_s) // window_s + 1) * window_s


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
    bronze, silver, gold and the warehouse, as configured, but runs its
    batches back to back (``stream.trigger_interval_s`` 0), as the
    pass-through does: the configured interval would hold a catch-up to
    ``stream.max_offsets_per_trigger`` records per interval (200,000 a
    second by default), a pace rather than what the job can do.

    Raises:
        BenchmarkError: The catch-up took over 30 minutes.
    """
    return _capacity(spark, settings, stream, total, say)[0]


def steady_eps(batches: list[BatchTimes]) -> float | None:
    """Events/s over ``batches`` after the first: from its end to the last one's.

    The first batch of a query pays for its start (code generation, the
    first reads of its tables); what follows is the rate it keeps. None
    with fewer than two batches.
    """
    if len(batches) < 2:
        return None
    ordered = sorted(batches, key=lambda b: b.batch_id)
    elapsed = ordered[-1].warehouse_at - ordered[0].warehouse_at
    return sum(b.records for b in ordered[1:]) / elapsed if elapsed > 0 else None


def _capacity(
    spark: SparkSession, settings: Settings, stream: str, total: int, say: Say
) -> tuple[float, int, float | None]:
    """:func:`job_capacity`, then the forecasts made meanwhile and :func:`steady_eps`."""
    unpaced = settings.stream.model_copy(update={"trigger_interval_s": 0.0})
    settings = settings.model_copy(update={"stream": unpaced})
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
    scorer = job.scorers.get(stream)
    forecasts = scorer.stats.forecasts if scorer else 0
    made = f", {forecasts:,} forecasts" if settings.ml.live_forecasts and scorer else ""
    steady = steady_eps(list(writer.stats.recent))
    after = "" if steady is None else f", {steady:,.0f} after the first"
    say(f"  {total / elapsed:,.0f} events/s ({writer.stats.batches} batches{made}{after})")
    return total / elapsed, forecasts, steady


def _fresh_lake(settings: Settings, root: Path, suffix: str, *, scoring: bool = True) -> Settings:
    """``settings`` with a lake and checkpoints of their own under ``root``, scoring as asked."""
    update: dict[str, Any] = {
        "lake": settings.lake.model_copy(update={"uri": f"file://{root}/lake{suffix}"}),
        "stream": settings.stream.model_copy(
            update={"checkpoint_uri": f"file://{root}/checkpoints{suffix}"}
        ),
    }
    if not scoring:
        detector = settings.ml.detector.model_copy(update={"enabled": False})
        update["ml"] = settings.ml.model_copy(update={"detector": detector})
    return settings.model_copy(update=update)


def _give_champion(
    spark: SparkSession, settings: Settings, stream: str, *, hours: float, say: Say
) -> tuple[int, int]:
    """Backfill ``hours`` of the load's machines into ``stream``, train and promote a forecaster.

    Returns:
        The champion's version and the history's events.

    Raises:
        BenchmarkError: The forecaster was not promoted (the registry's gate refused it).
    """
    from pulsecast.ml.train import train
    from pulsecast.stream.backfill import backfill_simulated

    say(f"forecasts: backfilling {hours:g} h of {ENTITIES} simulated machines...")
    history = backfill_simulated(spark, settings, stream, days=hours / 24, entities=ENTITIES)
    say(f"  {history.events:,} events in {history.seconds:.0f} s; training a forecaster...")
    report = train(spark, settings, stream, kinds=["forecaster"], promote=True, progress=say)
    model = report.models[0]
    if not model.promoted:
        msg = (
            f"the benchmark's forecaster (version {model.version}, trained on {hours:g} h of "
            f"history) was not promoted: {model.decision}; no live forecasts to measure"
        )
        raise BenchmarkError(msg)
    say(f"  version {model.version} is champion ({model.decision}, {model.seconds:.0f} s)")
    return model.version, history.events


def _passthrough(spark: SparkSession, settings: Settings, stream: str, total: int) -> float:
    """Spark's minimal pass-through of the same records: Kafka → Parquet, no parsing.

    It reads with the job's source options (the same fetch wait), so the two
    read alike.
    """
    out = settings.data_dir / "bench" / stream / "passthrough"
    query = (
        spark.readStream.format("kafka")
        .options(**spark_kafka_source_options(settings))
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
    forecasts: bool = False,
    history_hours: float = 3.0,
    say: Say = lambda _t: None,
) -> dict[str, Any]:
    """Run the three measurements; see the module's description.

    With ``scoring`` (the default, as ``ml.detector.enabled``) the job runs
    its live anomaly scoring too; without it, the job alone: the two give the
    scoring's overhead. With ``forecasts`` (needs ``scoring``) the scoring
    forecasts live too, with a champion trained first on ``history_hours`` of
    backfilled history (untimed).

    Returns:
        ``sustained_eps``, ``batch_p50_s``, ``batch_p95_s``, ``latency_p50_s``,
        ``latency_p95_s`` (to gold), ``warehouse_latency_p50_s``/``p95_s``,
        ``job_eps``, ``job_steady_eps`` (the same after its first batch),
        ``passthrough_eps``, ``ratio``, ``stream_eps``, ``stream_steady_eps``
        and ``stream_ratio`` (the capacity without live scoring: the job's
        stream processing alone, as the pass-through runs), the forecasting counts
        (:func:`forecast_fields`) and the run's parameters.

    Raises:
        BenchmarkError: A phase failed (the message says which), or the
            forecaster trained for ``forecasts`` was not promoted.
        ValueError: ``forecasts`` without ``scoring``.
    """
    from pulsecast.stream.session import spark_session
    from pulsecast.warehouse.schema import Warehouse

    run = uuid.uuid4().hex[:8]
    stream = f"bench{run}"
    root = settings.data_dir / "bench" / stream
    own = bench_settings(settings, stream, root, scoring=scoring, forecasts=forecasts)
    say("starting kafka and postgres...")
    KafkaService(settings).start()
    PostgresService(settings).start()
    bench = _Bench(own, run)
    admin = TopicAdmin(settings)
    specs = [
        TopicSpec(topic_name(stream, kind), bench.partitions if kind == "events" else 1, 3_600_000)
        for kind in TOPIC_KINDS
    ]
    topics = [spec.name for spec in specs]
    admin.ensure(specs)
    warehouse = Warehouse(own)
    counts = ForecastCounts()
    try:
        spark = spark_session(own, app_name="pulsecast-bench")
        if forecasts:
            version, history = _give_champion(spark, own, stream, hours=history_hours, say=say)
            counts = ForecastCounts(champion_version=version, history_events=history)
        job = StreamJob(spark, own, streams=[stream])
        job.start()
        try:
            # A cold JVM's first batches take tens of seconds: not the steady state.
            say(f"warm-up: {latency_rate:,.0f} events/s for 10 s...")
            warm = bench.load_phase(job, rate=latency_rate, seconds=10, warmup_s=0)
            bench.drain(job)
            bench.settle(job)
            scorer = job.scorers.get(stream)
            if scorer is not None:
                say(
                    f"  idle; {scorer.stats.scored:,} windows scored"
                    + (f", {scorer.stats.forecasts:,} forecast" if forecasts else "")
                    + " so far"
                )
            if forecasts:
                # Forecasts are made as the scoring closes windows, a lateness after their
                # end in event time. Start the load once its first events close the
                # warm-up's windows: then a forecasting pass falls in the measured window.
                detector = own.ml.detector
                delay_s = (
                    own.stream.allowed_lateness_s if detector.delay_s is None else detector.delay_s
                )
                closes_at = _window_end(warm.started_at + 10, detector.window_s) + delay_s + 1
                say(f"  {max(0, closes_at - time.time()):.0f} s until events close the warm-up")
                bench.idle_until(job, closes_at)
            say(f"sustained: {rate:,.0f} events/s for {seconds:.0f} s (generating events first)...")
            load = bench.load_phase(job, rate=rate, seconds=seconds, warmup_s=warmup_s)
            say(
                f"  offered {load.offered_eps:,.0f}, processed {load.processed_eps:,.0f} "
                f"events/s, lag growing {load.lag_growth_eps:,.0f} events/s"
                + (f"; {load.forecasts:,} forecasts" if forecasts else "")
            )
            bench.drain(job)
            say(f"latency: {latency_rate:,.0f} events/s for {latency_seconds:.0f} s...")
            quiet = bench.load_phase(
                job, rate=latency_rate, seconds=latency_seconds, warmup_s=min(5, warmup_s)
            )
            bench.drain(job)
        finally:
            job.stop()
        if scorer is not None:
            counts = dataclasses.replace(
                counts,
                made=scorer.stats.forecasts,
                sustained=load.forecasts,
                scored_sustained=load.scored,
            )
        # The job was drained before the phase: its events are in the batches started since.
        carried = [b for b in job.writers[stream].stats.recent if b.started_at >= quiet.started_at]
        gold, wh, latency_events = _latencies(spark, own, stream, carried)
        say(f"  to gold p50 {gold[0]:.2f} s, p95 {gold[1]:.2f} s")
        total = bench.produced()
        say(f"capacity: the job from the earliest offset over the same {total:,} events...")
        job_eps, capacity_forecasts, job_steady = _capacity(
            spark, _fresh_lake(own, root, "2"), stream, total, say
        )
        counts = dataclasses.replace(counts, capacity=capacity_forecasts)
        stream_eps, stream_steady = job_eps, job_steady
        if scoring:
            say("  the same without live scoring (parse, bronze, silver, gold, warehouse)...")
            alone = _fresh_lake(own, root, "3", scoring=False)
            stream_eps, _, stream_steady = _capacity(spark, alone, stream, total, say)
        say("reference: Spark pass-through, Kafka → Parquet...")
        passthrough_eps = _passthrough(spark, own, stream, total)
        say(f"  {passthrough_eps:,.0f} events/s")
    finally:
        admin.delete(topics)
        warehouse.delete_stream(stream)
        shutil.rmtree(root, ignore_errors=True)  # the lake, checkpoints and registry
        # The backfill's ground-truth labels and the registry's download cache of the
        # run's model live in the data directory, outside the run's folder.
        for labels in (settings.data_dir / "simulator").glob(f"backfill-{stream}-*.jsonl"):
            labels.unlink(missing_ok=True)
        for cached in (settings.data_dir / "mlflow" / "cache").glob(f"{stream}-*"):
            shutil.rmtree(cached, ignore_errors=True)
    durations = [b.duration_s for b in load.batches]
    p50, p95 = _percentiles(durations, 0.5, 0.95)
    # The ratios of the rates as reported, so that they recompute from the output.
    job_rate, alone_rate, reference = (
        round(eps, 1) for eps in (job_eps, stream_eps, passthrough_eps)
    )
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
        "job_eps": job_rate,
        "job_steady_eps": None if job_steady is None else round(job_steady, 1),
        "passthrough_eps": reference,
        "ratio": round(job_rate / reference, 3),
        "stream_eps": alone_rate,
        "stream_steady_eps": None if stream_steady is None else round(stream_steady, 1),
        "stream_ratio": round(alone_rate / reference, 3),
        "events": total,
        "seconds": seconds,
        "trigger_interval_s": settings.stream.trigger_interval_s,
        "capacity_trigger_interval_s": 0.0,
        "max_offsets_per_trigger": settings.stream.max_offsets_per_trigger,
        "partitions": bench.partitions,
        "shuffle_partitions": settings.spark.shuffle_partitions,
        "scoring": scoring,
        **forecast_fields(forecasts, counts),
        "cpus": os.cpu_count(),
    }

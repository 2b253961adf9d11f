"""`pulsecast bench security`: what secure mode costs, ingest and end to end, in one run.

The benchmark starts two local stacks of its own, side by side, each with its
own data directory and free ports in a temporary folder (never the user's
stack): a **plain** one and a **secure** one (``security.enabled``, after the
CA, certificates and keystore are created as ``pulsecast up --secure`` does).
Everything else is the same: the settings the command runs with, the same
PostgreSQL binaries on both sides (the secure side needs a build with TLS, so
the plain side uses it too), the same records, the same job and Spark session
settings. Then, alternating the sides (plain first in odd repeats, secure
first in even ones, so both see the same load on a shared machine):

1. ``ingest_producer``: pulsecast's Python producer, the same simulated events
   (:func:`pulsecast.bench.ingest.measure_producer`): plaintext vs SASL_SSL
   with SCRAM-SHA-512 and ACLs.
2. ``ingest_http``: a fresh ``pulsecast serve`` taking the same events in
   batches (:func:`pulsecast.bench.ingest.measure_http`): HTTP vs HTTPS with an
   API key check (rate limits off on both sides: they cap throughput by
   choice, they do not cost it).
3. ``e2e``: the streaming job from the earliest offset over the same backlog
   until it has processed it all, into bronze, silver, gold and the warehouse
   (:func:`pulsecast.bench.e2e.job_capacity`, ``bench e2e``'s ``job_eps``):
   plain vs Kafka over SASL_SSL, PostgreSQL over TLS with role passwords, and
   bronze and silver written with Parquet modular encryption. Each side runs
   its job in a process of its own (one SparkSession each, warmed up on a
   smaller backlog first); each repeat starts from a fresh lake, checkpoint
   and warehouse.

Each figure is the median of its repeats; ``ratio`` is secure / plain, and
``meets_target`` says whether it is at least the target (0.7). The load
averages of the machine are sampled around every measurement. At the end the
stacks are stopped and the temporary folder removed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import shutil
import socket
import statistics
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pulsecast.bench.e2e import BenchmarkError, run_settings, telemetry_records
from pulsecast.bench.ingest import bench_events, bench_stream, measure_http, measure_producer
from pulsecast.bus.admin import TopicAdmin
from pulsecast.bus.producer import EventProducer
from pulsecast.bus.topics import topic_specs
from pulsecast.config import Settings
from pulsecast.security import mode
from pulsecast.services.kafka import KafkaService
from pulsecast.services.postgres import PostgresService, server_bin_dir

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = [
    "FIGURES",
    "TARGET",
    "LoadSample",
    "check_sizes",
    "compare",
    "report_lines",
    "run_security_benchmark",
    "security_report",
    "side_settings",
]

log = logging.getLogger(__name__)

Say = Callable[[str], None]
Side = Literal["plain", "secure"]
SIDES: tuple[Side, Side] = ("plain", "secure")

#: The figures compared, in report order, with what each measures.
FIGURES: dict[str, str] = {
    "ingest_producer": "python producer -> Kafka",
    "ingest_http": "HTTP ingest -> Kafka",
    "e2e": "stream job, Kafka -> lake + warehouse",
}
#: The issue's target: secure throughput at least this fraction of plain.
TARGET = 0.7
#: What the secure side runs with (the plain side has none of it).
SECURE_SIDE = [
    "Kafka: SASL_SSL listener (TLS), SCRAM-SHA-512 principals, ACL authorizer",
    "PostgreSQL: TLS only (hostssl, TLSv1.3), SCRAM-SHA-256 role passwords",
    "HTTP ingest: HTTPS, API key checked on every request (rate limits off)",
    "lake: Parquet modular encryption (AES-GCM) of bronze and silver",
]


# -- the pure part: sizes, comparison, report ------------------------------------------------


def check_sizes(
    *,
    events: int,
    http_events: int,
    http_batch: int,
    e2e_events: int,
    warmup_events: int,
    repeats: int,
    target: float,
) -> None:
    """Fail fast on sizes the benchmark cannot measure.

    Raises:
        ValueError: A size is out of range; the message names it, what was
            received and what is expected.
    """
    floors = {
        "events": (events, 1_000),
        "http_events": (http_events, 1_000),
        "http_batch": (http_batch, 1),
        "e2e_events": (e2e_events, 1_000),
        "warmup_events": (warmup_events, 0),
        "repeats": (repeats, 1),
    }
    for name, (value, floor) in floors.items():
        if value < floor:
            msg = f"{name} must be at least {floor:,}, got {value:,}"
            raise ValueError(msg)
    if http_batch > http_events:
        msg = f"http_batch must be at most http_events ({http_events:,}), got {http_batch:,}"
        raise ValueError(msg)
    if not 0 < target <= 1:
        msg = f"target must be in (0, 1], got {target}"
        raise ValueError(msg)


def compare(
    plain: Sequence[float], secure: Sequence[float], *, target: float = TARGET
) -> dict[str, Any]:
    """One figure, plain vs secure: the medians of the repeats and their ratio.

    >>> compare([100.0, 90.0, 110.0], [80.0, 70.0, 75.0])["ratio"]
    0.75

    Raises:
        ValueError: A side has no run, or plain's median is not positive.
    """
    if not plain or not secure:
        msg = f"both sides need runs, got {len(plain)} plain and {len(secure)} secure"
        raise ValueError(msg)
    p, s = statistics.median(plain), statistics.median(secure)
    if p <= 0:
        msg = f"the plain median must be positive, got {p}"
        raise ValueError(msg)
    ratio = s / p
    return {
        "plain_eps": round(p, 1),
        "secure_eps": round(s, 1),
        "ratio": round(ratio, 3),
        "meets_target": ratio >= target,
        "plain_runs": [round(v, 1) for v in plain],
        "secure_runs": [round(v, 1) for v in secure],
        "repeats": min(len(plain), len(secure)),
    }


@dataclass
class LoadSample:
    """The machine's load averages (1, 5, 15 min) around one measurement."""

    figure: str
    side: Side
    repeat: int
    before: tuple[float, float, float]
    after: tuple[float, float, float]


def _load_summary(
    start: tuple[float, float, float],
    end: tuple[float, float, float],
    samples: Sequence[LoadSample],
) -> dict[str, Any]:
    ones = [v for s in samples for v in (s.before[0], s.after[0])] or [start[0], end[0]]
    return {
        "start": [round(v, 2) for v in start],
        "end": [round(v, 2) for v in end],
        "min_1m": round(min(ones), 2),
        "max_1m": round(max(ones), 2),
        "cpus": os.cpu_count(),
        "samples": [
            {
                "figure": s.figure,
                "side": s.side,
                "repeat": s.repeat,
                "before": [round(v, 2) for v in s.before],
                "after": [round(v, 2) for v in s.after],
            }
            for s in samples
        ],
    }


def security_report(
    runs: dict[str, dict[Side, list[float]]],
    *,
    target: float = TARGET,
    load_start: tuple[float, float, float],
    load_end: tuple[float, float, float],
    samples: Sequence[LoadSample] = (),
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The benchmark's JSON object: each figure of :data:`FIGURES` compared, load, parameters.

    Args:
        runs: For each figure, the events/s of every repeat on each side.
        target: The ratio each figure should reach.
        load_start: Load averages when the run began.
        load_end: Load averages when it ended.
        samples: Load averages around each measurement.
        parameters: Sizes and settings of the run.

    Raises:
        ValueError: A figure of :data:`FIGURES` is missing.
    """
    missing = [name for name in FIGURES if name not in runs]
    if missing:
        msg = f"no runs for {', '.join(missing)}"
        raise ValueError(msg)
    figures = {
        name: compare(runs[name]["plain"], runs[name]["secure"], target=target) for name in FIGURES
    }
    return {
        **figures,
        "target": target,
        "all_meet_target": all(f["meets_target"] for f in figures.values()),
        "load": _load_summary(load_start, load_end, samples),
        "secure_side": SECURE_SIDE,
        "parameters": parameters or {},
    }


def report_lines(result: dict[str, Any]) -> list[str]:
    """The report as a table for a terminal: one line per figure, then the load."""
    target = result["target"]
    lines = [f"{'figure':<40} {'plain eps':>11} {'secure eps':>11} {'ratio':>6}  target {target}"]
    for name, label in FIGURES.items():
        f = result[name]
        verdict = "meets" if f["meets_target"] else "MISSES"
        lines.append(
            f"{name + ' (' + label + ')':<40} {f['plain_eps']:>11,.0f} "
            f"{f['secure_eps']:>11,.0f} {f['ratio']:>6.2f}  {verdict}"
        )
    load = result["load"]
    lines.append(
        f"medians of {result['e2e']['repeats']} repeats per side; load average (1 min) "
        f"{load['min_1m']}-{load['max_1m']} on {load['cpus']} cpus"
    )
    return lines


# -- the two stacks ---------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def side_settings(
    base: Settings, root: Path, *, secure: bool, ports: Sequence[int], pg_bin_dir: Path | None
) -> Settings:
    """``base`` for one side of the benchmark: its own local servers, state and switch.

    Args:
        base: The settings the command runs with (job, Spark, Kafka client options).
        root: The side's data directory.
        secure: Whether the side runs in secure mode.
        ports: Free ports: Kafka, its controller, PostgreSQL, the ingest.
        pg_bin_dir: The PostgreSQL binaries both sides run.

    Returns:
        Settings with local servers on ``ports`` (never an external cluster or
        DSN), state under ``root``, the security switch as asked, rate limits
        off, no job metrics server.
    """
    kafka_port, controller_port, pg_port, ingest_port = ports
    k, pg = base.kafka, base.postgres
    sec = base.security.model_copy(
        update={
            "enabled": secure,
            "dir": None,
            "encrypt_lake": None,
            "key_rate_per_s": 0.0,
            "address_rate_per_s": 0.0,
        }
    )
    return base.model_copy(
        update={
            "paths": base.paths.model_copy(update={"data_dir": root}),
            "kafka": k.model_copy(
                update={
                    "bootstrap_servers": None,
                    "port": kafka_port,
                    "controller_port": controller_port,
                    # A TLS broker starts in 30-40 s on a busy 2-core machine.
                    "start_timeout_s": max(k.start_timeout_s, 180.0),
                }
            ),
            "postgres": pg.model_copy(update={"dsn": None, "port": pg_port, "bin_dir": pg_bin_dir}),
            "ingest": base.ingest.model_copy(update={"port": ingest_port, "tls": secure}),
            "dashboard": base.dashboard.model_copy(update={"tls": secure}),
            "security": sec,
            "lake": base.lake.model_copy(update={"uri": None}),
            "stream": base.stream.model_copy(update={"checkpoint_uri": None}),
            "monitoring": base.monitoring.model_copy(update={"job_metrics_port": 0}),
        }
    )


@dataclass
class _Stack:
    """One side's Kafka and PostgreSQL."""

    side: Side
    settings: Settings
    started: list[KafkaService | PostgresService] = field(default_factory=list)

    def up(self) -> None:
        if self.settings.security.enabled:
            mode.initialise(self.settings)
        for service in (KafkaService(self.settings), PostgresService(self.settings)):
            self.started.append(service)
            service.start()

    def down(self) -> None:
        for service in reversed(self.started):
            try:
                service.stop()
            except Exception:
                log.exception("could not stop the benchmark's %s (%s)", service.name, self.side)


# -- the end-to-end worker: one process and one SparkSession per side -------------------------


def _e2e_worker(
    settings: Settings, stream: str, total: int, warmup: tuple[str, int] | None, pipe: Connection
) -> None:
    """Child process: a SparkSession, a warm-up pass, then one capacity run per request."""
    try:
        from pulsecast.bench.e2e import job_capacity
        from pulsecast.stream.session import spark_session
        from pulsecast.warehouse.schema import Warehouse

        spark = spark_session(settings, app_name="pulsecast-bench-security")
        warehouse = Warehouse(settings)
        warehouse.migrate()
        runs = 0

        def capacity(name: str, count: int) -> float:
            nonlocal runs
            runs += 1
            root = settings.data_dir / "bench" / f"e2e-{runs}"
            try:
                warehouse.delete_stream(name)
                return job_capacity(spark, run_settings(settings, name, root), name, count)
            finally:
                warehouse.delete_stream(name)
                shutil.rmtree(root, ignore_errors=True)

        if warmup is not None:
            capacity(*warmup)
        pipe.send("ready")
        while pipe.recv() == "run":
            pipe.send(capacity(stream, total))
        spark.stop()
    except Exception as exc:  # reported to the parent, which fails the run with it
        log.exception("the benchmark's %s job failed", stream)
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})


class _Worker:
    """The parent's handle on one side's e2e process."""

    def __init__(
        self, settings: Settings, stream: str, total: int, warmup: tuple[str, int] | None
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(
            target=_e2e_worker, args=(settings, stream, total, warmup, child), daemon=True
        )
        self.process.start()

    def _answer(self, timeout_s: float) -> Any:
        if not self.pipe.poll(timeout_s):
            msg = f"the benchmark's job process did not answer within {timeout_s:.0f} s"
            raise BenchmarkError(msg)
        try:
            answer = self.pipe.recv()
        except EOFError:
            code = self.process.exitcode
            msg = f"the benchmark's job process ended without an answer (exit code {code})"
            raise BenchmarkError(msg) from None
        if isinstance(answer, dict) and "error" in answer:
            raise BenchmarkError(answer["error"])
        return answer

    def ready(self) -> None:
        self._answer(1800)

    def run(self) -> float:
        self.pipe.send("run")
        return float(self._answer(1800))

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.pipe.send("stop")
        self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=30)


def _produce(settings: Settings, stream: str, records: list[bytes]) -> None:
    with EventProducer(settings, source="bench") as producer:
        report = producer.send_json(stream, records)
        producer.flush()
    if report.rejected:
        msg = f"backlog events were rejected: {dict(report.reasons)}"
        raise BenchmarkError(msg)


@contextlib.contextmanager
def _job_topics(settings: Settings, stream: str) -> Iterator[Settings]:
    """``stream``'s four topics (the telemetry schema) on ``settings``' broker, deleted on exit."""
    with_stream = settings.model_copy(
        update={"streams": {**settings.streams, stream: settings.streams["telemetry"]}}
    )
    admin = TopicAdmin(with_stream)
    specs = topic_specs(with_stream, [stream])
    admin.ensure(specs)
    try:
        yield with_stream
    finally:
        admin.delete([s.name for s in specs])


# -- the run ----------------------------------------------------------------------------------


def _order(repeat: int) -> tuple[Side, Side]:
    """Plain first in odd repeats, secure first in even ones (ABBA)."""
    return SIDES if repeat % 2 else (SIDES[1], SIDES[0])


def run_security_benchmark(
    settings: Settings,
    *,
    events: int = 500_000,
    http_events: int = 200_000,
    http_batch: int = 500,
    http_concurrency: int = 4,
    e2e_events: int = 300_000,
    warmup_events: int = 30_000,
    repeats: int = 3,
    target: float = TARGET,
    work_dir: Path | None = None,
    say: Say = lambda _t: None,
) -> dict[str, Any]:
    """Run the three comparisons; see the module's description.

    Args:
        settings: The settings the command runs with; each side copies them.
        events: Events per producer run.
        http_events: Events per HTTP ingest run.
        http_batch: Events per HTTP request.
        http_concurrency: Concurrent HTTP clients.
        e2e_events: The backlog the job processes in each e2e run.
        warmup_events: The backlog of each side's untimed warm-up run (0: none).
        repeats: Runs per figure and side; figures are their medians.
        target: The ratio secure / plain each figure should reach.
        work_dir: Where the two stacks keep their state (removed at the end);
            default a new temporary folder.
        say: Progress lines.

    Returns:
        See :func:`security_report`.

    Raises:
        ValueError: A size is out of range.
        BenchmarkError: A phase failed (the message says which).
    """
    check_sizes(
        events=events,
        http_events=http_events,
        http_batch=http_batch,
        e2e_events=e2e_events,
        warmup_events=warmup_events,
        repeats=repeats,
        target=target,
    )
    load_start = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="pulsecast-bench-security-", dir=work_dir))
    samples: list[LoadSample] = []
    runs: dict[str, dict[Side, list[float]]] = {
        name: {"plain": [], "secure": []} for name in FIGURES
    }

    def measure(figure: str, side: Side, repeat: int, how: Callable[[], float]) -> None:
        before = os.getloadavg()
        eps = how()
        samples.append(LoadSample(figure, side, repeat, before, os.getloadavg()))
        runs[figure][side].append(eps)
        say(f"  {figure} {side:<6} #{repeat}: {eps:,.0f} events/s (load {before[0]:.2f})")

    secure_probe = settings.model_copy(
        update={"security": settings.security.model_copy(update={"enabled": True})}
    )
    pg_bin_dir = server_bin_dir(secure_probe)
    ports = _free_ports(8)
    stacks = {
        side: _Stack(
            side,
            side_settings(
                settings,
                root / side,
                secure=side == "secure",
                ports=ports[4 * i : 4 * i + 4],
                pg_bin_dir=pg_bin_dir,
            ),
        )
        for i, side in enumerate(SIDES)
    }
    try:
        with contextlib.ExitStack() as cleanup:
            for side, stack in stacks.items():
                say(f"starting the {side} stack (kafka, postgres) in {root / side}...")
                cleanup.callback(stack.down)
                stack.up()
            say(f"generating {max(events, http_events):,} events...")
            data = bench_events(settings, max(events, http_events))
            ingest = {
                side: cleanup.enter_context(bench_stream(stack.settings))
                for side, stack in stacks.items()
            }
            # A fresh broker's first producer waits for its coordinator: not the steady state.
            say("ingest: warming each side up (1,000 events through the producer, not timed)...")
            for s, name in ingest.values():
                measure_producer(s, name, data[:1_000])
            say(f"ingest: {repeats} x {events:,} events through the producer, each side...")
            for repeat in range(1, repeats + 1):
                for side in _order(repeat):
                    s, name = ingest[side]
                    how = functools.partial(measure_producer, s, name, data[:events])
                    measure("ingest_producer", side, repeat, how)
            say(f"ingest: {repeats} x {http_events:,} events over HTTP(S), each side...")
            for repeat in range(1, repeats + 1):
                for side in _order(repeat):
                    s, name = ingest[side]
                    how = functools.partial(
                        measure_http,
                        s,
                        name,
                        data[:http_events],
                        batch=http_batch,
                        concurrency=http_concurrency,
                    )
                    measure("ingest_http", side, repeat, how)
            say(f"e2e: the same {e2e_events:,}-event backlog on each side...")
            records = telemetry_records(e2e_events, rate=10_000, run="sec")
            warm = (
                telemetry_records(warmup_events, rate=10_000, run="warm") if warmup_events else []
            )
            stream, warm_stream = "benchsecurity", "benchsecuritywarm"
            by_side: dict[Side, _Worker] = {}
            for side, stack in stacks.items():
                job = cleanup.enter_context(_job_topics(stack.settings, stream))
                _produce(job, stream, records)
                if warm:
                    job = cleanup.enter_context(_job_topics(job, warm_stream))
                    _produce(job, warm_stream, warm)
                worker = _Worker(
                    job, stream, e2e_events, (warm_stream, warmup_events) if warm else None
                )
                cleanup.callback(worker.stop)  # before its topics and stack go
                by_side[side] = worker
            say("e2e: starting a SparkSession per side and warming it up (not timed)...")
            for worker in by_side.values():
                worker.ready()
            for repeat in range(1, repeats + 1):
                for side in _order(repeat):
                    measure("e2e", side, repeat, by_side[side].run)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return security_report(
        runs,
        target=target,
        load_start=load_start,
        load_end=os.getloadavg(),
        samples=samples,
        parameters={
            "events": events,
            "http_events": http_events,
            "http_batch": http_batch,
            "http_concurrency": http_concurrency,
            "e2e_events": e2e_events,
            "warmup_events": warmup_events,
            "repeats": repeats,
            "order": "ABBA: plain first in odd repeats, secure first in even ones",
            "partitions": settings.kafka.partitions,
            "acks": settings.kafka.acks,
            "compression": settings.kafka.compression,
            "linger_ms": settings.kafka.linger_ms,
            "spark_master": settings.spark.master,
            "shuffle_partitions": settings.spark.shuffle_partitions,
            "trigger_interval_s": settings.stream.trigger_interval_s,
            "max_offsets_per_trigger": settings.stream.max_offsets_per_trigger,
            "scoring": settings.ml.detector.enabled,
            "postgres_bin_dir": str(pg_bin_dir),
        },
    )

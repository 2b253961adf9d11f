"""`pulsecast bench ingest`: how fast events get into Kafka, against Kafka's own tool.

In one run, on one broker (the local one, started if needed), three figures:

1. ``producer_eps``: pulsecast's Python producer (one process): simulated
   telemetry events as Python mappings → validated and serialised by the
   stream's schema → produced idempotently with acks=all, until every event
   is acknowledged.
2. ``http_eps``: the HTTP ingest endpoint (a separate ``pulsecast serve``
   process) fed batches of 500 events by concurrent keep-alive clients; each
   answer comes after Kafka acknowledged its batch.
3. ``reference_eps``: ``org.apache.kafka.tools.ProducerPerformance`` sending
   the same records (a payload file of our serialised events, so size and
   compressibility match) with the same acks, idempotence, batching and
   compression.

The reference sends at least 2,000,000 records so that the JVM's start and
warm-up weigh little in its figure (a stricter bar for the Python figures).
Each figure uses a fresh topic of its own with the same partition count; the
topics are deleted at the end. On a secure stack (``security.enabled``) the
producer and the endpoint connect as they do there (SASL_SSL, HTTPS with a
throw-away API key, revoked at the end); the reference then cannot run (it
has no credentials): ``pulsecast bench security`` uses the first two
measurements alone (:func:`bench_stream`, :func:`measure_producer`,
:func:`measure_http`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

from pulsecast.bus.admin import TopicAdmin
from pulsecast.bus.errors import BusError
from pulsecast.bus.producer import EventProducer
from pulsecast.bus.topics import TopicSpec, topic_name
from pulsecast.config import Settings
from pulsecast.events.schema import SchemaRegistry
from pulsecast.security import security_dir
from pulsecast.security.apikeys import ApiKeyStore
from pulsecast.security.mode import ENV_SWITCH
from pulsecast.security.tls import http_verify
from pulsecast.services.java import classpath, find_java
from pulsecast.services.kafka import KafkaService
from pulsecast.sources.simulator import FleetSimulator

__all__ = [
    "bench_events",
    "bench_stream",
    "measure_http",
    "measure_producer",
    "run_ingest_benchmark",
]

Say = Callable[[str], None]


def bench_events(settings: Settings, count: int) -> list[dict[str, Any]]:
    """``count`` simulated telemetry events (not timed); the same ones on every call."""
    sim = settings.simulator.model_copy(update={"entities": 100, "invalid_fraction": 0.0})
    fleet = FleetSimulator(sim, start=datetime(2026, 1, 1, tzinfo=UTC), interval_s=1.0)
    out: list[dict[str, Any]] = []
    while len(out) < count:
        out.extend(fleet.next_tick()[1])
    return out[:count]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def bench_stream(
    settings: Settings, *, stream: str | None = None, extra_topics: Sequence[str] = ()
) -> Iterator[tuple[Settings, str]]:
    """A fresh stream (the telemetry schema) with its topics, deleted on exit.

    Args:
        settings: The benchmark's settings.
        stream: The stream's name; default ``bench<random>``.
        extra_topics: More topics to create (as many partitions) and delete with it.

    Yields:
        ``settings`` with the stream added, and its name.
    """
    stream = stream or f"bench{uuid.uuid4().hex[:8]}"
    spec = settings.streams["telemetry"]
    bench_settings = settings.model_copy(update={"streams": {**settings.streams, stream: spec}})
    partitions = settings.kafka.partitions
    admin = TopicAdmin(settings)
    names = [topic_name(stream, "events"), topic_name(stream, "dlq")]
    admin.ensure(
        [
            TopicSpec(names[0], partitions, 3_600_000),
            TopicSpec(names[1], 1, 3_600_000),
            *(TopicSpec(name, partitions, 3_600_000) for name in extra_topics),
        ]
    )
    try:
        yield bench_settings, stream
    finally:
        admin.delete([*names, *extra_topics])


def measure_producer(settings: Settings, stream: str, events: list[dict[str, Any]]) -> float:
    """Events/s of pulsecast's producer sending ``events`` to ``stream`` until all are acked.

    Raises:
        BusError: Some events were rejected.
    """
    with EventProducer(settings, source="bench") as producer:
        t0 = time.perf_counter()
        report = producer.send(stream, events)
        producer.flush()
        elapsed = time.perf_counter() - t0
    if report.accepted != len(events):
        msg = f"benchmark events were rejected: {dict(report.reasons)}"
        raise BusError(msg)
    return len(events) / elapsed


async def _post_all(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    verify: ssl.SSLContext | bool = True,
    headers: dict[str, str] | None = None,
) -> int:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    accepted = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while not queue.empty():
            body = queue.get_nowait()
            response = await client.post(
                url, content=body, headers={"content-type": "application/json", **(headers or {})}
            )
            if response.status_code != 200:
                msg = f"ingest answered {response.status_code}: {response.text[:200]}"
                raise BusError(msg)
            accepted += response.json()["accepted"]

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits, verify=verify) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return accepted


def _serve_env(settings: Settings, stream: str, port: int) -> dict[str, str]:
    """The environment of the benchmark's ``pulsecast serve``: its stream, port, broker, security.

    The server reads the same configuration file; these win over it so that it
    runs with the benchmark's settings (its data directory holds the security
    files, its switch and rate limits are the benchmark's).
    """
    spec = settings.streams["telemetry"].model_dump(exclude_none=True)
    sec = settings.security
    env = {
        **os.environ,
        "PULSECAST_STREAMS": json.dumps({stream: spec}),
        "PULSECAST_INGEST__PORT": str(port),
        "PULSECAST_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap,
        "PULSECAST_PATHS__DATA_DIR": str(settings.data_dir),
        ENV_SWITCH: "true" if sec.enabled else "false",
        "PULSECAST_SECURITY__KEY_RATE_PER_S": str(sec.key_rate_per_s),
        "PULSECAST_SECURITY__ADDRESS_RATE_PER_S": str(sec.address_rate_per_s),
    }
    if sec.dir is not None:
        env["PULSECAST_SECURITY__DIR"] = str(sec.dir)
    return env


@contextlib.contextmanager
def _api_key(settings: Settings) -> Iterator[dict[str, str]]:
    """Headers with a throw-away ``ingest`` API key in secure mode (revoked on exit), else none."""
    if not settings.security.enabled:
        yield {}
        return
    store = ApiKeyStore(security_dir(settings) / "apikeys.json")
    key, secret = store.create(f"bench-{uuid.uuid4().hex[:8]}", ["ingest"])
    try:
        yield {"X-API-Key": secret}
    finally:
        store.revoke(key.key_id)


def measure_http(
    settings: Settings, stream: str, events: list[dict[str, Any]], *, batch: int, concurrency: int
) -> float:
    """Events/s of a fresh ``pulsecast serve`` taking ``events`` in batches over HTTP(S).

    ``concurrency`` keep-alive clients post batches of ``batch`` events; each
    answer comes after Kafka acknowledged its batch. In secure mode the
    endpoint serves HTTPS and the clients present a throw-away API key.

    Raises:
        BusError: The server did not start, or refused or lost events.
    """
    port = _free_port()
    env = _serve_env(settings, stream, port)
    cmd = [sys.executable, "-m", "pulsecast"]
    if settings.config_file is not None:
        cmd += ["--config", str(settings.config_file)]
    server = subprocess.Popen(
        [*cmd, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"{'https' if settings.ingest.tls else 'http'}://127.0.0.1:{port}"
    verify = http_verify(settings)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1, verify=verify).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                err = (server.stderr.read() if server.stderr else b"").decode()[-400:]
                msg = f"the ingest server for the benchmark did not start: {err}"
                raise BusError(msg)
            time.sleep(0.2)
        encode = msgspec.json.Encoder().encode
        bodies = [encode({"events": events[i : i + batch]}) for i in range(0, len(events), batch)]
        with _api_key(settings) as headers:
            t0 = time.perf_counter()
            accepted = asyncio.run(
                _post_all(f"{url}/v1/streams/{stream}/events", bodies, concurrency, verify, headers)
            )
            elapsed = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    if accepted != len(events):
        msg = f"ingest accepted {accepted} of {len(events)} events"
        raise BusError(msg)
    return accepted / elapsed


_PERF_LINE = re.compile(r"(\d+) records sent, ([\d.]+) records/sec")


def _measure_reference(settings: Settings, topic: str, count: int, payload_file: Path) -> float:
    k = settings.kafka
    props = [
        f"bootstrap.servers={k.bootstrap}",
        f"acks={k.acks}",
        "enable.idempotence=true",
        f"linger.ms={k.linger_ms}",
        f"batch.size={k.batch_size}",
        f"compression.type={k.compression}",
    ]
    cmd = [
        str(find_java(settings)),
        "-Xmx512m",
        "-cp",
        classpath(settings, "kafka"),
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(count),
        "--payload-file",
        str(payload_file),
        "--throughput",
        "-1",
        "--producer-props",
        *props,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
    lines = [m for m in _PERF_LINE.finditer(proc.stdout) if int(m.group(1)) == count]
    if proc.returncode != 0 or not lines:
        msg = f"ProducerPerformance failed: {(proc.stderr or proc.stdout)[-400:]}"
        raise BusError(msg)
    return float(lines[-1].group(2))


def run_ingest_benchmark(
    settings: Settings,
    *,
    events: int = 1_000_000,
    http_events: int = 300_000,
    http_batch: int = 500,
    http_concurrency: int = 4,
    reference_events: int | None = None,
    say: Say = lambda _t: None,
) -> dict[str, Any]:
    """Run the three measurements; see the module's description.

    Returns:
        ``producer_eps``, ``http_eps``, ``reference_eps``, ``producer_ratio``,
        ``http_ratio`` and the run's parameters.
    """
    say("starting kafka...")
    KafkaService(settings).start()
    run = uuid.uuid4().hex[:8]
    stream = f"bench{run}"
    reference_topic = f"bench{run}-reference"
    partitions = settings.kafka.partitions
    payload_file = settings.data_dir / "bench" / f"{stream}-payloads.jsonl"
    with bench_stream(settings, stream=stream, extra_topics=[reference_topic]) as (
        bench_settings,
        _,
    ):
        try:
            say(f"generating {events:,} events...")
            data = bench_events(settings, max(events, http_events))
            schema_encoded = [len(msgspec.json.encode(e)) for e in data[:1000]]
            schema = SchemaRegistry(bench_settings.streams)[stream]
            wire = schema.encode_many(schema.validate_many(data[:10_000]))
            record_bytes = round(sum(len(w) for w in wire) / len(wire))
            payload_file.parent.mkdir(parents=True, exist_ok=True)
            payload_file.write_bytes(b"\n".join(wire) + b"\n")
            say(f"python producer: {events:,} events of ~{record_bytes} bytes...")
            producer_eps = measure_producer(bench_settings, stream, data[:events])
            say(f"  {producer_eps:,.0f} events/s")
            say(f"http ingest: {http_events:,} events in batches of {http_batch}...")
            http_eps = measure_http(
                bench_settings,
                stream,
                data[:http_events],
                batch=http_batch,
                concurrency=http_concurrency,
            )
            say(f"  {http_eps:,.0f} events/s")
            reference_events = reference_events or max(events, 2_000_000)
            say(f"reference (ProducerPerformance): {reference_events:,} of the same records...")
            reference_eps = _measure_reference(
                settings, reference_topic, reference_events, payload_file
            )
            say(f"  {reference_eps:,.0f} events/s")
        finally:
            payload_file.unlink(missing_ok=True)
    return {
        "producer_eps": round(producer_eps, 1),
        "http_eps": round(http_eps, 1),
        "reference_eps": round(reference_eps, 1),
        "producer_ratio": round(producer_eps / reference_eps, 3),
        "http_ratio": round(http_eps / reference_eps, 3),
        "record_bytes": record_bytes,
        "input_bytes": round(sum(schema_encoded) / len(schema_encoded)),
        "events": events,
        "reference_events": reference_events,
        "http_events": http_events,
        "http_batch": http_batch,
        "http_concurrency": http_concurrency,
        "partitions": partitions,
        "acks": settings.kafka.acks,
        "compression": settings.kafka.compression,
        "linger_ms": settings.kafka.linger_ms,
        "cpus": os.cpu_count(),
    }

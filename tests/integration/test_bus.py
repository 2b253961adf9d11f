from __future__ import annotations

import subprocess
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import msgspec

from pulsecast.bus import EventProducer, topic_name
from pulsecast.bus.consumer import EventConsumer, read_since
from pulsecast.events import Rejection, SchemaRegistry
from pulsecast.testing import telemetry_event

from .conftest import StreamFactory

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def test_produce_then_consume_keeps_every_event_and_per_key_order(
    stream_factory: StreamFactory,
) -> None:
    settings, stream = stream_factory()
    n, keys = 20_000, 40
    events = [
        telemetry_event(f"m-{i % keys}", when=T0 + timedelta(seconds=i), event_id=f"{i:08d}")
        for i in range(n)
    ]
    with EventProducer(settings, source="test") as producer:
        report = producer.send(stream, events)
    assert (report.accepted, report.rejected) == (n, 0)

    records = read_since(settings, topic_name(stream), {0: 0, 1: 0, 2: 0})
    assert len(records) == n
    by_key: dict[str, list[int]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = msgspec.json.decode(record.value)
        assert record.key == event["key"] == event["payload"]["entity_id"]
        by_key[record.key].append(int(event["event_id"]))
        partitions[record.key].add(record.partition)
    assert len(by_key) == keys
    assert all(ids == sorted(ids) for ids in by_key.values())
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) == 3  # keys spread over partitions


def test_invalid_events_go_to_the_dead_letter_topic_with_reasons(
    stream_factory: StreamFactory,
) -> None:
    settings, stream = stream_factory()
    good = telemetry_event("m-1")
    out_of_range = telemetry_event("m-2", cpu_util=140.0)
    missing = telemetry_event("m-3")
    del missing["payload"]["power_kw"]
    with EventProducer(settings, source="test") as producer:
        report = producer.send(stream, [good, out_of_range, missing])
        raw_report = producer.send_json(stream, [b"{not json", msgspec.json.encode(good)])
    assert (report.accepted, report.rejected) == (1, 2)
    assert (raw_report.accepted, raw_report.rejected) == (1, 1)

    dead = read_since(settings, topic_name(stream, "dlq"), {0: 0})
    assert [r.headers["pulsecast.reason"] for r in dead] == [
        "out_of_range",
        "missing_field",
        "malformed_json",
    ]
    assert dead[0].headers["pulsecast.field"] == "payload.cpu_util"
    assert dead[0].headers["pulsecast.error"] == "payload.cpu_util: expected float <= 100.0"
    assert dead[0].headers["pulsecast.source"] == "test"
    assert dead[0].headers["pulsecast.stream"] == stream
    assert msgspec.json.decode(dead[0].value)["payload"]["cpu_util"] == 140.0
    assert dead[2].value == b"{not json"  # as received
    assert len(read_since(settings, topic_name(stream), {0: 0, 1: 0, 2: 0})) == 2


def test_kcat_reads_what_pulsecast_produced(stream_factory: StreamFactory) -> None:
    settings, stream = stream_factory()
    with EventProducer(settings) as producer:
        producer.send(stream, [telemetry_event(f"m-{i}") for i in range(25)])
    out = subprocess.run(
        [
            "kcat",
            "-C",
            "-b",
            settings.kafka.bootstrap,
            "-t",
            topic_name(stream),
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k\t%s\n",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    lines = [line.split("\t", 1) for line in out.splitlines()]
    assert len(lines) == 25
    schema = SchemaRegistry(settings.streams)[stream]
    for key, value in lines:
        event = schema.validate_json(value.encode())
        assert not isinstance(event, Rejection)
        assert event.key == key


def test_pulsecast_reads_what_kcat_produced(stream_factory: StreamFactory) -> None:
    settings, stream = stream_factory()
    lines = []
    for i in range(10):
        event = telemetry_event(f"k-{i}", event_id=f"kcat-{i}", when="2026-05-01T00:00:00Z")
        event.update(stream=stream, key=f"k-{i}")
        lines.append(f"k-{i}|{msgspec.json.encode(event).decode()}")
    subprocess.run(
        ["kcat", "-P", "-b", settings.kafka.bootstrap, "-t", topic_name(stream), "-K", "|"],
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
        timeout=60,
    )
    schema = SchemaRegistry(settings.streams)[stream]
    with EventConsumer(settings, [topic_name(stream)], from_beginning=True) as consumer:
        records = list(consumer.read(max_count=10, timeout_s=30))
    assert sorted(r.key or "" for r in records) == [f"k-{i}" for i in range(10)]
    events = [schema.validate_json(r.value) for r in records]
    assert sorted(e.event_id for e in events) == [f"kcat-{i}" for i in range(10)]

from __future__ import annotations

import os
import socket
import time

import pytest

from pulsecast.bus.clients import consumer_config, producer_config
from pulsecast.bus.errors import ProduceError
from pulsecast.bus.producer import EventProducer, _chunks, _raw_of
from pulsecast.bus.topics import topic_name, topic_specs
from pulsecast.testing import settings_for


def test_producer_config_is_idempotent_acks_all_and_murmur2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(tmp_path, kafka={"port": 9999, "linger_ms": 7, "compression": "zstd"})
    config = producer_config(settings)
    assert config["bootstrap.servers"] == "127.0.0.1:9999"
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert config["linger.ms"] == 7
    assert config["compression.type"] == "zstd"
    assert config["partitioner"] == "murmur2_random"


def test_consumer_config_offsets_and_commit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    kafka = settings_for(tmp_path, kafka={"bootstrap_servers": "b1:9092,b2:9092"})
    config = consumer_config(kafka, "g", from_beginning=True, commit=False)
    assert config["bootstrap.servers"] == "b1:9092,b2:9092"
    assert config["auto.offset.reset"] == "earliest"
    assert config["enable.auto.commit"] is False
    assert consumer_config(kafka, "g")["auto.offset.reset"] == "latest"


def test_topic_specs_follow_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(
        tmp_path,
        kafka={"partitions": 4, "derived_partitions": 2, "retention_hours": 2},
    )
    specs = {s.name: s for s in topic_specs(settings, ["telemetry"])}
    assert sorted(specs) == [
        "telemetry.alerts",
        "telemetry.dlq",
        "telemetry.events",
        "telemetry.predictions",
    ]
    assert specs["telemetry.events"].partitions == 4
    assert specs["telemetry.dlq"].partitions == 2
    assert specs["telemetry.events"].config() == {"retention.ms": str(2 * 3_600_000)}
    assert topic_name("x", "dlq") == "x.dlq"
    assert len(topic_specs(settings)) == 8


def test_chunks_of_lists_and_iterators() -> None:
    assert list(_chunks([1, 2, 3], 2)) == [[1, 2], [3]]
    assert list(_chunks(iter(range(5)), 2)) == [[0, 1], [2, 3], [4]]
    assert list(_chunks([], 2)) == []


def test_raw_of_keeps_bytes_and_encodes_objects() -> None:
    assert _raw_of(b"\x00raw") == b"\x00raw"
    assert _raw_of({"a": 1}) == b'{"a":1}'
    assert _raw_of({"a": object()}).startswith(b"{'a': <object")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_producer_close_stops_the_client_even_when_the_broker_is_gone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    before = _threads()
    producer = EventProducer(settings_for(tmp_path, kafka={"port": port}))
    producer.produce_raw("telemetry.events", b"{}", "k")
    assert _threads() > before  # librdkafka's threads, reconnecting
    started = time.monotonic()
    with pytest.raises(ProduceError):
        producer.close(timeout_s=0.5)
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while _threads() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _threads() == before
    producer.close()  # idempotent: nothing left to flush or raise

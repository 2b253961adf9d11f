"""The monitor's probes: service health, disk and Kafka lag from checkpoints (no servers)."""

from __future__ import annotations

import socket
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from pulsecast.monitoring.probes import Probes, committed_offsets, service_addresses
from pulsecast.testing import settings_for
from tests.unit.monitoring.conftest import parse_samples


def checkpoint(root: Path, *, offsets: dict[int, str], commits: list[int]) -> Path:
    for batch, line in offsets.items():
        (root / "offsets").mkdir(parents=True, exist_ok=True)
        (root / "offsets" / str(batch)).write_text(
            f'v1\n{{"batchWatermarkMs":0,"batchTimestampMs":1795885384049,"conf":{{}}}}\n{line}\n'
        )
    (root / "commits").mkdir(parents=True, exist_ok=True)
    for batch in commits:
        (root / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}\n')
    return root


def test_committed_offsets_are_those_of_the_latest_committed_batch(tmp_path: Path) -> None:
    root = checkpoint(
        tmp_path / "telemetry",
        offsets={
            0: '{"telemetry.events":{"0":10,"1":0}}',
            1: '{"telemetry.events":{"0":320,"1":300}}',
            2: '{"telemetry.events":{"0":900,"1":800}}',  # planned, not committed
        },
        commits=[0, 1],
    )
    (root / "commits" / ".1.crc").write_text("")
    assert committed_offsets(root, "telemetry.events") == {0: 320, 1: 300}
    assert committed_offsets(root, "other.events") is None
    assert committed_offsets(tmp_path / "missing", "telemetry.events") is None
    empty = checkpoint(tmp_path / "new", offsets={0: '{"telemetry.events":{"0":5}}'}, commits=[])
    assert committed_offsets(empty, "telemetry.events") is None


def test_lag_per_partition_from_the_checkpoint_and_the_broker(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, stream={"checkpoint_uri": (tmp_path / "ck").as_uri()})
    checkpoint(
        tmp_path / "ck" / "telemetry",
        offsets={4: '{"telemetry.events":{"0":320,"1":300}}'},
        commits=[4],
    )
    ends = {
        ("telemetry.events", 0): 1000,
        ("telemetry.events", 1): 300,
        ("telemetry.events", 2): 50,  # a partition the query has not read yet
        ("telemetry.dlq", 0): 7,
        ("series.events", 0): 99,  # no checkpoint yet: no lag reported
    }
    assert Probes(settings)._lag(ends) == [
        (("pulsecast-telemetry", "telemetry.events", "0"), 680.0),
        (("pulsecast-telemetry", "telemetry.events", "1"), 0.0),
        (("pulsecast-telemetry", "telemetry.events", "2"), 50.0),
    ]
    remote = settings_for(tmp_path, stream={"checkpoint_uri": "hdfs://127.0.0.1:8020/ck"})
    assert Probes(remote)._lag(ends) == []


def test_probes_report_servers_down_and_the_disk_without_waiting_for_kafka(
    tmp_path: Path,
) -> None:
    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        kafka_port = closed.getsockname()[1]
        postgres_port = listening.getsockname()[1]
        settings = settings_for(
            tmp_path / "not-yet",
            kafka={"bootstrap_servers": f"127.0.0.1:{kafka_port}"},
            postgres={"port": postgres_port},
        )
        assert service_addresses(settings) == {
            "kafka": ("127.0.0.1", kafka_port),
            "postgres": ("127.0.0.1", postgres_port),
        }
        registry = CollectorRegistry()
        registry.register(Probes(settings))
        text = generate_latest(registry).decode()
    samples = parse_samples(text)
    kafka, postgres = (frozenset({("service", s)}) for s in ("kafka", "postgres"))
    assert samples[("pulsecast_service_up", kafka)] == 0
    assert samples[("pulsecast_service_up", postgres)] == 1
    free, size = (samples[(f"pulsecast_disk_{n}_bytes", frozenset())] for n in ("free", "size"))
    assert 0 < free <= size
    assert not any(name.startswith("pulsecast_kafka") for name, _ in samples)

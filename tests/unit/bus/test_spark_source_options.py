"""The options of Spark's Kafka source: the connection's, plus the job's fetch wait."""

from __future__ import annotations

from pathlib import Path

from pulsecast.bus.clients import spark_kafka_options, spark_kafka_source_options
from pulsecast.testing import settings_for

PORTS = {"port": 19092, "controller_port": 19093}


def test_source_options_bound_the_fetch_wait(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, kafka=PORTS)
    options = spark_kafka_source_options(settings)
    assert options["kafka.fetch.max.wait.ms"] == "10"  # Kafka's own default is 500
    assert {k: v for k, v in options.items() if k != "kafka.fetch.max.wait.ms"} == (
        spark_kafka_options(settings)
    )


def test_source_options_follow_the_setting(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, kafka=PORTS, stream={"fetch_max_wait_ms": 250})
    assert spark_kafka_source_options(settings)["kafka.fetch.max.wait.ms"] == "250"


def test_sink_options_carry_no_consumer_setting(tmp_path: Path) -> None:
    # The dead letters' sink writes with a producer, which would warn of a consumer's setting.
    settings = settings_for(tmp_path, kafka=PORTS)
    assert "kafka.fetch.max.wait.ms" not in spark_kafka_options(settings)

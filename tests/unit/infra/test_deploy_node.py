"""What a deployed instance runs: its settings, its servers, its units, its log shipping."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from pulsecast.config import Settings, load_settings
from pulsecast.deploy import UnknownRoleError
from pulsecast.deploy.node import (
    ROLES,
    cloudwatch_agent_config,
    node_overrides,
    node_services,
    node_settings,
    systemd_units,
)
from pulsecast.deploy.parameters import settings_blob, settings_from_blob
from pulsecast.testing import settings_for

ZONE = "acme.internal"
DATA = Path("/data/pulsecast")


def _place(settings: Settings, role: str, **kwargs: str) -> dict[str, object]:
    return node_overrides(settings, role, zone=ZONE, address="10.40.32.7", data_dir=DATA, **kwargs)


def test_node_kafka_binds_and_advertises_its_dns_name(settings: Settings) -> None:
    placed = _place(settings, "kafka")
    assert placed == {
        "paths": {"data_dir": "/data/pulsecast"},
        "log": {"format": "json"},
        "kafka": {"host": "kafka.acme.internal"},
        "ingest": {"host": "10.40.32.7", "enabled": True},
    }


def test_node_spark_finds_kafka_and_keeps_the_lake_on_hdfs(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, kafka={"port": 19092}, hdfs={"namenode_port": 18020})
    placed = _place(settings, "spark")
    assert placed["kafka"] == {"bootstrap_servers": "kafka.acme.internal:19092"}
    assert placed["hdfs"] == {"host": "hdfs.acme.internal"}
    assert placed["lake"] == {"uri": "hdfs://hdfs.acme.internal:18020/pulsecast/lake"}
    assert placed["stream"] == {
        "checkpoint_uri": "hdfs://hdfs.acme.internal:18020/pulsecast/checkpoints"
    }
    assert placed["spark"] == {"master": "spark://127.0.0.1:7077"}


def test_node_ingest_uses_the_bootstrap_it_is_given(settings: Settings) -> None:
    placed = _place(settings, "ingest", bootstrap="b-1.msk:9098,b-2.msk:9098")
    assert placed["kafka"] == {"bootstrap_servers": "b-1.msk:9098,b-2.msk:9098"}


def test_node_unknown_role_names_the_known_ones(settings: Settings) -> None:
    with pytest.raises(UnknownRoleError) as caught:
        _place(settings, "zookeeper")
    assert str(caught.value) == (
        "unknown node role 'zookeeper'; choose one of: hdfs, ingest, kafka, spark"
    )


def test_node_settings_are_the_deployed_settings_placed(tmp_path: Path) -> None:
    deployed = settings_for(tmp_path, kafka={"partitions": 12}, stream={"trigger_interval_s": 5})
    base = tmp_path / "settings.toml"
    base.write_text(settings_from_blob(settings_blob(deployed)))
    text = node_settings(base, "spark", zone=ZONE, address="10.40.32.7", data_dir=DATA)
    (tmp_path / "node.toml").write_text(text)
    node = load_settings(tmp_path / "node.toml", env={})
    assert node.kafka.partitions == 12
    assert node.stream.trigger_interval_s == 5
    assert node.kafka.bootstrap == "kafka.acme.internal:9092"
    assert node.lake_uri == "hdfs://hdfs.acme.internal:8020/pulsecast/lake"
    assert node.data_dir == DATA
    assert tomllib.loads(text)["log"] == {"format": "json"}


@pytest.mark.parametrize(
    ("role", "servers"),
    [("kafka", ["kafka"]), ("spark", ["postgres", "spark"]), ("hdfs", ["hdfs"]), ("ingest", [])],
)
def test_node_services_are_the_local_stacks_launchers(
    settings: Settings, role: str, servers: list[str]
) -> None:
    assert [s.name for s in node_services(settings, role)] == servers
    assert ROLES[role].servers == tuple(servers)


def test_node_units_start_the_servers_and_keep_the_commands_running() -> None:
    units = systemd_units(
        "spark",
        config=Path("/etc/pulsecast/pulsecast.toml"),
        venv=Path("/opt/pulsecast"),
        home=Path("/var/lib/pulsecast"),
    )
    assert set(units) == {
        "pulsecast-node.service",
        "pulsecast-node-heal.service",
        "pulsecast-node-heal.timer",
        "pulsecast-stream.service",
    }
    pulsecast = "/opt/pulsecast/bin/pulsecast --config /etc/pulsecast/pulsecast.toml"
    node = units["pulsecast-node.service"]
    assert f"ExecStartPre={pulsecast} setup\n" in node
    assert f"ExecStart={pulsecast} deploy node start spark\n" in node
    assert f"ExecStop={pulsecast} down\n" in node
    assert "User=pulsecast\n" in node
    stream = units["pulsecast-stream.service"]
    assert f"ExecStart={pulsecast} stream run\n" in stream
    assert "Restart=always\n" in stream
    assert "After=network-online.target pulsecast-node.service\n" in stream


def test_node_ingest_has_only_the_ingest_unit() -> None:
    units = systemd_units("ingest", config=Path("/c.toml"), venv=Path("/v"), home=Path("/h"))
    assert list(units) == ["pulsecast-ingest.service"]
    assert (
        "ExecStart=/v/bin/pulsecast --config /c.toml serve\n" in units["pulsecast-ingest.service"]
    )


def test_node_cloudwatch_agent_ships_logs_and_the_data_disk() -> None:
    config = json.loads(
        cloudwatch_agent_config("hdfs", log_group="/acme/nodes", data_dir=DATA, mount=Path("/data"))
    )
    metrics = config["metrics"]
    # The templates' disk alarms read disk_used_percent by group and mount point.
    assert metrics["namespace"] == "Pulsecast/Nodes"
    assert metrics["aggregation_dimensions"] == [["AutoScalingGroupName", "path"]]
    assert metrics["metrics_collected"]["disk"]["resources"] == ["/", "/data"]
    (files,) = config["logs"]["logs_collected"]["files"]["collect_list"]
    assert files == {
        "file_path": "/data/pulsecast/logs/*.log",
        "log_group_name": "/acme/nodes",
        "log_stream_name": "hdfs/{instance_id}",
    }

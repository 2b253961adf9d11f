"""One deployed machine: its role, its settings, its systemd units and its log shipping.

The templates' instances run the same pulsecast as a laptop, one role each:
``kafka`` (the broker and the HTTP ingest), ``spark`` (Spark standalone, the
warehouse and the streaming job), ``hdfs`` (NameNode and DataNode) in the
self-managed template, and ``ingest`` (the HTTP ingest in front of MSK) in the
managed one. At boot an instance's user data installs pulsecast, decodes the
``PulsecastSettings`` parameter and runs ``pulsecast deploy node setup ROLE``,
which writes the node's settings (those, plus where this node and its peers
are: :func:`node_overrides`), its systemd units and the CloudWatch agent's
configuration. ``pulsecast deploy node start ROLE`` (the node unit) then starts
the role's servers with the same launchers as ``pulsecast up``; ``pulsecast
down`` stops them.
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulsecast.config import Settings, load_settings
from pulsecast.deploy.errors import UnknownRoleError, choose
from pulsecast.deploy.toml import dumps
from pulsecast.services.base import Service, ServiceStatus

__all__ = [
    "NAMESPACE",
    "ROLES",
    "NodeRole",
    "cloudwatch_agent_config",
    "node_overrides",
    "node_services",
    "node_settings",
    "role",
    "start_node",
    "systemd_units",
]

log = logging.getLogger(__name__)

#: CloudWatch namespace of the nodes' disk and memory metrics (the templates' alarms read it).
NAMESPACE = "Pulsecast/Nodes"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class NodeRole:
    """What one kind of machine runs.

    Attributes:
        name: The role (``kafka``).
        servers: Servers ``start_node`` starts (names as in ``pulsecast status``).
        commands: Long-running pulsecast commands, one systemd unit each (``serve``).
    """

    name: str
    servers: tuple[str, ...]
    commands: tuple[str, ...]


ROLES: dict[str, NodeRole] = {
    r.name: r
    for r in (
        NodeRole("kafka", servers=("kafka",), commands=("serve",)),
        NodeRole("spark", servers=("postgres", "spark"), commands=("stream run",)),
        NodeRole("hdfs", servers=("hdfs",), commands=()),
        NodeRole("ingest", servers=(), commands=("serve",)),
    )
}

_UNIT_OF_COMMAND = {"serve": "pulsecast-ingest", "stream run": "pulsecast-stream"}


def role(name: str) -> NodeRole:
    """The role called ``name``.

    Raises:
        UnknownRoleError: There is no such role.
    """
    return choose(ROLES, name, UnknownRoleError)


def node_overrides(
    settings: Settings,
    name: str,
    *,
    zone: str,
    address: str,
    data_dir: Path,
    bootstrap: str | None = None,
) -> dict[str, Any]:
    """The settings that place one machine among its peers.

    Peers are found by name in the private DNS zone (``kafka.<zone>``,
    ``hdfs.<zone>``), which each node keeps pointing at itself, so a replaced
    instance is found again. Ports stay those of ``settings``: the security
    groups open the same ones.

    Args:
        settings: The deployed settings (from ``PulsecastSettings``).
        name: The role.
        zone: The private DNS zone (``pulsecast.internal``).
        address: This instance's private address.
        data_dir: Where the role keeps its state (the attached data volume).
        bootstrap: Kafka's bootstrap servers, for a role that does not find them
            in the zone (the managed template's ingest: MSK's).

    Raises:
        UnknownRoleError: There is no such role.
    """
    chosen = role(name)
    kafka = f"kafka.{zone}"
    hdfs = f"hdfs.{zone}"
    hdfs_uri = f"hdfs://{hdfs}:{settings.hdfs.namenode_port}/pulsecast"
    common: dict[str, Any] = {"paths": {"data_dir": str(data_dir)}, "log": {"format": "json"}}
    by_role: dict[str, dict[str, Any]] = {
        # The broker binds to, and advertises, its DNS name: clients keep finding a
        # replaced broker. The ingest answers the load balancer on this address.
        "kafka": {"kafka": {"host": kafka}, "ingest": {"host": address, "enabled": True}},
        "spark": {
            "kafka": {"bootstrap_servers": f"{kafka}:{settings.kafka.port}"},
            "hdfs": {"host": hdfs},
            "lake": {"uri": f"{hdfs_uri}/lake"},
            "stream": {"checkpoint_uri": f"{hdfs_uri}/checkpoints"},
            "spark": {"master": settings.spark_standalone.master_url},
        },
        "hdfs": {"hdfs": {"host": hdfs}},
        "ingest": {
            "kafka": {"bootstrap_servers": bootstrap or f"{kafka}:{settings.kafka.port}"},
            "ingest": {"host": address, "enabled": True},
        },
    }
    return _merge(common, by_role[chosen.name])


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = _merge(below, value)
        else:
            merged[key] = value
    return merged


def node_settings(
    base_file: Path,
    name: str,
    *,
    zone: str,
    address: str,
    data_dir: Path,
    bootstrap: str | None = None,
) -> str:
    """The node's settings file: the deployed settings with :func:`node_overrides` on top.

    Raises:
        UnknownRoleError: There is no such role.
        ConfigError: ``base_file`` is not valid settings.
    """
    settings = load_settings(base_file, env={})
    with base_file.open("rb") as fh:
        base = tomllib.load(fh)
    top = node_overrides(
        settings, name, zone=zone, address=address, data_dir=data_dir, bootstrap=bootstrap
    )
    return dumps(_merge(base, top))


def systemd_units(name: str, *, config: Path, venv: Path, home: Path) -> dict[str, str]:
    """The systemd units of a role, by file name.

    ``pulsecast-node`` starts the role's servers (oneshot: the launchers fork
    them) and ``pulsecast-node-heal.timer`` starts again any that died (start is
    idempotent); each long-running command gets a unit that systemd restarts.

    Raises:
        UnknownRoleError: There is no such role.
    """
    chosen = role(name)
    pulsecast = f"{venv / 'bin' / 'pulsecast'} --config {config}"
    service = f"User=pulsecast\nGroup=pulsecast\nEnvironment=HOME={home}\nWorkingDirectory={home}\n"
    units: dict[str, str] = {}
    if chosen.servers:
        servers = ", ".join(chosen.servers)
        units["pulsecast-node.service"] = (
            f"[Unit]\nDescription=pulsecast {chosen.name} node: {servers}\n"
            "Wants=network-online.target\nAfter=network-online.target\n\n"
            f"[Service]\nType=oneshot\nRemainAfterExit=yes\n{service}"
            f"ExecStartPre={pulsecast} setup\n"
            f"ExecStart={pulsecast} deploy node start {chosen.name}\n"
            f"ExecStop={pulsecast} down\nTimeoutStartSec=1200\n\n"
            "[Install]\nWantedBy=multi-user.target\n"
        )
        units["pulsecast-node-heal.service"] = (
            f"[Unit]\nDescription=Start again any pulsecast {chosen.name} server that stopped\n"
            "Requisite=pulsecast-node.service\nAfter=pulsecast-node.service\n\n"
            f"[Service]\nType=oneshot\n{service}"
            f"ExecStart={pulsecast} deploy node start {chosen.name}\n"
        )
        units["pulsecast-node-heal.timer"] = (
            f"[Unit]\nDescription=Check the pulsecast {chosen.name} servers every 2 minutes\n\n"
            "[Timer]\nOnUnitActiveSec=2min\nOnBootSec=10min\n\n"
            "[Install]\nWantedBy=timers.target\n"
        )
    for command in chosen.commands:
        after = " pulsecast-node.service" if chosen.servers else ""
        units[f"{_UNIT_OF_COMMAND[command]}.service"] = (
            f"[Unit]\nDescription=pulsecast {command}\n"
            f"Wants=network-online.target{after}\nAfter=network-online.target{after}\n\n"
            f"[Service]\nType=simple\n{service}"
            f"ExecStart={pulsecast} {command}\nRestart=always\nRestartSec=15\n\n"
            "[Install]\nWantedBy=multi-user.target\n"
        )
    return units


def cloudwatch_agent_config(
    name: str, *, log_group: str, data_dir: Path, mount: Path, namespace: str = NAMESPACE
) -> str:
    """The CloudWatch agent's configuration (JSON): the role's logs, disk and memory use.

    Disk use of the data volume is published per auto-scaling group and mount
    point (``AutoScalingGroupName``, ``path``): the templates' disk alarms read it.

    Raises:
        UnknownRoleError: There is no such role.
    """
    chosen = role(name)
    config = {
        "agent": {"metrics_collection_interval": 60},
        "metrics": {
            "namespace": namespace,
            "append_dimensions": {"AutoScalingGroupName": "${aws:AutoScalingGroupName}"},
            "aggregation_dimensions": [["AutoScalingGroupName", "path"]],
            "metrics_collected": {
                "disk": {"measurement": ["used_percent"], "resources": ["/", str(mount)]},
                "mem": {"measurement": ["used_percent"]},
            },
        },
        "logs": {
            "logs_collected": {
                "files": {
                    "collect_list": [
                        {
                            "file_path": str(data_dir / "logs" / "*.log"),
                            "log_group_name": log_group,
                            "log_stream_name": f"{chosen.name}/{{instance_id}}",
                        }
                    ]
                }
            }
        },
    }
    return json.dumps(config, indent=2) + "\n"


def node_services(settings: Settings, name: str) -> list[Service]:
    """The launchers of the role's servers (the same ``pulsecast up`` uses), not started.

    Raises:
        UnknownRoleError: There is no such role.
    """
    from pulsecast.services.stack import OPTIONAL_SERVICES, Stack

    chosen = role(name)
    stack = Stack(settings)
    core: dict[str, Service] = {"kafka": stack.kafka, "postgres": stack.postgres}
    return [core[n] if n in core else OPTIONAL_SERVICES[n](settings) for n in chosen.servers]


def start_node(
    settings: Settings, name: str, *, progress: Progress | None = None
) -> list[ServiceStatus]:
    """Start the role's servers (idempotent), as ``pulsecast up`` would.

    The kafka role also creates the configured streams' topics.

    Returns:
        The servers' statuses.

    Raises:
        UnknownRoleError: There is no such role.
        ServiceError: A server could not start; the message says why.
    """
    chosen = role(name)
    say = progress or (lambda _text: None)
    services = node_services(settings, chosen.name)
    for service in services:
        if service.managed:
            say(f"starting {service.name}...")
            service.start()
    if chosen.name == "kafka":
        from pulsecast.bus.admin import TopicAdmin

        created = TopicAdmin(settings).ensure_streams()
        if created:
            say(f"created {len(created)} topics")
    return [s.status() for s in services]

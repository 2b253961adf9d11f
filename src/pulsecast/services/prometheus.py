"""Prometheus, Alertmanager and pulsecast's monitor (``pulsecast up --with prometheus``).

Three processes, started and stopped together, each with its PID file, log
and data under the data directory:

- **Prometheus** (Debian's ``prometheus`` package) with a configuration
  generated from Settings (``<data_dir>/prometheus/prometheus.yml``): it
  scrapes the HTTP ingest, the streaming job, the monitor, Alertmanager and
  itself, evaluates the alert rules of ``monitoring.rules_dir``
  (``infra/prometheus/rules`` of the checkout by default) and sends alerts to
  Alertmanager. Its samples live in ``<data_dir>/prometheus/tsdb``. With
  ``monitoring.rule_for_s`` set (tests, demos), the rules are rendered to
  ``<data_dir>/prometheus/rules`` with every ``for:`` at that duration; the
  shipped files are never changed.
- **Alertmanager** (Debian's ``prometheus-alertmanager``) with a generated
  ``alertmanager.yml``: every alert goes to the monitor's webhook and, when
  ``monitoring.email_to`` is set, by email too. Clustering is off.
- **The monitor** (:mod:`pulsecast.monitoring.monitor`): records the alerts it
  receives and probes the local servers, the disk and Kafka consumer lag.

Every address is ``monitoring.host`` (loopback by default) with the ports of
the ``monitoring`` section. The Debian packages also install system daemons;
those are never used (nor started) here. ``start`` returns once all three
answer their readiness endpoints; when they already run, it rewrites the
configuration and asks Prometheus and Alertmanager to reload it.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from pulsecast.config import Settings
from pulsecast.services.base import (
    Daemon,
    Service,
    ServiceStatus,
    check_port_free,
    wait_until,
)
from pulsecast.services.errors import ServiceError, ServiceStartError

__all__ = [
    "MONITOR_MODULE",
    "PrometheusService",
    "default_rules_dir",
    "duration",
    "render_rules",
]

log = logging.getLogger(__name__)

MONITOR_MODULE = "pulsecast.monitoring.monitor"


def default_rules_dir() -> Path:
    """The alert rules shipped in the checkout: ``infra/prometheus/rules``."""
    return Path(__file__).resolve().parents[3] / "infra" / "prometheus" / "rules"


def duration(seconds: float) -> str:
    """A Prometheus duration (``15s``, ``500ms``, ``4h``) for ``seconds``.

    >>> duration(15), duration(0.5), duration(14400)
    ('15s', '500ms', '4h')
    """
    millis = round(seconds * 1000)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


def render_rules(source: Path, target: Path, *, for_s: float) -> list[Path]:
    """Copy the rule files of ``source`` to ``target`` with every alert's ``for:`` at ``for_s``.

    Only the ``for:`` of alerting rules changes; expressions, labels and
    annotations are kept as they are. Files of ``target`` that ``source`` no
    longer has are removed, so Prometheus evaluates exactly the shipped rules.

    Args:
        source: The folder of rule files (``*.yml``).
        target: Where to write them (created).
        for_s: The pending duration every alert gets.

    Returns:
        The files written.
    """
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source.glob("*.yml")):
        rules = yaml.safe_load(path.read_text())
        for group in rules.get("groups") or []:
            for rule in group.get("rules") or []:
                if "alert" in rule:
                    rule["for"] = duration(for_s)
        out = target / path.name
        out.write_text(yaml.safe_dump(rules, sort_keys=False, allow_unicode=True))
        written.append(out)
    for stale in set(target.glob("*.yml")) - set(written):
        stale.unlink()
    return written


@functools.cache
def _version(binary: str) -> str | None:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    match = re.search(r"version (\d[\w.]*)", out.stdout + out.stderr)
    return match.group(1) if match else None


class PrometheusService(Service):
    """Prometheus, Alertmanager and the monitor, started and stopped together."""

    name = "prometheus"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.home = self.data_root / "prometheus"
        self.config_file = self.home / "prometheus.yml"
        self.alertmanager_file = self.home / "alertmanager.yml"
        self.tsdb_dir = self.home / "tsdb"
        self.alertmanager_dir = self.home / "alertmanager"
        mon = settings.monitoring
        self.prometheus = Daemon(
            settings,
            "prometheus",
            self._prometheus_cmd,
            marker=(f"--config.file={self.config_file}",),
        )
        self.alertmanager = Daemon(
            settings,
            "alertmanager",
            self._alertmanager_cmd,
            marker=(f"--config.file={self.alertmanager_file}",),
        )
        self.monitor = Daemon(
            settings,
            "monitor",
            self._monitor_cmd,
            marker=(MONITOR_MODULE, str(self.data_root)),
            env={"PYTHONUNBUFFERED": "1"},
        )
        self.log_file = self.prometheus.log_file
        self._ready = {
            "prometheus": f"{mon.prometheus_url}/-/ready",
            "alertmanager": f"{mon.alertmanager_url}/-/ready",
            "monitor": f"{mon.monitor_url}/healthz",
        }

    @property
    def managed(self) -> bool:  # noqa: D102 (see base class)
        return True

    @property
    def daemons(self) -> list[Daemon]:
        """The three processes, in start order."""
        return [self.monitor, self.alertmanager, self.prometheus]

    @property
    def rules_source(self) -> Path:
        """The folder of alert rule files: ``monitoring.rules_dir`` or the shipped ones."""
        return self.settings.monitoring.rules_dir or default_rules_dir()

    @property
    def rules_dir(self) -> Path:
        """The folder of alert rule files Prometheus evaluates.

        :attr:`rules_source` itself, or its rendering under the data directory
        when ``monitoring.rule_for_s`` shortens every ``for:``.
        """
        if self.settings.monitoring.rule_for_s is not None:
            return self.home / "rules"
        return self.rules_source

    # -- configuration ---------------------------------------------------------------------

    def scrape_targets(self) -> dict[str, str]:
        """Scrape job name → ``host:port`` of every component serving ``/metrics``."""
        mon = self.settings.monitoring
        targets = {
            "pulsecast-prometheus": f"{mon.host}:{mon.prometheus_port}",
            "pulsecast-alertmanager": f"{mon.host}:{mon.alertmanager_port}",
            "pulsecast-monitor": f"{mon.host}:{mon.monitor_port}",
        }
        if self.settings.ingest.enabled:
            ingest = self.settings.ingest
            targets["pulsecast-ingest"] = f"{ingest.host}:{ingest.port}"
        if mon.job_metrics_port:
            targets["pulsecast-stream"] = f"{mon.host}:{mon.job_metrics_port}"
        return targets

    def prometheus_config(self) -> dict[str, Any]:
        """Prometheus's configuration: scrape targets, rules, Alertmanager."""
        mon = self.settings.monitoring
        return {
            "global": {
                "scrape_interval": duration(mon.scrape_interval_s),
                "scrape_timeout": duration(min(mon.scrape_interval_s, 10.0)),
                "evaluation_interval": duration(mon.evaluation_interval_s),
                "external_labels": {"platform": "pulsecast"},
            },
            "rule_files": [str(self.rules_dir / "*.yml")],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"{mon.host}:{mon.alertmanager_port}"]}]}
                ]
            },
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in self.scrape_targets().items()
            ],
        }

    def alertmanager_config(self) -> dict[str, Any]:
        """Alertmanager's configuration: every alert to the monitor's webhook (and email)."""
        mon = self.settings.monitoring
        receivers: list[dict[str, Any]] = [
            {
                "name": "pulsecast-webhook",
                "webhook_configs": [{"url": f"{mon.monitor_url}/alerts", "send_resolved": True}],
            }
        ]
        route: dict[str, Any] = {
            "receiver": "pulsecast-webhook",
            "group_by": ["alertname"],
            "group_wait": duration(mon.group_wait_s),
            "group_interval": duration(mon.group_interval_s),
            "repeat_interval": duration(mon.repeat_interval_s),
        }
        if mon.email_to:
            email: dict[str, Any] = {
                "to": mon.email_to,
                "from": mon.email_from,
                "smarthost": mon.smtp_smarthost,
                "require_tls": mon.smtp_require_tls,
                "send_resolved": True,
            }
            if mon.smtp_username:
                email["auth_username"] = mon.smtp_username
            if mon.smtp_password is not None:
                email["auth_password"] = mon.smtp_password.get_secret_value()
            receivers.append({"name": "pulsecast-email", "email_configs": [email]})
            route["routes"] = [
                {"receiver": "pulsecast-webhook", "continue": True},
                {"receiver": "pulsecast-email"},
            ]
        return {"route": route, "receivers": receivers}

    def write_config(self) -> None:
        """Write both configuration files (Alertmanager's readable by its owner only).

        The rules are rendered first when ``monitoring.rule_for_s`` is set.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        for_s = self.settings.monitoring.rule_for_s
        if for_s is not None:
            render_rules(self.rules_source, self.rules_dir, for_s=for_s)
        self.config_file.write_text(yaml.safe_dump(self.prometheus_config(), sort_keys=False))
        # It may hold the SMTP password.
        fd = os.open(self.alertmanager_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(yaml.safe_dump(self.alertmanager_config(), sort_keys=False))

    # -- command lines ---------------------------------------------------------------------

    def _binary(self, name: str, setting: str) -> str:
        found = shutil.which(name)
        if found is None:
            msg = (
                f"cannot start {self.name}: executable {name!r} ({setting}) not found; "
                "install Debian's prometheus and prometheus-alertmanager packages "
                "(scripts/system-deps.sh) or set the setting to its path"
            )
            raise ServiceError(msg)
        return found

    def _prometheus_cmd(self) -> list[str]:
        mon = self.settings.monitoring
        return [
            self._binary(mon.prometheus_binary, "monitoring.prometheus_binary"),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.tsdb_dir}",
            f"--storage.tsdb.retention.time={mon.retention_days}d",
            f"--web.listen-address={mon.host}:{mon.prometheus_port}",
            "--web.enable-lifecycle",
        ]

    def _alertmanager_cmd(self) -> list[str]:
        mon = self.settings.monitoring
        return [
            self._binary(mon.alertmanager_binary, "monitoring.alertmanager_binary"),
            f"--config.file={self.alertmanager_file}",
            f"--storage.path={self.alertmanager_dir}",
            f"--web.listen-address={mon.host}:{mon.alertmanager_port}",
            "--cluster.listen-address=",  # one instance: no gossip port
        ]

    def _monitor_cmd(self) -> list[str]:
        cmd = [sys.executable, "-m", MONITOR_MODULE]
        if self.settings.config_file is not None:
            cmd += ["--config", str(self.settings.config_file)]
        return [*cmd, "--data-dir", str(self.data_root)]

    # -- readiness -------------------------------------------------------------------------

    def _answers(self, daemon: str) -> bool:
        try:
            return httpx.get(self._ready[daemon], timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _died(self) -> str | None:
        for daemon in self.daemons:
            if daemon.pid is None:
                return f"{daemon.name} exited"
        return None

    def _reload(self) -> None:
        """Make the running Prometheus and Alertmanager read their configuration again."""
        mon = self.settings.monitoring
        for url in (mon.prometheus_url, mon.alertmanager_url):
            try:
                httpx.post(f"{url}/-/reload", timeout=10).raise_for_status()
            except httpx.HTTPError as exc:
                log.warning("%s did not reload its configuration: %s", url, exc)

    # -- the Service contract --------------------------------------------------------------

    def start(self) -> ServiceStatus:  # noqa: D102 (see base class)
        mon = self.settings.monitoring
        ports = {
            "prometheus": (mon.prometheus_port, "monitoring.prometheus_port"),
            "alertmanager": (mon.alertmanager_port, "monitoring.alertmanager_port"),
            "monitor": (mon.monitor_port, "monitoring.monitor_port"),
        }
        missing = [d for d in self.daemons if d.pid is None]
        # Both executables first: a missing one must not leave the others half started.
        self._binary(mon.prometheus_binary, "monitoring.prometheus_binary")
        self._binary(mon.alertmanager_binary, "monitoring.alertmanager_binary")
        for daemon in missing:
            check_port_free(daemon.name, mon.host, *ports[daemon.name])
        if not self.rules_source.is_dir():
            msg = (
                f"cannot start {self.name}: no alert rules folder {self.rules_source} "
                "(monitoring.rules_dir)"
            )
            raise ServiceError(msg)
        self.write_config()
        if not missing:
            self._reload()
            log.info("prometheus is already running; configuration reloaded")
            return self.status()
        for daemon in missing:
            daemon.start()
        for daemon in self.daemons:
            problem = wait_until(
                functools.partial(self._answers, daemon.name),
                timeout_s=mon.start_timeout_s,
                interval_s=0.25,
                abort=self._died,
            )
            if problem is not None:
                culprit = next((d for d in self.daemons if d.name in problem), daemon)
                self.stop()
                raise ServiceStartError(culprit.name, problem, culprit.log_file)
        log.info("prometheus is ready on %s", mon.prometheus_url)
        return self.status()

    def stop(self) -> bool:  # noqa: D102 (see base class)
        stopped = [daemon.stop() for daemon in reversed(self.daemons)]
        return any(stopped)

    def status(self) -> ServiceStatus:  # noqa: D102 (see base class)
        mon = self.settings.monitoring
        pids = {d.name: d.pid for d in self.daemons}
        running = all(pid is not None for pid in pids.values())
        if running:
            detail = (
                f"Alertmanager {mon.alertmanager_url} (pid {pids['alertmanager']}), "
                f"monitor {mon.monitor_url} (pid {pids['monitor']})"
            )
        elif any(pid is not None for pid in pids.values()):
            down = ", ".join(name for name, pid in pids.items() if pid is None)
            detail = f"{down} stopped: run up --with prometheus again"
        else:
            detail = "Prometheus + Alertmanager + monitor"
        binary = shutil.which(mon.prometheus_binary)
        return ServiceStatus(
            name=self.name,
            running=running,
            pid=pids["prometheus"] or pids["alertmanager"] or pids["monitor"],
            address=mon.prometheus_url,
            version=_version(binary) if binary else None,
            data_dir=str(self.home),
            log_file=str(self.prometheus.log_file),
            detail=detail,
            extra={
                "alertmanager_url": mon.alertmanager_url,
                "alertmanager_pid": str(pids["alertmanager"] or ""),
                "alertmanager_log": str(self.alertmanager.log_file),
                "monitor_url": mon.monitor_url,
                "monitor_pid": str(pids["monitor"] or ""),
                "monitor_log": str(self.monitor.log_file),
                "rules_dir": str(self.rules_dir),
            },
        )

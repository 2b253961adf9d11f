"""A local Spark standalone cluster: one master and one worker (``pulsecast up --with spark``).

Both daemons are started with pyspark's own ``bin/spark-class`` (the Spark the
job's driver uses, so versions always match), bound to
``spark_standalone.host`` (loopback by default), with a properties file and
work directory under ``<data_dir>/spark/``. ``start`` returns once the worker
has registered with the master, so a job submitted right after ``up`` gets
executors. Run the streaming job there by setting
``spark.master = "spark://127.0.0.1:7077"``
(:attr:`~pulsecast.config.SparkStandaloneSettings.master_url`); nothing else
changes.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import httpx

from pulsecast.config import Settings
from pulsecast.services.base import (
    Daemon,
    Service,
    ServiceStatus,
    check_port_free,
    wait_until,
)
from pulsecast.services.errors import ServiceStartError
from pulsecast.services.java import find_java

__all__ = ["MASTER_MAIN", "WORKER_MAIN", "SparkStandaloneService", "spark_home"]

log = logging.getLogger(__name__)

MASTER_MAIN = "org.apache.spark.deploy.master.Master"
WORKER_MAIN = "org.apache.spark.deploy.worker.Worker"


def spark_home() -> Path:
    """The Spark that pyspark ships (its ``bin/spark-class`` and ``jars/``)."""
    import pyspark

    return Path(pyspark.__file__).parent


class SparkStandaloneService(Service):
    """A Spark standalone master and one worker, started and stopped together."""

    name = "spark"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        c = settings.spark_standalone
        self.home = self.data_root / "spark"
        self.conf_dir = self.home / "conf"
        self.work_dir = self.home / "work"
        self.properties = self.conf_dir / "spark-defaults.conf"
        common = ["--host", c.host, "--properties-file", str(self.properties)]
        master_args = [
            MASTER_MAIN,
            "--port",
            str(c.master_port),
            "--webui-port",
            str(c.master_webui_port),
            *common,
        ]
        self.master = self._daemon("spark-master", master_args)
        worker_args = [
            WORKER_MAIN,
            c.master_url,
            "--webui-port",
            str(c.worker_webui_port),
            "--cores",
            str(c.worker_cores),
            "--memory",
            c.worker_memory,
            "--work-dir",
            str(self.work_dir),
            *common,
        ]
        self.worker = self._daemon("spark-worker", worker_args)
        self.log_file = self.master.log_file

    @property
    def managed(self) -> bool:  # noqa: D102 (see base class)
        return True

    def _daemon(self, name: str, args: list[str]) -> Daemon:
        # spark-class reads its settings from the environment; the properties
        # file is unique to this data directory, so it marks the process as ours.
        return Daemon(
            self.settings,
            name,
            lambda: [str(spark_home() / "bin" / "spark-class"), *args],
            marker=(args[0], str(self.properties)),
            env=self._env(),
        )

    def _env(self) -> dict[str, str]:
        c = self.settings.spark_standalone
        return {
            "SPARK_HOME": str(spark_home()),
            "SPARK_CONF_DIR": str(self.conf_dir),
            "SPARK_LOCAL_IP": c.host,
            "SPARK_DAEMON_MEMORY": f"{c.heap_mb}m",
            "SPARK_NO_DAEMONIZE": "1",
        }

    def _write_config(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # Finished applications' folders (their jars, logs) go after a day.
        self.properties.write_text(
            "spark.worker.cleanup.enabled true\n"
            "spark.worker.cleanup.appDataTtl 86400\n"
            "spark.ui.showConsoleProgress false\n"
        )

    def cluster_state(self) -> dict[str, Any] | None:
        """The master's JSON status (workers, applications), or None if it does not answer."""
        c = self.settings.spark_standalone
        try:
            reply = httpx.get(f"http://{c.host}:{c.master_webui_port}/json/", timeout=2.0)
            state: dict[str, Any] = reply.json()
        except (httpx.HTTPError, ValueError):
            return None
        return state

    def _ready(self) -> bool:
        state = self.cluster_state()
        return state is not None and any(
            w.get("state") == "ALIVE" for w in state.get("workers", [])
        )

    def _died(self) -> str | None:
        for daemon, what in ((self.master, "master"), (self.worker, "worker")):
            if daemon.pid is None:
                return f"the {what} exited"
        return None

    def start(self) -> ServiceStatus:  # noqa: D102 (see base class)
        c = self.settings.spark_standalone
        master_up, worker_up = self.master.pid is not None, self.worker.pid is not None
        if master_up and worker_up:
            log.info("spark is already running")
            return self.status()
        find_java(self.settings)  # one clear line when Java is missing
        if not master_up:
            check_port_free(self.name, c.host, c.master_port, "spark_standalone.master_port")
            check_port_free(
                self.name, c.host, c.master_webui_port, "spark_standalone.master_webui_port"
            )
        if not worker_up:
            check_port_free(
                self.name, c.host, c.worker_webui_port, "spark_standalone.worker_webui_port"
            )
        self._write_config()
        java_home = find_java(self.settings).parent.parent
        for daemon in (self.master, self.worker):
            daemon.env["JAVA_HOME"] = str(java_home)
        if not master_up:
            self.master.start()
        if not worker_up:
            self.worker.start()  # retries until the master answers
        problem = wait_until(
            self._ready, timeout_s=c.start_timeout_s, interval_s=0.5, abort=self._died
        )
        if problem is not None:
            culprit = self.worker if "worker" in problem else self.master
            self.stop()
            raise ServiceStartError(self.name, problem, culprit.log_file)
        log.info("spark standalone is ready at %s", c.master_url)
        return self.status()

    def stop(self) -> bool:  # noqa: D102 (see base class)
        worker = self.worker.stop()
        master = self.master.stop()
        if not (worker or master):
            return False
        shutil.rmtree(self.work_dir, ignore_errors=True)
        return True

    def status(self) -> ServiceStatus:  # noqa: D102 (see base class)
        c = self.settings.spark_standalone
        master, worker = self.master.pid, self.worker.pid
        if master is not None and worker is not None:
            detail = (
                f"master + worker ({c.worker_cores} cores, {c.worker_memory}), web UI "
                f'http://{c.host}:{c.master_webui_port}; spark.master = "{c.master_url}"'
            )
        elif master is None and worker is None:
            detail = "master + worker"
        else:
            up, down = ("master", "worker") if worker is None else ("worker", "master")
            detail = f"{up} running, {down} stopped: run up --with spark again"
        from pyspark import __version__

        return ServiceStatus(
            name=self.name,
            running=master is not None and worker is not None,
            managed=True,
            pid=master,
            address=c.master_url,
            version=__version__,
            data_dir=str(self.home),
            log_file=str(self.log_file),
            detail=detail,
        )

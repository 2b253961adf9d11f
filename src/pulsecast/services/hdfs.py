"""The local HDFS: one NameNode and one DataNode (``pulsecast up --with hdfs``).

Both daemons run as plain JVM processes from the jars of the ``hadoop``
profile of jvm/pom.xml (Hadoop 3.5.0, the version of the client inside
pyspark), with ``core-site.xml`` and ``hdfs-site.xml`` generated from the
``hdfs`` section of Settings under ``<data_dir>/hdfs/conf/``. The NameNode is
formatted on first start; every port binds to ``hdfs.host`` (loopback by
default). ``start`` returns once the NameNode is out of safe mode and the
DataNode has registered with its storage, so a write right after ``up``
succeeds. Permissions are on, as on any HDFS: the user who starts the
NameNode is its superuser, and on a single-user machine that is the same
user who runs the jobs.

Point the lake at it with ``lake.uri = hdfs://127.0.0.1:8020/pulsecast/lake``
(:attr:`~pulsecast.config.HdfsSettings.lake_uri`).
"""

from __future__ import annotations

import getpass
import json
import logging
import re
import shutil
import subprocess
from typing import Any
from xml.sax.saxutils import escape

import httpx

from pulsecast.config import Settings
from pulsecast.services.base import (
    Daemon,
    Service,
    ServiceStatus,
    check_port_free,
    port_open,
    wait_until,
)
from pulsecast.services.errors import ServiceStartError
from pulsecast.services.java import artifacts_dir, classpath, find_java

__all__ = ["DATANODE_MAIN", "NAMENODE_MAIN", "HdfsService"]

log = logging.getLogger(__name__)

NAMENODE_MAIN = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE_MAIN = "org.apache.hadoop.hdfs.server.datanode.DataNode"

# Hadoop 3.5 logs through reload4j (the log4j 1 API): one console appender, the
# daemon's output goes to its log file. Per-operation audit and trace lines are
# left out; so are two warnings that hold for every local install.
_LOG4J = """\
log4j.rootLogger=INFO, out
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.hadoop.hdfs.server.namenode.FSNamesystem.audit=WARN
log4j.logger.org.apache.hadoop.hdfs.server.datanode.DataNode.clienttrace=WARN
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
log4j.logger.org.apache.hadoop.security.authentication.server.AuthenticationFilter=ERROR
"""


def hadoop_xml(properties: dict[str, str]) -> str:
    """A Hadoop configuration file (``*-site.xml``) holding ``properties``."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<configuration>"]
    for name, value in properties.items():
        lines.append(
            f"  <property><name>{escape(name)}</name><value>{escape(value)}</value></property>"
        )
    lines.append("</configuration>")
    return "\n".join(lines) + "\n"


class HdfsService(Service):
    """The local HDFS: a NameNode and a DataNode, started and stopped together."""

    name = "hdfs"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.home = self.data_root / "hdfs"
        self.conf_dir = self.home / "conf"
        self.name_dir = self.home / "name"
        self.data_dir = self.home / "data"
        self.tmp_dir = self.home / "tmp"
        # Marks our daemons' command lines: a PID reused by another java is not ours.
        self._marker = f"-Dpulsecast.hdfs.home={self.home}"
        self.namenode = Daemon(
            settings,
            "hdfs-namenode",
            lambda: self._java_cmd(NAMENODE_MAIN),
            marker=(NAMENODE_MAIN, self._marker),
        )
        self.datanode = Daemon(
            settings,
            "hdfs-datanode",
            lambda: self._java_cmd(DATANODE_MAIN),
            marker=(DATANODE_MAIN, self._marker),
        )
        self.log_file = self.namenode.log_file
        self._waiting_for = "the NameNode"

    @property
    def managed(self) -> bool:  # noqa: D102 (see base class)
        return True

    # -- configuration ---------------------------------------------------------------------

    def core_site(self) -> str:
        """``core-site.xml``: the default file system and Hadoop's scratch space."""
        h = self.settings.hdfs
        return hadoop_xml(
            {
                "fs.defaultFS": h.uri,
                "hadoop.tmp.dir": str(self.tmp_dir),
                # The web UI's file browser acts as the user who runs the daemons.
                "hadoop.http.staticuser.user": getpass.getuser(),
            }
        )

    def hdfs_site(self) -> str:
        """``hdfs-site.xml``: storage folders, every address on ``hdfs.host``, one replica."""
        h = self.settings.hdfs
        return hadoop_xml(
            {
                "dfs.namenode.name.dir": self.name_dir.as_uri(),
                "dfs.datanode.data.dir": self.data_dir.as_uri(),
                "dfs.namenode.rpc-address": f"{h.host}:{h.namenode_port}",
                "dfs.namenode.http-address": f"{h.host}:{h.namenode_http_port}",
                "dfs.datanode.address": f"{h.host}:{h.datanode_port}",
                "dfs.datanode.http.address": f"{h.host}:{h.datanode_http_port}",
                "dfs.datanode.ipc.address": f"{h.host}:{h.datanode_ipc_port}",
                "dfs.replication": str(h.replication),
                "dfs.permissions.enabled": "true",
                # One DataNode: leave safe mode as soon as its blocks are reported.
                "dfs.namenode.safemode.extension": "0",
                "dfs.namenode.safemode.min.datanodes": "1",
            }
        )

    def _write_config(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "core-site.xml").write_text(self.core_site())
        (self.conf_dir / "hdfs-site.xml").write_text(self.hdfs_site())
        (self.conf_dir / "log4j.properties").write_text(_LOG4J)

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        java = find_java(self.settings)
        heap = self.settings.hdfs.heap_mb
        return [
            str(java),
            f"-Xms{heap}m",
            f"-Xmx{heap}m",
            "-Djava.net.preferIPv4Stack=true",
            "-Djava.awt.headless=true",
            self._marker,
            # Jetty unpacks the web UI here rather than in /tmp.
            f"-Djava.io.tmpdir={self.tmp_dir}",
            f"-Dhadoop.log.dir={self.log_file.parent}",
            f"-Dlog4j.configuration={(self.conf_dir / 'log4j.properties').as_uri()}",
            "-cp",
            # The configuration folder first: Hadoop reads *-site.xml from the classpath.
            f"{self.conf_dir}:{classpath(self.settings, 'hadoop')}",
            main,
            *args,
        ]

    def _format(self) -> None:
        if (self.name_dir / "current" / "VERSION").exists():
            return
        # Blocks of an earlier namespace would be refused (another cluster id).
        shutil.rmtree(self.data_dir, ignore_errors=True)
        log.info("formatting the HDFS NameNode in %s", self.name_dir)
        cmd = self._java_cmd(NAMENODE_MAIN, "-format", "-nonInteractive")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=180)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln]
            detail = lines[-1] if lines else f"exit code {proc.returncode}"
            reason = f"formatting the NameNode failed: {detail}"
            raise ServiceStartError(self.name, reason, None)

    # -- readiness -------------------------------------------------------------------------

    def _namenode_info(self) -> dict[str, Any] | None:
        """The NameNode's ``NameNodeInfo`` bean from its JMX servlet, or None."""
        h = self.settings.hdfs
        url = f"http://{h.host}:{h.namenode_http_port}/jmx"
        try:
            reply = httpx.get(
                url, params={"qry": "Hadoop:service=NameNode,name=NameNodeInfo"}, timeout=2
            )
            beans = reply.json()["beans"] if reply.status_code == 200 else []
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        return beans[0] if beans else None

    def _accepts_writes(self) -> bool:
        """NameNode answering, out of safe mode, and our DataNode live with its storage."""
        h = self.settings.hdfs
        self._waiting_for = "the NameNode"
        if not port_open(h.host, h.namenode_port):
            return False
        info = self._namenode_info()
        if info is None:
            return False
        self._waiting_for = "the DataNode to register"
        address = f"{h.host}:{h.datanode_port}"
        nodes = json.loads(info.get("LiveNodes") or "{}").values()
        if not any(n.get("xferaddr") == address and n.get("capacity", 0) > 0 for n in nodes):
            return False
        self._waiting_for = "the NameNode to leave safe mode"
        return not info.get("Safemode")

    def _died(self) -> str | None:
        for daemon, what in ((self.namenode, "NameNode"), (self.datanode, "DataNode")):
            if daemon.pid is None:
                return f"the {what} exited"
        return None

    # -- the Service contract --------------------------------------------------------------

    def start(self) -> ServiceStatus:  # noqa: D102 (see base class)
        h = self.settings.hdfs
        namenode_up = self.namenode.pid is not None
        datanode_up = self.datanode.pid is not None
        if namenode_up and datanode_up:
            log.info("hdfs is already running")
            return self.status()
        if not namenode_up:
            check_port_free(self.name, h.host, h.namenode_port, "hdfs.namenode_port")
            check_port_free(self.name, h.host, h.namenode_http_port, "hdfs.namenode_http_port")
        if not datanode_up:
            check_port_free(self.name, h.host, h.datanode_port, "hdfs.datanode_port")
            check_port_free(self.name, h.host, h.datanode_http_port, "hdfs.datanode_http_port")
            check_port_free(self.name, h.host, h.datanode_ipc_port, "hdfs.datanode_ipc_port")
        self._write_config()
        if not namenode_up and not datanode_up:
            # Web UIs a stopped daemon unpacked (Jetty leaves them behind).
            for stale in self.tmp_dir.glob("jetty-*"):
                shutil.rmtree(stale, ignore_errors=True)
        if not namenode_up:
            self._format()
            self.namenode.start()
        if not datanode_up:
            # Started together: the DataNode retries until the NameNode answers.
            self.datanode.start()
        problem = wait_until(
            self._accepts_writes, timeout_s=h.start_timeout_s, interval_s=0.5, abort=self._died
        )
        if problem is not None:
            if problem.startswith("not ready"):
                problem = f"{problem} (waiting for {self._waiting_for})"
            culprit = self.datanode if "DataNode" in problem else self.namenode
            self.stop()
            raise ServiceStartError(self.name, problem, culprit.log_file)
        log.info("hdfs is ready at %s", h.uri)
        return self.status()

    def stop(self) -> bool:  # noqa: D102 (see base class)
        datanode = self.datanode.stop()
        namenode = self.namenode.stop()
        return datanode or namenode

    def version(self) -> str | None:
        """Hadoop's version, from the resolved hadoop-hdfs jar."""
        try:
            folder = artifacts_dir(self.settings, "hadoop")
        except OSError:
            return None
        for jar in folder.glob("hadoop-hdfs-*.jar"):
            match = re.match(r"hadoop-hdfs-(\d[^-]*)\.jar$", jar.name)
            if match:
                return match.group(1)
        return None

    def status(self) -> ServiceStatus:  # noqa: D102 (see base class)
        h = self.settings.hdfs
        namenode, datanode = self.namenode.pid, self.datanode.pid
        if namenode is not None and datanode is not None:
            detail = (
                f"NameNode + DataNode (pid {datanode}), web UI "
                f'http://{h.host}:{h.namenode_http_port}; lake.uri = "{h.lake_uri}"'
            )
        elif namenode is None and datanode is None:
            detail = "NameNode + DataNode"
        else:
            up, down = ("NameNode", "DataNode") if datanode is None else ("DataNode", "NameNode")
            detail = f"{up} running, {down} stopped: run up --with hdfs again"
        return ServiceStatus(
            name=self.name,
            running=namenode is not None and datanode is not None,
            pid=namenode or datanode,
            address=h.uri,
            version=self.version(),
            data_dir=str(self.home),
            log_file=str(self.namenode.log_file),
            detail=detail,
            extra={
                "datanode_pid": str(datanode or ""),
                "datanode_log": str(self.datanode.log_file),
                "web_ui": f"http://{h.host}:{h.namenode_http_port}",
                "lake_uri": h.lake_uri,
                "checkpoint_uri": h.checkpoint_uri,
            },
        )

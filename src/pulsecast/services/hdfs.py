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

In secure mode (``security.enabled``) the daemons also:

- encrypt block data between clients and the DataNode (``dfs.encrypt.data.transfer``
  with AES/CTR, keys handed out by the NameNode with block access tokens; no
  Kerberos needed). RPC to the NameNode (paths, file names, no data) stays
  plaintext: protecting it needs Kerberos, which is not provided;
- serve their web UIs, JMX and WebHDFS over HTTPS only, with the ``hdfs``
  server certificate of the local CA (``ssl-server.xml``, ``0600``);
- enforce owner permissions and ACLs: on start, the lake root and its zones
  (bronze, silver, gold, state) and the checkpoint root are made owner-only
  (``0700``) with default ACLs that every new file and folder inherits, so new
  files are owner-only whatever the writing client's umask; ``hdfs.readers``
  get read-only access (``r-x``) to silver and gold. HDFS's "simple"
  authentication trusts the user name a client claims (``HADOOP_USER_NAME``):
  this stops other local users' tools and mistakes, not someone who lies.
"""

from __future__ import annotations

import getpass
import json
import logging
import posixpath
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import httpx

from pulsecast.config import Settings
from pulsecast.security import security_dir, write_private
from pulsecast.security.certs import leaf_dir, read_keystore_password
from pulsecast.security.errors import SecurityError
from pulsecast.security.tls import http_verify
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

__all__ = [
    "CIPHER_SUITE",
    "DATANODE_MAIN",
    "NAMENODE_MAIN",
    "READER_ZONES",
    "ZONES",
    "HdfsService",
    "hadoop_xml",
]

log = logging.getLogger(__name__)

NAMENODE_MAIN = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE_MAIN = "org.apache.hadoop.hdfs.server.datanode.DataNode"

#: The lake's zones (folders under its root, see pulsecast.lake.tables).
ZONES = ("bronze", "silver", "gold", "state")
#: The zones ``hdfs.readers`` may read in secure mode: validated events and aggregates.
#: Bronze holds records as received (rejected ones too) and state the job's internals.
READER_ZONES = ("silver", "gold")
#: Block data on the wire: AES in counter mode, 256-bit keys negotiated per connection.
CIPHER_SUITE = "AES/CTR/NoPadding"
# What a secure HDFS's web server calls a request without a user name: a user with no rights.
_ANONYMOUS = "dr.who"

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


def _path_of(uri: str) -> str:
    """The path part of an ``hdfs://`` URI (``/pulsecast/lake``)."""
    return urlsplit(uri).path.rstrip("/") or "/"


def _remote_error(reply: httpx.Response) -> str:
    """The message of a WebHDFS error reply (its ``RemoteException``), else its status."""
    try:
        return str(reply.json()["RemoteException"]["message"]).splitlines()[0]
    except (ValueError, KeyError, TypeError, IndexError):
        return f"HTTP {reply.status_code}"


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

    @property
    def secure(self) -> bool:
        """Whether the daemons run in secure mode (``security.enabled``)."""
        return self.settings.security.enabled

    @property
    def keystore(self) -> Path:
        """The web servers' TLS key and certificate chain (PKCS#12, from ``security init``)."""
        return leaf_dir(security_dir(self.settings), "server", "hdfs") / "keystore.p12"

    @property
    def web_url(self) -> str:
        """The NameNode's web UI (``https://`` in secure mode)."""
        h = self.settings.hdfs
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{h.host}:{h.namenode_http_port}"

    # -- configuration ---------------------------------------------------------------------

    def core_site(self) -> str:
        """``core-site.xml``: the default file system and Hadoop's scratch space."""
        h = self.settings.hdfs
        props = {
            "fs.defaultFS": h.uri,
            "hadoop.tmp.dir": str(self.tmp_dir),
            # The web UI's file browser acts as the user who runs the daemons.
            "hadoop.http.staticuser.user": getpass.getuser(),
        }
        if self.secure:
            props.update(
                {
                    # A request without a user name is nobody, not the superuser.
                    "hadoop.http.staticuser.user": _ANONYMOUS,
                    "hadoop.http.authentication.simple.anonymous.allowed": "false",
                    # Clients reading this file (the daemons, hdfs dfs) create owner-only.
                    "fs.permissions.umask-mode": "077",
                    # AES/CTR in Java: no attempt (and warning) to load native OpenSSL.
                    "hadoop.security.crypto.codec.classes.aes.ctr.nopadding": (
                        "org.apache.hadoop.crypto.JceAesCtrCryptoCodec"
                    ),
                }
            )
        return hadoop_xml(props)

    def hdfs_site(self) -> str:
        """``hdfs-site.xml``: storage folders, every address on ``hdfs.host``, one replica.

        In secure mode also encrypted block transfer, HTTPS only, and ACLs.
        """
        h = self.settings.hdfs
        props = {
            "dfs.namenode.name.dir": self.name_dir.as_uri(),
            "dfs.datanode.data.dir": self.data_dir.as_uri(),
            "dfs.namenode.rpc-address": f"{h.host}:{h.namenode_port}",
            "dfs.namenode.http-address": f"{h.host}:{h.namenode_http_port}",
            "dfs.datanode.address": f"{h.host}:{h.datanode_port}",
            "dfs.datanode.http.address": f"{h.host}:{h.datanode_http_port}",
            "dfs.datanode.ipc.address": f"{h.host}:{h.datanode_ipc_port}",
            "dfs.replication": str(h.replication),
            "dfs.permissions.enabled": "true",
            # Hadoop's default since 3.3, said in both modes: a NameNode whose namespace
            # holds ACLs (set in secure mode) refuses to start with them off.
            "dfs.namenode.acls.enabled": "true",
            # One DataNode: leave safe mode as soon as its blocks are reported.
            "dfs.namenode.safemode.extension": "0",
            "dfs.namenode.safemode.min.datanodes": "1",
        }
        if h.datanode_hostname is not None:
            props["dfs.datanode.hostname"] = h.datanode_hostname
        if self.secure:
            props.update(
                {
                    # The NameNode hands each client a data encryption key (with a block
                    # access token); client and DataNode then agree on an AES key by SASL.
                    "dfs.block.access.token.enable": "true",
                    "dfs.encrypt.data.transfer": "true",
                    "dfs.encrypt.data.transfer.cipher.suites": CIPHER_SUITE,
                    "dfs.encrypt.data.transfer.cipher.key.bitlength": "256",
                    # Web UIs, JMX and WebHDFS: HTTPS on the same ports, no plain HTTP.
                    "dfs.http.policy": "HTTPS_ONLY",
                    "dfs.namenode.https-address": f"{h.host}:{h.namenode_http_port}",
                    "dfs.datanode.https.address": f"{h.host}:{h.datanode_http_port}",
                }
            )
        return hadoop_xml(props)

    def ssl_server(self, keystore_password: str) -> str:
        """``ssl-server.xml``: the web servers' keystore, the ``hdfs`` leaf of the local CA."""
        return hadoop_xml(
            {
                "ssl.server.keystore.type": "pkcs12",
                "ssl.server.keystore.location": str(self.keystore),
                "ssl.server.keystore.password": keystore_password,
                "ssl.server.keystore.keypassword": keystore_password,
            }
        )

    def _write_config(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        ssl_server = self.conf_dir / "ssl-server.xml"
        if self.secure:
            # Block files, fsimage and the keystore's password: the daemons' user only.
            for folder in (self.home, self.conf_dir):
                folder.chmod(0o700)
            try:
                password = read_keystore_password(self.keystore.parent)
            except SecurityError as exc:
                raise ServiceStartError(self.name, str(exc), None) from exc
            write_private(ssl_server, self.ssl_server(password).encode())
        else:
            ssl_server.unlink(missing_ok=True)
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
        try:
            reply = httpx.get(
                f"{self.web_url}/jmx",
                params={
                    "qry": "Hadoop:service=NameNode,name=NameNodeInfo",
                    # Secure mode refuses requests without a user name.
                    "user.name": getpass.getuser(),
                },
                timeout=2,
                verify=http_verify(self.settings),
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

    # -- owner permissions and ACLs (secure mode) ------------------------------------------

    def _roots(self) -> tuple[str, str]:
        """The paths of the lake and of the checkpoints that secure mode protects."""
        s, hdfs = self.settings, self.settings.hdfs
        lake = s.lake_uri if hdfs.serves(s.lake_uri) else hdfs.lake_uri
        checkpoints = s.checkpoint_uri if hdfs.serves(s.checkpoint_uri) else hdfs.checkpoint_uri
        return _path_of(lake), _path_of(checkpoints)

    def protected_paths(self) -> dict[str, str]:
        """The HDFS folders secure mode protects, with their ACLs.

        The lake root is ``lake.uri`` when it is on this HDFS, else
        ``hdfs.lake_uri``; the same for the checkpoints. Each folder belongs to
        the daemons' user (HDFS's superuser) with mode ``0700``, and its default
        ACL (what new children inherit) is owner-only too: a file written there
        later is owner-only whatever the writing client's umask. ``hdfs.readers``
        may traverse the lake root (``--x``) and read silver and gold (``r-x``),
        and every file and folder created there later.

        Returns:
            The ACL spec (WebHDFS ``aclspec``) of each folder, by path.
        """
        hdfs = self.settings.hdfs
        lake, checkpoints = self._roots()
        owner = ["user::rwx", "group::---", "other::---"]
        inherit = [f"default:{entry}" for entry in owner]

        def readers(perm: str) -> list[str]:
            if not hdfs.readers:
                return []
            return [*(f"user:{r}:{perm}" for r in hdfs.readers), f"mask::{perm}"]

        specs = {checkpoints: owner + inherit, lake: owner + readers("--x") + inherit}
        for zone in ZONES:
            spec = owner + inherit
            if zone in READER_ZONES:
                spec = owner + readers("r-x") + inherit
                spec += [f"default:{entry}" for entry in readers("r-x")]
            specs[posixpath.join(lake, zone)] = spec
        return {path: ",".join(spec) for path, spec in specs.items()}

    def _webhdfs(self, path: str, op: str, method: str = "PUT", **params: str) -> httpx.Response:
        """One WebHDFS call (``PUT`` unless said) as the daemons' user (the superuser)."""
        return httpx.request(
            method,
            f"{self.web_url}/webhdfs/v1{path}",
            params={"op": op, "user.name": getpass.getuser(), **params},
            timeout=30,
            verify=http_verify(self.settings),
        )

    def _webhdfs_json(self, path: str, op: str) -> dict[str, Any]:
        """A WebHDFS ``GET``'s answer (``LISTSTATUS``, ``GETACLSTATUS``).

        Raises:
            ServiceStartError: The NameNode refused it.
        """
        answer: dict[str, Any] = self._checked("read", path, op, "GET", {}).json()
        return answer

    def _grants_for_existing(self, zone: str) -> list[tuple[str, str, dict[str, str]]]:
        """ACL changes that let ``hdfs.readers`` read what ``zone`` held before its ACL.

        A default ACL reaches only what is created under a folder after it:
        tables (and their partition folders and files) written before secure
        mode, or by a client's owner-only umask before the zone had its ACL,
        would stay out of the readers' reach. Each folder under the zone that
        lacks the readers' default entries gets them, owner-only defaults and
        read access; each file under it, read access. A table folder that
        has them already was created under the zone's ACL (or granted at an
        earlier start) and is skipped whole, so later starts list only the
        zone's own entries.
        """
        readers = self.settings.hdfs.readers
        wanted = {f"default:user:{r}:r-x" for r in readers}
        folder_spec = ",".join(
            [
                *(f"user:{r}:r-x" for r in readers),
                "mask::r-x",
                "default:user::rwx",
                "default:group::---",
                "default:other::---",
                *sorted(wanted),
                "default:mask::r-x",
            ]
        )
        file_spec = ",".join([*(f"user:{r}:r--" for r in readers), "mask::r--"])
        grants: list[tuple[str, str, dict[str, str]]] = []

        def entries(path: str) -> list[dict[str, Any]]:
            listing = self._webhdfs_json(path, "LISTSTATUS")
            found: list[dict[str, Any]] = listing["FileStatuses"]["FileStatus"]
            return found

        for table in entries(zone):
            top = posixpath.join(zone, table["pathSuffix"])
            if table["type"] == "DIRECTORY":
                acl = self._webhdfs_json(top, "GETACLSTATUS")["AclStatus"]["entries"]
                if wanted <= set(acl):
                    continue
            stack, changes = [(top, table["type"])], []
            while stack:
                path, kind = stack.pop()
                if kind != "DIRECTORY":
                    changes.append((path, "MODIFYACLENTRIES", {"aclspec": file_spec}))
                    continue
                changes.append((path, "MODIFYACLENTRIES", {"aclspec": folder_spec}))
                stack += [(posixpath.join(path, e["pathSuffix"]), e["type"]) for e in entries(path)]
            # Children first: the table folder's default entries mark it done, so they
            # come last, and a start that fails halfway does it again at the next one.
            grants += reversed(changes)
        return grants

    def protect_paths(self) -> None:
        """Create the lake's and the checkpoints' folders owner-only, with their ACLs.

        Idempotent: runs on every secure start. What silver and gold held
        before gets the readers' access too (see :meth:`_grants_for_existing`);
        bronze's, state's and the checkpoints' older files keep their own
        permissions, behind their owner-only folders.

        Raises:
            ServiceStartError: The NameNode refused a change.
        """
        specs = self.protected_paths()
        lake = self._roots()[0]
        steps = [(path, "MKDIRS", {"permission": "700"}) for path in specs]
        steps += [(path, "SETACL", {"aclspec": spec}) for path, spec in specs.items()]
        readers = self.settings.hdfs.readers
        if readers:
            # The lake's parents (made 0700 by MKDIRS if they were missing) let readers through.
            traverse = ",".join(f"user:{r}:--x" for r in readers)
            parents = [posixpath.dirname(lake)]
            while parents[-1] != "/":
                parents.append(posixpath.dirname(parents[-1]))
            steps += [(p, "MODIFYACLENTRIES", {"aclspec": traverse}) for p in parents[:-1]]
        for path, op, params in steps:
            self._protect(path, op, params)
        if readers:
            for zone in READER_ZONES:
                for path, op, params in self._grants_for_existing(posixpath.join(lake, zone)):
                    self._protect(path, op, params)
        log.info("hdfs: %s owner-only; readers %s may read silver and gold", lake, readers)

    def _protect(self, path: str, op: str, params: dict[str, str]) -> None:
        """One change of :meth:`protect_paths` (raises ServiceStartError if refused)."""
        self._checked("protect", path, op, "PUT", params)

    def _checked(
        self, doing: str, path: str, op: str, method: str, params: dict[str, str]
    ) -> httpx.Response:
        """A WebHDFS call that must succeed: ServiceStartError if it fails or is refused."""
        try:
            reply = self._webhdfs(path, op, method, **params)
        except httpx.HTTPError as exc:
            reason = f"could not {doing} {path} ({op}): {exc}"
            raise ServiceStartError(self.name, reason, self.namenode.log_file) from exc
        if reply.status_code != 200:
            reason = f"could not {doing} {path} ({op}): {_remote_error(reply)}"
            raise ServiceStartError(self.name, reason, self.namenode.log_file)
        return reply

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
        if self.secure:
            try:
                self.protect_paths()
            except ServiceStartError:
                self.stop()  # not up with an unprotected lake
                raise
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
                f'{self.web_url}; lake.uri = "{h.lake_uri}"'
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
                "web_ui": self.web_url,
                "lake_uri": h.lake_uri,
                "checkpoint_uri": h.checkpoint_uri,
            },
        )

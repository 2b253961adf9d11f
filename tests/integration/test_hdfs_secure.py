"""Secure mode on a real HDFS: encrypted block data, HTTPS only, an owner-only lake with ACLs.

The module starts its own SECURE NameNode and DataNode through pulsecast's
launcher (free ports, ``security init`` first), and, for the wire check's
control, a PLAIN one. Each DataNode tells clients its data port is on
127.0.0.2 (``hdfs.datanode_hostname``; all of 127.0.0.0/8 is loopback), where
a raw TCP proxy relays to the DataNode on 127.0.0.1 and records every byte: a
marker written through the secure HDFS must be absent from the capture, and
present in the plain one. Hadoop clients run in the suite's Spark JVM (its
``FileSystem`` API, as any user name, with the configuration
``spark_session`` gives Spark); the Delta write runs in a Spark of its own,
built by ``spark_session`` from the secure settings, as the job's is.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import deltalake
import httpx
import pytest
from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from pulsecast.config import Settings, load_settings
from pulsecast.security.check import security_check
from pulsecast.security.mode import initialise
from pulsecast.security.tls import http_verify
from pulsecast.services.errors import ServiceError
from pulsecast.services.hdfs import HdfsService
from pulsecast.stream.session import spark_conf

from .conftest import hdfs_ports
from .wiretap import WireTap

#: Where each DataNode says its data port is: a loopback address the tap listens on.
DATANODE_ALIAS = "127.0.0.2"
MARKER = b"PULSECAST-HDFS-WIRE-MARKER-"
OTHER_USER = "someone-else"
READER = "analyst"
# What a DataNode logs when a client skips the encryption handshake.
NO_HANDSHAKE = "Failed to read expected encryption handshake from client"


@dataclass
class TappedHdfs:
    """An HDFS and the tap every client's block data goes through."""

    service: HdfsService
    tap: WireTap
    config: Path

    @property
    def settings(self) -> Settings:
        return self.service.settings

    @property
    def lake(self) -> str:
        return self.settings.lake_uri


def _write_toml(root: Path, *, secure: bool) -> Path:
    """A pulsecast.toml for an HDFS on free ports with the lake and checkpoints on it."""
    ports = hdfs_ports()
    uri = f"hdfs://127.0.0.1:{ports['namenode_port']}"
    lines = [
        "[paths]",
        f'data_dir = "{root / "state"}"',
        "[hdfs]",
        *(f"{name} = {port}" for name, port in ports.items()),
        f'datanode_hostname = "{DATANODE_ALIAS}"',
        "heap_mb = 192",
        "[security]",
        f"enabled = {str(secure).lower()}",
        # The Parquet files' own encryption is tested in test_lake_encryption.py.
        "encrypt_lake = false",
        "[lake]",
        f'uri = "{uri}/pulsecast/lake"',
        "[stream]",
        f'checkpoint_uri = "{uri}/pulsecast/checkpoints"',
        "[spark]",
        'master = "local[1]"',
        "shuffle_partitions = 1",
        'driver_memory = "512m"',
    ]
    path = root / "pulsecast.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _running(root: Path, *, secure: bool) -> Iterator[TappedHdfs]:
    config = _write_toml(root, secure=secure)
    settings = load_settings(config)
    if secure:
        initialise(settings)
    service = HdfsService(settings)
    h = settings.hdfs
    tap = WireTap(h.datanode_port, port=h.datanode_port, host=DATANODE_ALIAS)
    try:
        try:
            service.start()
        except ServiceError as exc:
            pytest.fail(f"HDFS did not start: {exc}", pytrace=False)
        yield TappedHdfs(service, tap, config)
    finally:
        service.stop()
        tap.close()


@pytest.fixture(scope="session")
def secure_hdfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TappedHdfs]:
    """One secure HDFS (NameNode + DataNode) for the session, behind its tap."""
    yield from _running(tmp_path_factory.mktemp("hdfs-secure"), secure=True)


@pytest.fixture(scope="module")
def plain_hdfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TappedHdfs]:
    """The control: the same HDFS and tap without secure mode."""
    yield from _running(tmp_path_factory.mktemp("hdfs-plain"), secure=False)


def lake_path(hdfs: TappedHdfs) -> str:
    return urlsplit(hdfs.lake).path


# -- Hadoop clients in the suite's Spark JVM ----------------------------------------------------


class HadoopClient:
    """A Hadoop ``FileSystem`` of one HDFS as one user, configured as pulsecast's Spark is."""

    def __init__(self, spark: SparkSession, settings: Settings, user: str) -> None:
        jvm = spark._jvm
        assert jvm is not None
        self._jvm = jvm
        conf = jvm.org.apache.hadoop.conf.Configuration(spark._jsc.hadoopConfiguration())
        for key, value in spark_conf(settings, []).items():
            if key.startswith("spark.hadoop."):
                conf.set(key.removeprefix("spark.hadoop."), value)
        uri = jvm.java.net.URI(settings.hdfs.uri)
        # A new instance, not the cached one: the user name is the client's claim.
        self.fs: Any = jvm.org.apache.hadoop.fs.FileSystem.newInstance(uri, conf, user)

    def path(self, path: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def write(self, path: str, data: bytes) -> None:
        out = self.fs.create(self.path(path), True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()

    def read(self, path: str) -> bytes:
        stream = self.fs.open(self.path(path))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def list(self, path: str) -> list[str]:
        return [s.getPath().getName() for s in self.fs.listStatus(self.path(path))]

    def delete(self, path: str) -> bool:
        return bool(self.fs.delete(self.path(path), True))

    def mkdir(self, path: str) -> bool:
        return bool(self.fs.mkdirs(self.path(path)))

    def permission_of(self, mode: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.permission.FsPermission(mode)

    def permission(self, path: str) -> str:
        status = self.fs.getFileStatus(self.path(path))
        acl = "+" if status.hasAcl() else ""
        return f"{status.getPermission().toString()}{acl}"

    def files(self, path: str) -> list[str]:
        found, listing = [], self.fs.listFiles(self.path(path), True)
        while listing.hasNext():
            found.append(listing.next().getPath().toUri().getPath())
        return found

    def close(self) -> None:
        self.fs.close()


@pytest.fixture
def client_factory(spark: SparkSession) -> Iterator[Any]:
    clients: list[HadoopClient] = []

    def make(hdfs: TappedHdfs, user: str) -> HadoopClient:
        client = HadoopClient(spark, hdfs.settings, user)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def refused(call: Any, *args: object) -> str:
    """The AccessControlException a Hadoop call raised (the test fails if it did not)."""
    with pytest.raises(Py4JJavaError) as info:
        call(*args)
    text = str(info.value.java_exception)
    assert "AccessControlException" in text, text
    return text


# -- wire encryption --------------------------------------------------------------------------


def test_hdfs_block_data_is_encrypted_on_the_wire(
    secure_hdfs: TappedHdfs, plain_hdfs: TappedHdfs, client_factory: Any
) -> None:
    data = MARKER * 200
    captures = {}
    for hdfs in (secure_hdfs, plain_hdfs):
        owner = client_factory(hdfs, getpass.getuser())
        target = f"{lake_path(hdfs)}/bronze/wire-{uuid.uuid4().hex[:8]}.bin"
        hdfs.tap.clear()
        owner.write(target, data)
        assert owner.read(target) == data
        captures[hdfs.settings.security.enabled] = hdfs.tap.captured()
    secure, plain = captures[True], captures[False]
    # Both went through the tap: the block was written and read back through it...
    assert len(secure) > 2 * len(data)
    assert len(plain) > 2 * len(data)
    # ... in plaintext without secure mode, never with it.
    assert MARKER in plain
    assert MARKER[:12] not in secure


def test_hdfs_datanode_refuses_a_client_that_does_not_encrypt(
    secure_hdfs: TappedHdfs, client_factory: Any
) -> None:
    owner = client_factory(secure_hdfs, getpass.getuser())
    owner.write(f"{lake_path(secure_hdfs)}/bronze/refuse-{uuid.uuid4().hex[:8]}.bin", MARKER)
    log = secure_hdfs.service.datanode.log_file
    before = log.read_text(errors="replace").count(NO_HANDSHAKE)
    # A client that asks for no data encryption key starts with the transfer
    # protocol's version (28) and an op code, not with SASL's magic number.
    h = secure_hdfs.settings.hdfs
    with socket.create_connection((h.host, h.datanode_port), timeout=10) as sock:
        sock.sendall(b"\x00\x1c\x51" + b"\x00" * 61)
        sock.settimeout(10)
        try:
            reply = sock.recv(4096)
        except OSError:  # reset by the DataNode
            reply = b""
    assert reply == b""
    deadline = time.monotonic() + 10
    while log.read_text(errors="replace").count(NO_HANDSHAKE) == before:
        assert time.monotonic() < deadline, f"no refusal logged in {log}"
        time.sleep(0.2)


# -- owner permissions and ACLs ------------------------------------------------------------------


def test_hdfs_lake_zones_are_owner_only_with_read_only_readers(
    secure_hdfs: TappedHdfs, client_factory: Any
) -> None:
    lake = lake_path(secure_hdfs)
    owner = client_factory(secure_hdfs, getpass.getuser())
    name = uuid.uuid4().hex[:8]
    files = {zone: f"{lake}/{zone}/acl-{name}/part-0.bin" for zone in ("bronze", "silver", "gold")}
    for zone, path in files.items():
        owner.write(path, MARKER + zone.encode())
    assert owner.permission(lake) == "rwx--x---+"
    assert owner.permission(f"{lake}/bronze") == "rwx------+"
    assert owner.permission(f"{lake}/gold") == "rwxr-x---+"
    # New files inherit the zone's default ACL, whatever the client's umask.
    assert owner.permission(files["bronze"]) == "rw-------"  # a minimal ACL: mode bits only
    assert owner.permission(files["silver"]) == "rw-r-----+"
    assert owner.permission(f"{lake}/gold/acl-{name}") == "rwxr-x---+"

    other = client_factory(secure_hdfs, OTHER_USER)
    for zone, path in files.items():
        refused(other.read, path)
        refused(other.list, f"{lake}/{zone}")
        refused(other.write, f"{lake}/{zone}/acl-{name}/intruder.bin", b"x")
        refused(other.delete, path)
    refused(other.mkdir, f"{lake}/intruder")
    refused(other.list, lake)

    reader = client_factory(secure_hdfs, READER)
    assert reader.read(files["gold"]) == MARKER + b"gold"
    assert reader.read(files["silver"]) == MARKER + b"silver"
    assert f"acl-{name}" in reader.list(f"{lake}/gold")
    refused(reader.read, files["bronze"])
    refused(reader.list, f"{lake}/bronze")
    refused(reader.list, f"{lake}/state")
    refused(reader.list, lake)  # may pass through the root, not list it
    refused(reader.write, f"{lake}/gold/acl-{name}/intruder.bin", b"x")
    refused(reader.write, files["gold"], b"overwritten")
    refused(reader.mkdir, f"{lake}/gold/intruder")
    refused(reader.delete, files["gold"])
    refused(reader.delete, f"{lake}/silver/acl-{name}")
    refused(reader.list, urlsplit(secure_hdfs.settings.checkpoint_uri).path)
    assert owner.read(files["gold"]) == MARKER + b"gold"


def test_hdfs_protection_is_reapplied_on_start(
    secure_hdfs: TappedHdfs, client_factory: Any
) -> None:
    owner = client_factory(secure_hdfs, getpass.getuser())
    gold = f"{lake_path(secure_hdfs)}/gold"
    owner.fs.removeAcl(owner.path(gold))
    owner.fs.setPermission(owner.path(gold), owner.permission_of("755"))
    assert owner.permission(gold) == "rwxr-xr-x"
    secure_hdfs.service.protect_paths()  # what every secure start runs
    assert owner.permission(gold) == "rwxr-x---+"
    acl = [e.toString() for e in owner.fs.getAclStatus(owner.path(gold)).getEntries()]
    assert "user:analyst:r-x" in acl and "default:user:analyst:r-x" in acl


def test_hdfs_readers_get_what_silver_held_before_it_was_protected(
    secure_hdfs: TappedHdfs, client_factory: Any
) -> None:
    owner = client_factory(secure_hdfs, getpass.getuser())
    table = f"{lake_path(secure_hdfs)}/silver/old-{uuid.uuid4().hex[:8]}"
    part = f"{table}/event_date=2026-05-01"
    owner.write(f"{part}/part-0.bin", MARKER + b"old")
    # As a table written before secure mode (or under an owner-only umask) is: no ACLs.
    for path, mode in ((table, "700"), (part, "700"), (f"{part}/part-0.bin", "600")):
        owner.fs.removeAcl(owner.path(path))
        owner.fs.setPermission(owner.path(path), owner.permission_of(mode))
    reader = client_factory(secure_hdfs, READER)
    refused(reader.read, f"{part}/part-0.bin")

    secure_hdfs.service.protect_paths()  # what every secure start runs
    assert reader.read(f"{part}/part-0.bin") == MARKER + b"old"
    owner.write(f"{part}/part-1.bin", MARKER + b"new")  # inherits the readers' access now
    assert reader.read(f"{part}/part-1.bin") == MARKER + b"new"
    assert reader.list(table) == ["event_date=2026-05-01"]
    refused(reader.write, f"{part}/part-2.bin", b"x")
    other = client_factory(secure_hdfs, OTHER_USER)
    refused(other.read, f"{part}/part-0.bin")
    assert owner.permission(f"{part}/part-1.bin") == "rw-r-----+"


# -- HTTPS ----------------------------------------------------------------------------------------


def test_hdfs_web_ui_and_webhdfs_are_https_only_and_want_a_user(secure_hdfs: TappedHdfs) -> None:
    h = secure_hdfs.settings.hdfs
    base = f"https://{h.host}:{h.namenode_http_port}"
    assert secure_hdfs.service.status().extra["web_ui"] == base
    verify = http_verify(secure_hdfs.settings)
    lake = lake_path(secure_hdfs)

    def webhdfs(path: str, **params: str) -> httpx.Response:
        url = f"{base}/webhdfs/v1{path}"
        return httpx.get(url, params={"op": "LISTSTATUS", **params}, verify=verify, timeout=10)

    assert webhdfs(f"{lake}/gold", **{"user.name": READER}).status_code == 200
    denied = webhdfs(f"{lake}/silver", **{"user.name": OTHER_USER})
    assert denied.status_code == 403
    assert "AccessControlException" in denied.text
    # No anonymous requests (they used to act as the daemons' user, HDFS's superuser).
    assert webhdfs(f"{lake}/bronze").status_code == 401
    # Nothing answers plain HTTP, and the certificate is the local CA's.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{h.host}:{h.namenode_http_port}/jmx", timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{base}/jmx", timeout=5)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{h.host}:{h.datanode_http_port}/", timeout=5)
    dn = httpx.get(f"https://{h.host}:{h.datanode_http_port}/jmx", verify=verify, timeout=10)
    assert dn.status_code in (200, 401)


# -- Spark and delta-rs on the secure HDFS ---------------------------------------------------------

_SPARK_WRITE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pulsecast.config import load_settings
    from pulsecast.stream.session import spark_session

    settings = load_settings(Path(sys.argv[1]))
    spark = spark_session(settings, app_name="pulsecast-hdfs-secure-it")
    for uri in sys.argv[2:]:
        rows = spark.range(50).selectExpr("id", "concat('reading-', id) AS note")
        rows.write.format("delta").mode("append").save(uri)
        print(uri, spark.read.format("delta").load(uri).count())
    spark.stop()
    """
)


def test_spark_writes_delta_tables_to_the_secure_hdfs(
    secure_hdfs: TappedHdfs, client_factory: Any
) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    lake = secure_hdfs.lake
    tables = {zone: f"{lake}/{zone}/{name}" for zone in ("silver", "gold")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSECAST_")}
    secure_hdfs.tap.clear()
    run = subprocess.run(
        [sys.executable, "-c", _SPARK_WRITE, str(secure_hdfs.config), *tables.values()],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == [tables["silver"], "50", tables["gold"], "50"]
    captured = secure_hdfs.tap.captured()
    assert len(captured) > 1000  # Spark's blocks went through the tap, encrypted
    # Neither the rows nor the Delta log's JSON commits (plaintext files) show.
    assert b"reading-" not in captured and b"commitInfo" not in captured

    owner = client_factory(secure_hdfs, getpass.getuser())
    files = owner.files(urlsplit(tables["gold"]).path)
    assert any(f.endswith(".parquet") for f in files) and any("_delta_log" in f for f in files)
    for path in files:
        assert owner.permission(path) == "rw-r-----+", path

    # delta-rs (the DuckDB path of `pulsecast sql`) reads the encrypted transfer too.
    for uri in tables.values():
        assert deltalake.DeltaTable(uri).to_pyarrow_table().num_rows == 50

    reader, other = client_factory(secure_hdfs, READER), client_factory(secure_hdfs, OTHER_USER)
    data_file = next(f for f in files if f.endswith(".parquet"))
    assert reader.read(data_file)[:4] == b"PAR1"
    refused(other.read, data_file)
    refused(other.list, urlsplit(tables["silver"]).path)


def test_security_check_reports_the_hdfs_protections(
    secure_hdfs: TappedHdfs, plain_hdfs: TappedHdfs
) -> None:
    secure = [f for f in security_check(secure_hdfs.settings) if f.area == "hdfs"]
    assert [f.status for f in secure] == ["ok", "warn"]
    assert secure[0].text.startswith("block data encrypted on the wire (AES/CTR/NoPadding")
    assert "read-only for analyst, dashboard on silver and gold" in secure[0].text
    assert secure[1].text.startswith("RPC to the NameNode (paths, file names")
    plain = [f for f in security_check(plain_hdfs.settings) if f.area == "hdfs"]
    assert [f.status for f in plain] == ["off"]

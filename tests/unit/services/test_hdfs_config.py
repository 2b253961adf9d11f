"""The local HDFS's generated configuration and settings (no servers)."""

from __future__ import annotations

import getpass
import socket
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pulsecast.config import Settings, load_settings
from pulsecast.security.mode import initialise
from pulsecast.services.errors import PortInUseError, ServiceError
from pulsecast.services.hdfs import DATANODE_MAIN, NAMENODE_MAIN, HdfsService, hadoop_xml
from pulsecast.services.stack import Stack
from pulsecast.stream.session import spark_conf
from pulsecast.testing import settings_for

PORTS = {
    "namenode_port": 18020,
    "namenode_http_port": 19870,
    "datanode_port": 19866,
    "datanode_http_port": 19864,
    "datanode_ipc_port": 19867,
}


def properties(xml: str) -> dict[str, str]:
    root = ET.fromstring(xml)  # noqa: S314 (our own output)
    assert root.tag == "configuration"
    return {p.findtext("name", ""): p.findtext("value", "") for p in root.iter("property")}


def test_hdfs_site_binds_every_port_to_the_host_with_one_replica(tmp_path: Path) -> None:
    service = HdfsService(settings_for(tmp_path, hdfs=PORTS))
    site = properties(service.hdfs_site())
    assert site["dfs.namenode.rpc-address"] == "127.0.0.1:18020"
    assert site["dfs.namenode.http-address"] == "127.0.0.1:19870"
    assert site["dfs.datanode.address"] == "127.0.0.1:19866"
    assert site["dfs.datanode.http.address"] == "127.0.0.1:19864"
    assert site["dfs.datanode.ipc.address"] == "127.0.0.1:19867"
    assert site["dfs.replication"] == "1"
    assert site["dfs.permissions.enabled"] == "true"
    assert site["dfs.namenode.safemode.extension"] == "0"
    home = tmp_path.resolve() / "hdfs"
    assert site["dfs.namenode.name.dir"] == (home / "name").as_uri()
    assert site["dfs.datanode.data.dir"] == (home / "data").as_uri()


def test_core_site_names_the_local_file_system(tmp_path: Path) -> None:
    core = properties(HdfsService(settings_for(tmp_path, hdfs=PORTS)).core_site())
    assert core["fs.defaultFS"] == "hdfs://127.0.0.1:18020"
    assert core["hadoop.tmp.dir"] == str(tmp_path.resolve() / "hdfs" / "tmp")


def test_hadoop_xml_escapes_values() -> None:
    assert properties(hadoop_xml({"a.b": "x<y&z"})) == {"a.b": "x<y&z"}


def test_hdfs_settings_give_the_uris_to_configure(tmp_path: Path) -> None:
    hdfs = settings_for(tmp_path, hdfs={"namenode_port": 18020}).hdfs
    assert hdfs.uri == "hdfs://127.0.0.1:18020"
    assert hdfs.lake_uri == "hdfs://127.0.0.1:18020/pulsecast/lake"
    assert hdfs.checkpoint_uri == "hdfs://127.0.0.1:18020/pulsecast/checkpoints"
    assert hdfs.serves(hdfs.lake_uri)
    assert hdfs.serves("hdfs://127.0.0.1:18020")
    assert not hdfs.serves("hdfs://127.0.0.1:180200/lake")
    assert not hdfs.serves("hdfs://namenode:8020/lake")


def test_hdfs_ports_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULSECAST_HDFS__DATANODE_IPC_PORT", "29867")
    assert load_settings().hdfs.datanode_ipc_port == 29867


def test_spark_asks_the_local_hdfs_for_its_replication(tmp_path: Path) -> None:
    def conf(**sections: object) -> dict[str, str]:
        return spark_conf(settings_for(tmp_path, hdfs=PORTS, **sections), [])

    lake = {"uri": "hdfs://127.0.0.1:18020/pulsecast/lake"}
    assert conf(lake=lake)["spark.hadoop.dfs.replication"] == "1"
    checkpoints = {"checkpoint_uri": "hdfs://127.0.0.1:18020/cp"}
    assert conf(stream=checkpoints)["spark.hadoop.dfs.replication"] == "1"
    assert "spark.hadoop.dfs.replication" not in conf()  # file:// lake
    other = {"uri": "hdfs://cluster:8020/lake"}  # a real cluster keeps its own default
    assert "spark.hadoop.dfs.replication" not in conf(lake=other)


def test_hdfs_daemons_are_told_apart_by_data_dir(tmp_path: Path) -> None:
    service = HdfsService(settings_for(tmp_path))
    marker = f"-Dpulsecast.hdfs.home={tmp_path.resolve() / 'hdfs'}"
    assert service.namenode.pid_file.markers == (NAMENODE_MAIN, marker)
    assert service.datanode.pid_file.markers == (DATANODE_MAIN, marker)
    assert service.namenode.log_file == tmp_path.resolve() / "logs" / "hdfs-namenode.log"
    assert service.datanode.log_file == tmp_path.resolve() / "logs" / "hdfs-datanode.log"


def test_hdfs_status_when_stopped(settings: Settings) -> None:
    status = HdfsService(settings).status()
    assert (status.name, status.running, status.pid) == ("hdfs", False, None)
    assert status.address == "hdfs://127.0.0.1:8020"
    assert status.extra["lake_uri"] == "hdfs://127.0.0.1:8020/pulsecast/lake"
    assert not HdfsService(settings).stop()


def test_stack_takes_hdfs_as_an_optional_server(settings: Settings) -> None:
    stack = Stack(settings, with_=["hdfs"])
    assert [s.name for s in stack.services] == ["kafka", "postgres", "hdfs", "ingest"]
    assert [s.name for s in stack.status()] == ["kafka", "postgres", "hdfs", "ingest"]
    # Not asked for and not running: not listed.
    assert [s.name for s in Stack(settings).status()] == ["kafka", "postgres", "ingest"]
    with pytest.raises(
        ServiceError, match=r"^unknown optional service 'yarn'; available: (.*, )?hdfs(,|$)"
    ):
        Stack(settings, with_=["yarn"])


def test_hdfs_port_taken_is_one_clear_line_before_any_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        free = {name: port + 1 + i for i, name in enumerate(PORTS)}
        service = HdfsService(settings_for(tmp_path, hdfs={**free, "datanode_ipc_port": port}))
        with pytest.raises(PortInUseError) as info:
            service.start()
    assert str(info.value).startswith(
        f"cannot start hdfs: port {port} (hdfs.datanode_ipc_port) is already in use by "
    )
    assert str(info.value).endswith("choose another port with PULSECAST_HDFS__DATANODE_IPC_PORT")
    assert not (tmp_path / "hdfs").exists()  # nothing written, nothing started


# -- secure mode ----------------------------------------------------------------------------------


def secure_service(tmp_path: Path, **hdfs: object) -> HdfsService:
    security = {"enabled": True, "encrypt_lake": False}
    return HdfsService(settings_for(tmp_path, hdfs={**PORTS, **hdfs}, security=security))


def test_hdfs_secure_site_encrypts_block_data_serves_https_and_enables_acls(
    tmp_path: Path,
) -> None:
    site = properties(secure_service(tmp_path).hdfs_site())
    assert site["dfs.block.access.token.enable"] == "true"
    assert site["dfs.encrypt.data.transfer"] == "true"
    assert site["dfs.encrypt.data.transfer.cipher.suites"] == "AES/CTR/NoPadding"
    assert site["dfs.encrypt.data.transfer.cipher.key.bitlength"] == "256"
    assert site["dfs.http.policy"] == "HTTPS_ONLY"
    assert site["dfs.namenode.https-address"] == "127.0.0.1:19870"
    assert site["dfs.datanode.https.address"] == "127.0.0.1:19864"
    assert site["dfs.namenode.acls.enabled"] == "true"
    assert site["dfs.permissions.enabled"] == "true"


def test_hdfs_plain_site_has_none_of_secure_mode(tmp_path: Path) -> None:
    service = HdfsService(settings_for(tmp_path, hdfs=PORTS))
    site, core = properties(service.hdfs_site()), properties(service.core_site())
    secure_keys = {
        "dfs.block.access.token.enable",
        "dfs.encrypt.data.transfer",
        "dfs.http.policy",
        "dfs.datanode.hostname",
    }
    assert not secure_keys & set(site)
    # On in both modes (Hadoop's default): a namespace with ACLs starts either way.
    assert site["dfs.namenode.acls.enabled"] == "true"
    assert "fs.permissions.umask-mode" not in core
    assert core["hadoop.http.staticuser.user"] == getpass.getuser()
    assert service.web_url == "http://127.0.0.1:19870"


def test_hdfs_secure_core_site_is_owner_only_and_names_no_anonymous_superuser(
    tmp_path: Path,
) -> None:
    service = secure_service(tmp_path)
    core = properties(service.core_site())
    assert core["fs.permissions.umask-mode"] == "077"
    assert core["hadoop.http.authentication.simple.anonymous.allowed"] == "false"
    # Without a user name a web request is nobody in particular, never the superuser.
    assert core["hadoop.http.staticuser.user"] == "dr.who"
    assert service.web_url == "https://127.0.0.1:19870"


def test_hdfs_ssl_server_points_at_the_hdfs_keystore(tmp_path: Path) -> None:
    service = secure_service(tmp_path)
    ssl = properties(service.ssl_server("s3cret"))
    keystore = tmp_path.resolve() / "security" / "servers" / "hdfs" / "keystore.p12"
    assert ssl == {
        "ssl.server.keystore.type": "pkcs12",
        "ssl.server.keystore.location": str(keystore),
        "ssl.server.keystore.password": "s3cret",
        "ssl.server.keystore.keypassword": "s3cret",
    }


def test_hdfs_secure_config_files_keep_the_password_private(tmp_path: Path) -> None:
    service = secure_service(tmp_path)
    initialise(service.settings)
    service._write_config()
    ssl_server = service.conf_dir / "ssl-server.xml"
    assert stat.S_IMODE(ssl_server.stat().st_mode) == 0o600
    assert stat.S_IMODE(service.home.stat().st_mode) == 0o700
    password = (service.keystore.parent / "keystore.password").read_text().strip()
    assert properties(ssl_server.read_text())["ssl.server.keystore.password"] == password
    # Plain again: the password file goes.
    HdfsService(settings_for(tmp_path, hdfs=PORTS))._write_config()
    assert not ssl_server.exists()


def test_hdfs_secure_start_without_certificates_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ServiceError) as info:
        secure_service(tmp_path)._write_config()
    assert str(info.value).startswith("hdfs did not start: no keystore password in ")
    assert str(info.value).endswith("servers/hdfs; run `pulsecast security init`")


def test_hdfs_protected_paths_are_owner_only_with_readers_on_silver_and_gold(
    tmp_path: Path,
) -> None:
    specs = secure_service(tmp_path, readers=["analyst"]).protected_paths()
    owner = "user::rwx,group::---,other::---"
    inherit = "default:user::rwx,default:group::---,default:other::---"
    readable = (
        f"{owner},user:analyst:r-x,mask::r-x,{inherit},default:user:analyst:r-x,default:mask::r-x"
    )
    assert specs == {
        "/pulsecast/checkpoints": f"{owner},{inherit}",
        "/pulsecast/lake": f"{owner},user:analyst:--x,mask::--x,{inherit}",
        "/pulsecast/lake/bronze": f"{owner},{inherit}",
        "/pulsecast/lake/silver": readable,
        "/pulsecast/lake/gold": readable,
        "/pulsecast/lake/state": f"{owner},{inherit}",
    }


def test_hdfs_protects_the_configured_lake_when_it_is_on_this_hdfs(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        hdfs={**PORTS, "readers": []},
        security={"enabled": True},
        lake={"uri": "hdfs://127.0.0.1:18020/data/lake/"},
        stream={"checkpoint_uri": "hdfs://namenode:8020/cp"},  # another HDFS: not ours
    )
    specs = HdfsService(settings).protected_paths()
    assert set(specs) == {
        "/pulsecast/checkpoints",
        "/data/lake",
        "/data/lake/bronze",
        "/data/lake/silver",
        "/data/lake/gold",
        "/data/lake/state",
    }
    # No reader: nobody but the owner, silver and gold included.
    assert not any("user:" in spec.replace("user::", "") for spec in specs.values())


def test_hdfs_readers_must_be_user_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"hdfs.readers must be user names .*\['a,b', ''\]"):
        settings_for(tmp_path, hdfs={"readers": ["ok_1", "a,b", ""]})
    assert settings_for(tmp_path).hdfs.readers == ["analyst", "dashboard"]


def test_hdfs_datanode_hostname_is_advertised_and_used_by_spark(tmp_path: Path) -> None:
    service = secure_service(tmp_path, datanode_hostname="127.0.0.2")
    assert properties(service.hdfs_site())["dfs.datanode.hostname"] == "127.0.0.2"
    settings = service.settings.model_copy(
        update={
            "lake": service.settings.lake.model_copy(update={"uri": "hdfs://127.0.0.1:18020/l"})
        }
    )
    conf = spark_conf(settings, [])
    assert conf["spark.hadoop.dfs.client.use.datanode.hostname"] == "true"
    assert conf["spark.hadoop.fs.permissions.umask-mode"] == "077"
    plain = settings_for(tmp_path, hdfs=PORTS, lake={"uri": "hdfs://127.0.0.1:18020/l"})
    assert "spark.hadoop.fs.permissions.umask-mode" not in spark_conf(plain, [])
    assert "spark.hadoop.dfs.client.use.datanode.hostname" not in spark_conf(plain, [])

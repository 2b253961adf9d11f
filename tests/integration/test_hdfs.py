"""The lake on real HDFS: a NameNode and a DataNode started by pulsecast's own launcher.

The streaming job runs unchanged with ``lake.uri`` and ``stream.checkpoint_uri``
on ``hdfs://``; what it wrote is read back from HDFS by DuckDB (delta-rs's own
HDFS client), by Spark SQL, and listed through the NameNode's WebHDFS.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pyspark.sql import SparkSession

from pulsecast.analytics.sql import QueryError, run_sql
from pulsecast.bus import EventProducer
from pulsecast.config import Settings, WindowSpec
from pulsecast.services.errors import ServiceError
from pulsecast.services.hdfs import HdfsService
from pulsecast.stream.job import StreamJob
from pulsecast.testing import settings_for, telemetry_event

from .conftest import StreamFactory, free_ports, hdfs_ports, job_settings, small_spark

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def hdfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HdfsService]:
    """One HDFS (NameNode + DataNode) for the session, on free ports."""
    ports = hdfs_ports()
    service = HdfsService(settings_for(tmp_path_factory.mktemp("hdfs") / "state", hdfs=ports))
    try:
        service.start()
    except ServiceError as exc:
        service.stop()
        pytest.fail(f"HDFS did not start: {exc}", pytrace=False)
    yield service
    service.stop()


def webhdfs_list(service: HdfsService, path: str) -> dict[str, dict[str, object]]:
    """A folder's entries, as the NameNode's REST interface lists them."""
    h = service.settings.hdfs
    reply = httpx.get(
        f"http://{h.host}:{h.namenode_http_port}/webhdfs/v1{path}",
        params={"op": "LISTSTATUS", "user.name": getpass.getuser()},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    return {s["pathSuffix"]: s for s in reply.json()["FileStatuses"]["FileStatus"]}


def test_hdfs_start_is_idempotent_and_status_names_the_lake(hdfs: HdfsService) -> None:
    status = hdfs.status()
    assert status.running
    assert status.version == "3.5.0"
    assert status.address == hdfs.settings.hdfs.uri
    assert status.extra["lake_uri"] == f"{hdfs.settings.hdfs.uri}/pulsecast/lake"
    assert Path(str(status.log_file)).exists()
    assert hdfs.start().pid == status.pid
    assert hdfs.start().extra["datanode_pid"] == status.extra["datanode_pid"]


def test_the_lake_on_real_hdfs(
    hdfs: HdfsService, spark: SparkSession, stream_factory: StreamFactory, tmp_path: Path
) -> None:
    base, stream = stream_factory()
    root = f"/it/{stream}"
    settings = job_settings(
        base,
        tmp_path,
        checkpoint_uri=f"{hdfs.settings.hdfs.uri}{root}/checkpoints",
        windows=[WindowSpec(name="1m", size_s=60)],  # one gold table keeps the test short
    ).model_copy(
        update={
            "lake": base.lake.model_copy(update={"uri": f"{hdfs.settings.hdfs.uri}{root}/lake"}),
            "hdfs": hdfs.settings.hdfs,
        }
    )
    # 4 machines x 12 readings, 5 s apart: one minute of event time.
    events = [
        telemetry_event(f"m-{m}", when=T0 + timedelta(seconds=5 * i), event_id=f"{m}-{i}")
        for i in range(12)
        for m in range(4)
    ]
    with EventProducer(settings) as producer:
        assert producer.send(stream, events).accepted == 48

    stats = StreamJob(spark, settings, streams=[stream]).run(until_idle=True, max_seconds=300)
    assert stats[stream].valid == 48

    # Read back from HDFS without a JVM (DuckDB over delta-rs)...
    silver = run_sql(settings, f"SELECT count(*), count(DISTINCT event_id) FROM silver_{stream}")
    assert silver.rows == [(48, 48)]
    assert run_sql(settings, f"SELECT count(*) FROM bronze_{stream}").rows == [(48,)]
    gold = run_sql(
        settings,
        f"SELECT key, count, is_final FROM gold_{stream}_1m "
        "WHERE metric = 'temperature_c' ORDER BY key",
    )
    assert gold.rows == [(f"m-{m}", 12, True) for m in range(4)]
    # ... and with Spark SQL.
    spark_silver = run_sql(
        small_spark(settings), f"SELECT count(*) FROM silver_{stream}", engine="spark"
    )
    assert spark_silver.rows == [(48,)]

    # The tables and the checkpoints are HDFS files, as the NameNode lists them.
    assert {"bronze", "silver", "gold"} <= set(webhdfs_list(hdfs, f"{root}/lake"))
    assert "_delta_log" in webhdfs_list(hdfs, f"{root}/lake/silver/{stream}")
    assert {"offsets", "commits"} <= set(webhdfs_list(hdfs, f"{root}/checkpoints/{stream}"))


def test_sql_on_an_hdfs_lake_that_does_not_answer_is_one_line(settings: Settings) -> None:
    (port,) = free_ports(1)
    lake = settings.lake.model_copy(update={"uri": f"hdfs://127.0.0.1:{port}/lake"})
    with pytest.raises(QueryError) as info:
        run_sql(settings.model_copy(update={"lake": lake}), "SELECT 1")
    text = str(info.value)
    assert text.startswith(f"cannot read bronze_telemetry at hdfs://127.0.0.1:{port}/lake/")
    assert "Connection refused" in text
    assert "\n" not in text

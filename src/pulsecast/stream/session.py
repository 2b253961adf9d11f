"""The SparkSession factory: one place that turns Settings into Spark configuration.

Spark runs ``local[*]`` by default and on any cluster by setting
``spark.master``; the Kafka connector, Delta Lake and the PostgreSQL JDBC
driver come from the ``spark`` profile of jvm/pom.xml as local jars (nothing
is downloaded at run time). Spark binds to loopback unless told otherwise.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pulsecast.config import Settings
from pulsecast.security.lake_crypto import enable_on_session, lake_encrypted
from pulsecast.services.java import find_java, resolve

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["on_this_machine", "spark_conf", "spark_session"]

log = logging.getLogger(__name__)


def on_this_machine(master: str) -> bool:
    """Whether ``master`` runs on loopback (``local[*]``, ``spark://127.0.0.1:7077``).

    Then the driver binds to loopback too, so executors reach it there.
    """
    host = master.split("://", 1)[-1].split(":", 1)[0]
    return master.startswith("local") or host in ("127.0.0.1", "localhost")


def spark_conf(settings: Settings, jars: list[Path]) -> dict[str, str]:
    """Spark configuration for ``settings`` (pure: unit-tested)."""
    spark = settings.spark
    conf = {
        "spark.master": spark.master,
        "spark.driver.memory": spark.driver_memory,
        "spark.jars": ",".join(str(j) for j in sorted(jars)),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(spark.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": str(spark.ui_enabled).lower(),
        "spark.ui.showConsoleProgress": "false",
        # Delta rebuilds table state with this many tasks (default 50: slow on 2 cores).
        "spark.databricks.delta.snapshotPartitions": str(spark.shuffle_partitions),
        # New tables checkpoint their log every 100 commits, not 10: the job
        # appends without rereading table state, and a checkpoint costs seconds
        # of Spark jobs on 2 cores (a stall every 10th batch otherwise).
        "spark.databricks.delta.properties.defaults.checkpointInterval": "100",
        "spark.sql.streaming.stopGracefullyOnShutdown": "true",
        # Live scoring keeps per-key detector state with transformWithState,
        # which runs on the RocksDB state store only.
        "spark.sql.streaming.stateStore.providerClass": (
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
        ),
        # A state commit writes the batch's changes, not a snapshot of the
        # whole store (snapshots are made in the background): commits took
        # 0.4-1.3 s of every 10 s scoring batch, on 2 cores next to ingest.
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        # Timestamps as microseconds adjusted to UTC, not Spark's default INT96,
        # which Arrow and DuckDB read as naive: DuckDB's views of the lake would
        # cast them, and a filter on them would then skip fewer row groups.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # Small machines: no speculative copies, modest broadcast threshold.
        "spark.speculation": "false",
        "spark.sql.adaptive.enabled": "true",
    }
    if on_this_machine(spark.master):
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    hdfs = settings.hdfs
    if hdfs.serves(settings.lake_uri) or hdfs.serves(settings.checkpoint_uri):
        # An HDFS client picks each file's replication: ask the local HDFS (one
        # DataNode) for its own, not Hadoop's default of 3.
        conf["spark.hadoop.dfs.replication"] = str(hdfs.replication)
        if hdfs.datanode_hostname is not None:
            conf["spark.hadoop.dfs.client.use.datanode.hostname"] = "true"
        if settings.security.enabled:
            # Owner-only files and folders wherever no default ACL says otherwise.
            conf["spark.hadoop.fs.permissions.umask-mode"] = "077"
    conf.update(spark.conf)
    return conf


def spark_session(settings: Settings, *, app_name: str = "pulsecast") -> SparkSession:
    """Get or create the process's SparkSession configured from ``settings``.

    Raises:
        JavaNotFoundError: No usable Java.
        ArtifactsError: The Spark jars could not be resolved.
        SecurityError: The lake is to be encrypted (security.encrypt_lake) and
            its key or encryption classes are unusable.
    """
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    java = find_java(settings)
    jars = sorted(resolve(settings, "spark").glob("*.jar"))
    if SparkContext._active_spark_context is None:
        # pyspark launches its JVM from the environment, not from conf: the one
        # place pulsecast sets variables, and only before that launch.
        os.environ["JAVA_HOME"] = str(java.parent.parent)
        if on_this_machine(settings.spark.master):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            # Python workers (live scoring) run this interpreter, which has pulsecast.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    for key, value in spark_conf(settings, jars).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    # Spark's own warnings are chatty on a laptop; DEBUG shows them.
    session.sparkContext.setLogLevel("WARN" if settings.log.level == "DEBUG" else "ERROR")
    if lake_encrypted(settings):
        enable_on_session(session, settings)
    log.info("spark session ready (master %s)", settings.spark.master)
    return session

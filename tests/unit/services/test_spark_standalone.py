"""The local Spark standalone cluster's command lines and settings (no servers)."""

from __future__ import annotations

from pathlib import Path

from pulsecast.services.spark import MASTER_MAIN, WORKER_MAIN, SparkStandaloneService, spark_home
from pulsecast.services.stack import Stack
from pulsecast.testing import settings_for

CLUSTER = {"master_port": 17077, "master_webui_port": 18180, "worker_webui_port": 18181}


def test_master_and_worker_bind_the_configured_ports_and_find_each_other(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, spark_standalone={**CLUSTER, "worker_cores": 1})
    service = SparkStandaloneService(settings)
    master, worker = service.master.command(), service.worker.command()
    assert master[0] == str(spark_home() / "bin" / "spark-class")
    master, worker = master[1:], worker[1:]
    assert master[0] == MASTER_MAIN
    assert master[master.index("--port") + 1] == "17077"
    assert master[master.index("--webui-port") + 1] == "18180"
    assert master[master.index("--host") + 1] == "127.0.0.1"
    assert worker[:2] == [WORKER_MAIN, "spark://127.0.0.1:17077"]
    assert worker[worker.index("--cores") + 1] == "1"
    assert worker[worker.index("--webui-port") + 1] == "18181"
    # The properties file under this data directory marks both processes as ours.
    assert master[-1] == worker[-1] == str(service.properties)
    assert service.master.env["SPARK_HOME"] == str(spark_home())
    assert (spark_home() / "bin" / "spark-class").is_file()


def test_stopped_cluster_reports_the_master_url_to_use(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, spark_standalone=CLUSTER)
    status = SparkStandaloneService(settings).status()
    assert not status.running
    assert status.address == "spark://127.0.0.1:17077"
    assert "spark" in [s.name for s in Stack(settings, with_=["spark"]).services]

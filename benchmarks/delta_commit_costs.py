"""What one commit of a few hundred rows costs: Delta on Spark against delta-rs (a profiling aid).

On a fresh local table of 400 rows per commit, times (seconds, each of
``--repeat`` commits after one untimed warm-up) of: a Spark append; a Spark
append with ``txnAppId``/``txnVersion`` (what the job used for idempotence);
a Spark MERGE of the same rows; and, with delta-rs, an append with an
application transaction and a replace by predicate (what the job uses for its
small tables). Prints the median of each, and the Spark jobs one commit runs.

    .venv/bin/python benchmarks/delta_commit_costs.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

from pulsecast.config import load_settings
from pulsecast.lake import small_tables
from pulsecast.stream.session import spark_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=8, help="timed commits of each kind")
    args = parser.parse_args()
    from delta.tables import DeltaTable
    from deltalake import write_deltalake

    spark = spark_session(load_settings(), app_name="pulsecast-delta-costs")
    tracker = spark.sparkContext.statusTracker()
    root = tempfile.mkdtemp(prefix="pulsecast-delta-")
    rows = spark.range(400).selectExpr("id", "cast(id AS double) * 1.5 AS v").persist()
    arrow = rows.toArrow()

    def measure(name: str, commit: Callable[[int], object]) -> None:
        commit(0)
        times, jobs = [], 0
        for i in range(1, args.repeat + 1):
            group = f"{name}-{i}"
            spark.sparkContext.setJobGroup(group, name)
            started = time.monotonic()
            commit(i)
            times.append(time.monotonic() - started)
            jobs = len(tracker.getJobIdsForGroup(group))
        print(f"{name:<34} median {statistics.median(times):5.2f} s   {jobs:2d} Spark jobs")

    def spark_append(path: str, txn: bool) -> Callable[[int], object]:
        def commit(i: int) -> None:
            writer = rows.write.format("delta").mode("append")
            if txn:
                writer = writer.option("txnAppId", "bench").option("txnVersion", i)
            writer.save(path)

        return commit

    measure("spark append", spark_append(f"{root}/a", txn=False))
    measure("spark append, txnAppId/txnVersion", spark_append(f"{root}/b", txn=True))
    measure(
        "spark MERGE",
        lambda _i: (
            DeltaTable.forPath(spark, f"{root}/a")
            .alias("t")
            .merge(rows.alias("s"), "t.id = s.id")
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        ),
    )
    write_deltalake(f"{root}/c", arrow.schema.empty_table())
    measure(
        "delta-rs append, app transaction",
        lambda i: small_tables.append_once(f"{root}/c", arrow, "bench", i),
    )
    measure(
        "delta-rs replace by predicate", lambda _i: small_tables.replace(f"{root}/c", arrow, "TRUE")
    )


if __name__ == "__main__":
    main()

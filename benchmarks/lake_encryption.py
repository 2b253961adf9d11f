"""What encrypting the lake costs: Delta writes and reads of one table, plain vs encrypted.

A table of ``--rows`` rows (id, a key of 1000 entities, a double, a micro-batch
id, an event time) is written as Delta by Spark ``--repeat`` times in each
mode, after one untimed warm-up write: plaintext (Spark's defaults), and
encrypted (Parquet modular encryption with the keystore's lake key, Delta
statistics for ``batch_id`` only: see docs/security.md). Each written table is
then read back in full by Spark (sum and distinct count) and by the DuckDB
path (``deltalake`` dataset, decrypting when encrypted). Prints the medians as
JSON (seconds, bytes on disk) and the encrypted/plain ratios, and appends it
as one line to benchmarks/results/lake_encryption.jsonl. All state lives in a
temporary folder (its own keystore). Timed runs of the two modes alternate,
so the machine's other load weighs on both alike.

    .venv/bin/python benchmarks/lake_encryption.py [--rows N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pulsecast.security.lake_crypto import (
    disable_on_session,
    enable_on_session,
    readable_dataset,
)
from pulsecast.stream.session import spark_session
from pulsecast.testing import settings_for

RESULTS = Path(__file__).parent / "results" / "lake_encryption.jsonl"


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.parquet") if "_delta_log" not in p.parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per table")
    parser.add_argument("--repeat", type=int, default=3, help="timed writes per mode")
    args = parser.parse_args()
    import duckdb
    from deltalake import DeltaTable

    root = Path(tempfile.mkdtemp(prefix="pulsecast-lake-crypto-"))
    settings = settings_for(
        root, spark={"master": "local[2]", "shuffle_partitions": 2}, security={"encrypt_lake": True}
    )
    plain_settings = settings.model_copy(
        update={"security": settings.security.model_copy(update={"encrypt_lake": False})}
    )
    spark = spark_session(plain_settings, app_name="pulsecast-lake-crypto")
    frame = spark.range(args.rows, numPartitions=2).selectExpr(
        "id",
        "concat('entity-', id % 1000) AS key",
        "rand(7) * 100 AS value",
        "id DIV 100000 AS batch_id",
        "timestamp_seconds(1700000000 + id) AS event_time",
    )
    results: dict[str, Any] = {
        "benchmark": "lake_encryption",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "spark_master": "local[2]",
        "rows": args.rows,
        "repeat": args.repeat,
    }
    modes = {"plain": plain_settings, "encrypted": settings}
    times: dict[str, dict[str, list[float]]] = {
        mode: {"spark_write_s": [], "spark_read_s": [], "duckdb_read_s": [], "data_bytes": []}
        for mode in modes
    }

    def switch(mode: str) -> None:
        if mode == "encrypted":
            enable_on_session(spark, settings)
        else:
            disable_on_session(spark)

    for mode in modes:  # untimed warm-up of each
        switch(mode)
        frame.write.format("delta").save(str(root / f"{mode}-warmup"))
    for i in range(args.repeat):
        for mode, mode_settings in modes.items():
            switch(mode)
            path = root / f"{mode}-{i}"
            got = times[mode]
            started = time.perf_counter()
            frame.write.format("delta").save(str(path))
            got["spark_write_s"].append(time.perf_counter() - started)
            got["data_bytes"].append(size_of(path))
            started = time.perf_counter()
            spark.read.format("delta").load(str(path)).selectExpr(
                "sum(value)", "count(DISTINCT key)", "max(event_time)"
            ).collect()
            got["spark_read_s"].append(time.perf_counter() - started)
            started = time.perf_counter()
            dataset = DeltaTable(str(path)).to_pyarrow_dataset()
            con = duckdb.connect()
            con.register("t", readable_dataset(dataset, mode_settings))
            con.execute("SELECT sum(value), count(DISTINCT key), max(event_time) FROM t").fetchall()
            con.close()
            got["duckdb_read_s"].append(time.perf_counter() - started)
    for mode, got in times.items():
        results[mode] = {
            name: (round(statistics.median(v), 3) if name != "data_bytes" else int(v[0]))
            for name, v in got.items()
        }
    disable_on_session(spark)
    shutil.rmtree(root, ignore_errors=True)
    results["ratio_encrypted_to_plain"] = {
        name: round(results["encrypted"][name] / results["plain"][name], 3)
        for name in results["plain"]
    }
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(results, indent=2))
    with RESULTS.open("a") as out:
        out.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()

"""Lake layout: what `pulsecast lake optimize` does to a typical silver query.

Builds its own lake (no servers needed, only Spark and the JVM artifacts of
`pulsecast setup`): the fleet simulator's telemetry as silver rows (the columns
of the streaming job's silver table), partitioned by event_date and event_hour,
with one small file per micro-batch (`--batch-s` of event time, every machine)
as the streaming job leaves it. Then, for each layout:

  streamed             as written
  compacted            `lake optimize --no-zorder` (bin-packing)
  z-ordered            `lake optimize` (silver Z-ordered by key)

with Delta's default target file size (1 GiB) and with a target scaled down to
1/8 of an hour of this lake (how an hour spreads over files at higher volume).
On each layout it runs "one machine's last day" on DuckDB (`pulsecast sql`)
and on Spark SQL (`--engine spark`): files and partitions read (measured as
`pulsecast sql --explain` does), then `--repeats` rounds over all layouts
(so that warm-up and the machine's other load weigh on each alike), reporting
median times. Last, it vacuums the files the optimizes replaced. The result is
printed and appended as one JSON object to benchmarks/results/lake_layout.jsonl.

    .venv/bin/python benchmarks/lake_layout.py [--days 2] [--entities 50] [--repeats 5]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pulsecast.analytics.explain import explain
from pulsecast.analytics.output import human_bytes
from pulsecast.analytics.sql import run_sql
from pulsecast.config import Settings, SimulatorSettings, load_settings
from pulsecast.lake.maintenance import optimize, vacuum
from pulsecast.lake.tables import SILVER_PARTITIONS
from pulsecast.sources.simulator import FleetSimulator
from pulsecast.stream.session import spark_session

RESULTS = Path(__file__).parent / "results" / "lake_layout.jsonl"
START = datetime(2026, 5, 1, tzinfo=UTC)
MAX_FILE_SIZE = "spark.databricks.delta.optimize.maxFileSize"


def simulate(entities: int, days: int, interval_s: float, batch_s: int, seed: int) -> pa.Table:
    """The simulator's readings as silver rows (see pulsecast.stream.transforms.silver_rows)."""
    sim = FleetSimulator(
        SimulatorSettings(entities=entities, seed=seed), start=START, interval_s=interval_s
    )
    ticks = int(days * 86_400 / interval_s)
    cols: dict[str, list[Any]] = {
        k: []
        for k in (
            "event_id",
            "key",
            "event_time",
            "ingest_time",
            "entity_id",
            "temperature_c",
            "cpu_util",
            "vibration_mm_s",
            "power_kw",
            "kafka_partition",
            "kafka_offset",
            "batch_id",
        )
    }
    offsets = [0, 0, 0]
    for _ in range(ticks):
        when, events = sim.next_tick()
        batch = int((when - START).total_seconds() // batch_s)
        for e in events:
            p = e["payload"]
            part = int(p["entity_id"][2:]) % 3
            cols["event_id"].append(e["event_id"])
            cols["key"].append(p["entity_id"])
            cols["event_time"].append(when)
            cols["ingest_time"].append(when + timedelta(milliseconds=250))
            cols["entity_id"].append(p["entity_id"])
            for metric in ("temperature_c", "cpu_util", "vibration_mm_s", "power_kw"):
                cols[metric].append(p[metric])
            cols["kafka_partition"].append(part)
            cols["kafka_offset"].append(offsets[part])
            offsets[part] += 1
            cols["batch_id"].append(batch)
    table = pa.table(cols)
    return table.cast(
        table.schema.set(
            table.schema.get_field_index("kafka_partition"), pa.field("kafka_partition", pa.int32())
        )
    )


def build_lake(spark: Any, rows: pa.Table, scratch: Path, uri: str, *, batch_rows: int) -> None:
    """Silver as the streaming job leaves it: one file per micro-batch and hour partition.

    Each file holds one micro-batch's slice of event time for every machine. The
    files of one hour are committed together (48 commits for two days instead of
    one per micro-batch) to keep the build short; a query reads the same files.
    """
    from pyspark.sql import functions as F

    pq.write_table(rows, scratch / "rows.parquet")
    frame = (
        spark.read.parquet(str(scratch / "rows.parquet"))
        .withColumn("event_date", F.to_date("event_time"))
        .withColumn("event_hour", F.hour("event_time"))
        .cache()
    )
    hours = frame.select(*SILVER_PARTITIONS).distinct().orderBy(*SILVER_PARTITIONS).collect()
    for day, hour in hours:
        (
            frame.where((F.col("event_date") == F.lit(day)) & (F.col("event_hour") == hour))
            .coalesce(1)
            .sortWithinPartitions("event_time", "key")
            .write.format("delta")
            .partitionBy(*SILVER_PARTITIONS)
            .option("maxRecordsPerFile", batch_rows)
            .mode("append")
            .save(uri)
        )
    frame.unpersist()


def reads(settings: Settings, query: str, layout: str) -> dict[str, Any]:
    """What ``query`` reads on this layout, per engine (as ``pulsecast sql --explain``)."""
    duck = explain(settings, query, engine="duckdb").scans[0]
    spark_scan = explain(settings, query, engine="spark").scans[0]
    return {
        "layout": layout,
        "files_total": duck.files_total,
        "files_read_duckdb": duck.files_read,
        "files_read_spark": spark_scan.files_read,
        "partitions_total": duck.partitions_total,
        "partitions_read": duck.partitions_read,
        "bytes_total": duck.bytes_total,
        "bytes_read": duck.bytes_read,
        "duckdb_total_s_runs": [],
        "duckdb_query_s_runs": [],
        "spark_s_runs": [],
    }


def one_round(settings: Settings, query: str, row: dict[str, Any]) -> None:
    """Time the query once per engine and append the times to ``row``."""
    started = time.perf_counter()
    run_sql(settings, query, engine="duckdb")  # open the Delta tables, then query
    row["duckdb_total_s_runs"].append(round(time.perf_counter() - started, 3))
    # The query alone, the tables already open.
    row["duckdb_query_s_runs"].append(round(explain(settings, query).seconds, 3))
    started = time.perf_counter()
    run_sql(settings, query, engine="spark")
    row["spark_s_runs"].append(round(time.perf_counter() - started, 3))


def summarise(row: dict[str, Any]) -> None:
    for name in ("duckdb_total_s", "duckdb_query_s", "spark_s"):
        row[name] = round(statistics.median(row[f"{name}_runs"]), 3)
    print(
        f"  {row['layout']:<30} files {row['files_read_duckdb']:>5,} of "
        f"{row['files_total']:>5,} (spark {row['files_read_spark']:,}), partitions "
        f"{row['partitions_read']} of {row['partitions_total']}, "
        f"{human_bytes(row['bytes_read'])} of {human_bytes(row['bytes_total'])}; "
        f"duckdb {row['duckdb_total_s']:.3f} s (query {row['duckdb_query_s']:.3f} s), "
        f"spark {row['spark_s']:.3f} s",
        flush=True,
    )


def with_lake(settings: Settings, root: Path) -> Settings:
    return settings.model_copy(
        update={"lake": settings.lake.model_copy(update={"uri": root.as_uri()})}
    )


def optimize_step(
    spark: Any, settings: Settings, *, zorder: bool, max_file_size: int | None
) -> dict[str, Any]:
    if max_file_size is not None:
        spark.conf.set(MAX_FILE_SIZE, str(max_file_size))
    try:
        (result,) = optimize(
            spark, settings, zones=["silver"], streams=["telemetry"], zorder=zorder
        )
    finally:
        spark.conf.unset(MAX_FILE_SIZE)
    print(
        f"  optimize{' (z-order by key)' if zorder else ''}: {result.files_before:,} -> "
        f"{result.files_after:,} files in {result.seconds:.1f} s",
        flush=True,
    )
    return result.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2, help="days of event time")
    parser.add_argument("--entities", type=int, default=50, help="machines")
    parser.add_argument("--interval-s", type=float, default=10.0, help="seconds between readings")
    parser.add_argument("--batch-s", type=int, default=60, help="event time per micro-batch")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each query")
    parser.add_argument("--entity", default="m-0007", help="the machine the query asks for")
    parser.add_argument("--config", type=Path, default=None, help="pulsecast settings file")
    parser.add_argument("--keep", action="store_true", help="keep the scratch lake")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON lines to append to")
    args = parser.parse_args()

    load = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="pulsecast-lake-layout-"))
    base = load_settings(args.config)
    spark = spark_session(base, app_name="pulsecast-bench-lake")
    last_day = (START + timedelta(days=args.days - 1)).date()
    # The benchmark's own arguments, not outside input.
    query = (
        "SELECT event_time, temperature_c, cpu_util, vibration_mm_s, power_kw "  # noqa: S608
        f"FROM silver_telemetry WHERE key = '{args.entity}' "
        f"AND event_date = DATE '{last_day.isoformat()}' ORDER BY event_time"
    )
    print(f"query: {query}")

    started = time.monotonic()
    rows = simulate(args.entities, args.days, args.interval_s, args.batch_s, seed=42)
    batch_rows = int(args.entities * args.batch_s / args.interval_s)
    streamed = scratch / "streamed"
    build_lake(
        spark, rows, scratch, (streamed / "silver" / "telemetry").as_uri(), batch_rows=batch_rows
    )
    print(f"built {rows.num_rows:,} rows in {time.monotonic() - started:.0f} s", flush=True)

    # Every layout side by side: the streamed lake, and copies optimized step by step.
    hours = args.days * 24
    layouts: list[tuple[str, Settings]] = [("streamed", with_lake(base, streamed))]
    steps = []

    def derive(name: str, source: Path, *, zorder: bool, target: int | None) -> Path:
        lake = scratch / name
        shutil.copytree(source, lake)
        settings = with_lake(base, lake)
        steps.append(optimize_step(spark, settings, zorder=zorder, max_file_size=target))
        return lake

    compacted = derive("compacted", streamed, zorder=False, target=None)
    layouts.append(("compacted (1 GiB target)", with_lake(base, compacted)))
    zordered = derive("zordered", compacted, zorder=True, target=None)
    layouts.append(("z-ordered (1 GiB target)", with_lake(base, zordered)))
    hour_bytes = steps[0]["bytes_added"] // hours
    target = max(1, hour_bytes // 8)
    label = f"{human_bytes(target)} target"
    small = derive("compacted-small", streamed, zorder=False, target=target)
    layouts.append((f"compacted ({label})", with_lake(base, small)))
    small_z = derive("zordered-small", small, zorder=True, target=target)
    layouts.append((f"z-ordered ({label})", with_lake(base, small_z)))

    states = [reads(settings, query, layout) for layout, settings in layouts]  # also a warm-up
    # Rounds over all layouts, so that warm-up and the machine's other load
    # weigh on each layout alike; medians of the rounds.
    for _ in range(args.repeats):
        for (_, settings), row in zip(layouts, states, strict=True):
            one_round(settings, query, row)
    for row in states:
        summarise(row)

    at_default = with_lake(base, zordered)
    kept = vacuum(spark, at_default, zones=["silver"], streams=["telemetry"])[0]
    (dry,) = vacuum(spark, at_default, zones=["silver"], retain_hours=0, dry_run=True)
    (done,) = vacuum(spark, at_default, zones=["silver"], retain_hours=0, force=True)
    print(
        f"  vacuum: default retention deletes {kept.files} files; retain 0 h: "
        f"{done.files:,} files ({human_bytes(done.bytes or 0)}) in {done.seconds:.1f} s "
        f"(dry run listed {dry.files:,})",
        flush=True,
    )

    record = {
        "benchmark": "lake_layout",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_before": [round(x, 2) for x in load],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "spark_master": base.spark.master,
        "days": args.days,
        "entities": args.entities,
        "interval_s": args.interval_s,
        "batch_s": args.batch_s,
        "rows": rows.num_rows,
        "repeats": args.repeats,
        "query": query,
        "hour_bytes": hour_bytes,
        "scaled_target_bytes": target,
        "states": states,
        "optimize": steps,
        "vacuum": {
            "default_retention_files": kept.files,
            "dry_run_files": dry.files,
            "files": done.files,
            "bytes": done.bytes,
            "seconds": round(done.seconds, 1),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    print(f"appended to {args.out}")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        print(f"lake kept in {scratch}")


if __name__ == "__main__":
    main()

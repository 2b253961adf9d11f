"""Profile one streaming micro-batch, step by step (a profiling aid, not a benchmark).

Needs a running stack with events in ``telemetry.events`` (for example
``pulsecast up`` then ``pulsecast produce simulator --rate 0 --count 300000``).
Times, on the same records, the typed ``from_json`` alone, the full
``parse_events``, a Delta bronze append and a plain Parquet append (each twice,
cold then warm), then runs the job's batch writer once and prints its step
times (read, bronze, parse, dlq, silver, gold+warehouse).

    .venv/bin/python benchmarks/profile_stream_batch.py [--count N]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

from pyspark.sql import functions as F

from pulsecast.config import load_settings
from pulsecast.logging import configure_logging
from pulsecast.stream.job import BatchWriter
from pulsecast.stream.session import spark_session
from pulsecast.stream.transforms import _schema, bronze_rows, parse_events
from pulsecast.warehouse.schema import Warehouse


def timed(name: str, action) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    action()
    print(f"{name:<16} {time.monotonic() - started:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300_000, help="records to read")
    args = parser.parse_args()
    settings = load_settings()
    spec = settings.streams["telemetry"]
    spark = spark_session(settings, app_name="pulsecast-profile")
    raw = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap)
        .option("subscribe", "telemetry.events")
        .option("startingOffsets", "earliest")
        .load()
        .limit(args.count)
        .persist()
    )
    print(f"records          {raw.count():,}")
    scratch = tempfile.mkdtemp(prefix="pulsecast-profile-")
    typed = _schema(spec, typed=True)
    for run in ("cold", "warm"):
        print(f"-- {run}")
        timed(
            "from_json",
            lambda: (
                raw.select(F.from_json(F.col("value").cast("string"), typed).alias("j"))
                .select("j.*")
                .write.format("noop")
                .mode("overwrite")
                .save()
            ),
        )
        timed(
            "parse_events",
            lambda: (
                parse_events(raw, "telemetry", spec).write.format("noop").mode("overwrite").save()
            ),
        )
        timed(
            "delta append",
            lambda: bronze_rows(raw).write.format("delta").mode("append").save(f"{scratch}/delta"),
        )
        timed(
            "parquet append",
            lambda: bronze_rows(raw).write.mode("append").parquet(f"{scratch}/parquet"),
        )
    print("-- the job's batch writer (step times in the log line)")
    configure_logging("INFO")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    profiled = settings.model_copy(
        update={
            "lake": settings.lake.model_copy(update={"uri": f"file://{scratch}/lake"}),
        }
    )
    warehouse = Warehouse(profiled)
    warehouse.migrate()
    writer = BatchWriter(spark, profiled, "telemetry", warehouse=warehouse)
    writer.ensure_tables()
    timed("batch", lambda: writer(raw, 0))


if __name__ == "__main__":
    main()

"""Profile the streaming job's micro-batches, step by step (a profiling aid, not a benchmark).

Needs a running stack (``pulsecast up``). Produces ``--per-batch`` x
``--batches`` records like ``pulsecast bench e2e``'s (100 machines, event time
advancing at 10,000 events/s) into a topic of its own (once; reruns reuse it),
then runs the job's batch writer over consecutive slices of that topic on a
fresh lake, as the streaming query would, and prints each batch's time. The
writer logs every batch's step times at INFO (watermark, parse, dlq, silver,
gold, warehouse, appends, final, stats); this script adds how many Spark jobs each
batch ran, the CPU time the driver's JVM and Python spent on it (steadier
than wall time on a shared machine) and how many classes Spark's code
generation compiled for it, and in what time. The first batches include the JVM's warm-up.

    .venv/bin/python benchmarks/profile_stream_batch.py [--per-batch N] [--batches B] [--only K]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time

import psutil
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pulsecast.bench.e2e import telemetry_records
from pulsecast.bus.clients import spark_kafka_source_options
from pulsecast.config import load_settings
from pulsecast.logging import configure_logging
from pulsecast.stream.job import BatchWriter
from pulsecast.stream.session import spark_session
from pulsecast.warehouse.schema import Warehouse


def produce(bootstrap: str, topic: str, count: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic in admin.list_topics(timeout=10).topics:
        return
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i, record in enumerate(telemetry_records(count, rate=10_000, run=topic)):
        while True:
            try:
                producer.produce(topic, record, key=f"m-{i % 100:03d}".encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush()
    print(f"produced {count:,} records into {topic}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-batch", type=int, default=20_000, help="records per batch")
    parser.add_argument("--batches", type=int, default=12, help="batches to run")
    parser.add_argument(
        "--only", type=int, default=None, help="stop after this many batches (same slices)"
    )
    args = parser.parse_args()
    settings = load_settings()
    bootstrap = settings.kafka.bootstrap
    topic = f"profile{args.per_batch * args.batches}.events"
    produce(bootstrap, topic, args.per_batch * args.batches)
    spark = spark_session(settings, app_name="pulsecast-profile")
    configure_logging("INFO")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pulsecast-profile"})
    partitions = consumer.list_topics(topic).topics[topic].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in partitions}
    consumer.close()
    scratch = tempfile.mkdtemp(prefix="pulsecast-profile-")
    profiled = settings.model_copy(
        update={"lake": settings.lake.model_copy(update={"uri": f"file://{scratch}/lake"})}
    )
    warehouse = Warehouse(profiled)
    warehouse.migrate()
    writer = BatchWriter(spark, profiled, "telemetry", warehouse=warehouse, topic=topic)
    writer.ensure_tables()
    tracker = spark.sparkContext.statusTracker()
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # noqa: S101 (a live session has one)
    processes = [psutil.Process(jvm.java.lang.ProcessHandle.current().pid()), psutil.Process()]
    compilations = jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()
    codegen = jvm.org.apache.spark.sql.catalyst.expressions.codegen.CodeGenerator
    n = args.batches
    for batch in range(n if args.only is None else min(args.only, n)):
        offsets = [
            {topic: {str(p): end * (batch + k) // n for p, end in ends.items()}} for k in (0, 1)
        ]
        raw = (
            spark.read.format("kafka")
            .options(**spark_kafka_source_options(settings))  # as the job reads
            .option("subscribe", topic)
            .option("startingOffsets", json.dumps(offsets[0]))
            .option("endingOffsets", json.dumps(offsets[1]))
            .load()
        )
        group = f"profile-{topic}-{batch}"
        spark.sparkContext.setJobGroup(group, f"batch {batch}")
        compiled = compilations.getCount()
        compiling = codegen.compileTime()
        cpu = sum(sum(p.cpu_times()[:2]) for p in processes)
        started = time.monotonic()
        writer(raw, batch)
        elapsed = time.monotonic() - started
        cpu = sum(sum(p.cpu_times()[:2]) for p in processes) - cpu
        jobs = len(tracker.getJobIdsForGroup(group))
        compiled = compilations.getCount() - compiled
        compiling = (codegen.compileTime() - compiling) / 1e9
        print(
            f"batch {batch}: {elapsed:.2f} s, cpu {cpu:.2f} s, {jobs} Spark jobs, "
            f"{compiled} classes compiled in {compiling:.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()

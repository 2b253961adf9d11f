"""Rounds of the job's catch-up and Spark's pass-through over one topic, in one JVM.

Needs a running stack (``pulsecast up``). Produces ``--per-batch`` x 6
records like ``pulsecast bench e2e``'s into a topic of its own (once; reruns
reuse it, as ``profile_stream_batch.py`` does), then, ``--rounds`` times:
the streaming job without live scoring from the earliest offset on a fresh
lake, its batches back to back, as ``bench e2e``'s capacity phase runs it;
then Spark's Kafka → Parquet pass-through over the same records. Each round
prints the job's events/s (all, and after its first batch), the
pass-through's, their ratio, and the CPU the driver's JVM and Python spent
on the job's batches after the first. The rounds show the JVM warming up
(its compiler threads keep working through the first rounds) and how much
the figures vary from run to run; compare two versions by running this
alternately on each (``PYTHONPATH=<other checkout>/src``).

    .venv/bin/python benchmarks/catch_up_rounds.py [--rounds N] [--per-batch N] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import psutil
from profile_stream_batch import produce  # the same records, once per topic
from pyspark.sql import DataFrame

from pulsecast.bench import e2e
from pulsecast.config import load_settings
from pulsecast.stream import job as job_module
from pulsecast.stream.session import spark_session
from pulsecast.warehouse.schema import Warehouse

BATCHES = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="catch-ups and pass-throughs")
    parser.add_argument("--per-batch", type=int, default=200_000, help="records per batch")
    parser.add_argument("--json", action="store_true", help="one JSON object per round")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    total = args.per_batch * BATCHES
    stream = f"profile{total}"
    produce(settings.kafka.bootstrap, f"{stream}.events", total)
    root = Path(tempfile.mkdtemp(prefix="pulsecast-catch-up-"))
    own = e2e.bench_settings(settings, stream, root, scoring=False)
    own = own.model_copy(
        update={"stream": own.stream.model_copy(update={"max_offsets_per_trigger": args.per_batch})}
    )
    spark = spark_session(own, app_name="pulsecast-catch-up-rounds")
    Warehouse(own).migrate()
    jvm_pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()  # type: ignore[union-attr]
    processes = [psutil.Process(jvm_pid), psutil.Process()]
    starts: list[tuple[int, list[float]]] = []  # each batch's id and the CPU at its start
    call = job_module.BatchWriter.__call__

    def timed(writer: job_module.BatchWriter, batch: DataFrame, batch_id: int) -> None:
        starts.append((batch_id, [sum(p.cpu_times()[:2]) for p in processes]))
        call(writer, batch, batch_id)

    job_module.BatchWriter.__call__ = timed  # type: ignore[method-assign]
    try:
        for r in range(args.rounds):
            starts.clear()
            lake = e2e._fresh_lake(own, root, f"-{r}", scoring=False)
            eps, _, steady = e2e._capacity(spark, lake, stream, total, lambda _t: None)
            ended = [sum(p.cpu_times()[:2]) for p in processes]
            after_first = [cpu for batch_id, cpu in starts if batch_id >= 1]
            jvm, python = (
                (ended[0] - after_first[0][0], ended[1] - after_first[0][1])
                if after_first
                else (None, None)
            )
            shutil.rmtree(own.data_dir / "bench" / stream / "passthrough", ignore_errors=True)
            began = time.monotonic()
            passthrough = e2e._passthrough(spark, own, stream, total)
            row = {
                "round": r,
                "events": total,
                "job_eps": round(eps, 1),
                "job_steady_eps": None if steady is None else round(steady, 1),
                "passthrough_eps": round(passthrough, 1),
                "ratio": round(round(eps, 1) / round(passthrough, 1), 3),
                "jvm_cpu_s_after_first": None if jvm is None else round(jvm, 2),
                "python_cpu_s_after_first": None if python is None else round(python, 2),
                "passthrough_s": round(time.monotonic() - began, 2),
            }
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(
                    f"round {r}: job {eps:,.0f} events/s ({steady or 0:,.0f} after the first "
                    f"batch), pass-through {passthrough:,.0f}, ratio {row['ratio']:.3f}; "
                    f"CPU after the first batch: JVM {jvm or 0:.2f} s, Python {python or 0:.2f} s",
                    flush=True,
                )
    finally:
        job_module.BatchWriter.__call__ = call  # type: ignore[method-assign]
        Warehouse(own).delete_stream(stream)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""What reading up to a topic's newest record costs Spark, by the fetch wait (a benchmark).

Needs a running stack (``pulsecast up``). Produces ``--records`` records like
``pulsecast bench e2e``'s into a topic of its own (3 partitions; once, reruns
reuse it), then reads two equal slices of it with Spark's Kafka source and
Spark's ``noop`` sink (the read alone): the sixth before the last, and the
last sixth, which ends at each partition's newest record with no newer one
arriving, as a catch-up's last micro-batch does. Each read is timed with Kafka's
``fetch.max.wait.ms`` at each of ``--waits`` (500 is Kafka's default, 10 the
job's ``stream.fetch_max_wait_ms``), alternating, ``--rounds`` times after
an untimed warm-up round. Prints the medians, or one JSON object with
``--json``. A plain stack (not ``--secure``), as ``profile_stream_batch.py``.

    .venv/bin/python benchmarks/kafka_fetch_wait.py [--records N] [--rounds R] [--waits 500,10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from confluent_kafka import Consumer, TopicPartition
from profile_stream_batch import produce  # the same records, once per topic

from pulsecast.bus.clients import spark_kafka_options
from pulsecast.config import load_settings
from pulsecast.stream.session import spark_session

PARTITIONS = 3  # as profile_stream_batch.produce makes them


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600_000, help="records in the topic")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds")
    parser.add_argument(
        "--waits", default="500,10", help="fetch.max.wait.ms values, comma-separated"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    waits = [int(w) for w in args.waits.split(",")]
    settings = load_settings()
    bootstrap = settings.kafka.bootstrap
    topic = f"fetchwait{args.records}.events"
    produce(bootstrap, topic, args.records)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pulsecast-fetch-wait"})
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in range(PARTITIONS)
    }
    consumer.close()
    spark = spark_session(settings, app_name="pulsecast-fetch-wait")
    slices = {"middle": (4 / 6, 5 / 6), "to_newest": (5 / 6, 1.0)}

    def read(bounds: tuple[float, float], wait: int) -> float:
        start, end = ({str(p): round(ends[p] * b) for p in ends} for b in bounds)
        frame = (
            spark.read.format("kafka")
            .options(**spark_kafka_options(settings))
            .option("subscribe", topic)
            .option("startingOffsets", json.dumps({topic: start}))
            .option("endingOffsets", json.dumps({topic: end}))
            .option("kafka.fetch.max.wait.ms", str(wait))
            .load()
        )
        began = time.perf_counter()
        frame.write.format("noop").mode("overwrite").save()
        return time.perf_counter() - began

    times: dict[str, list[float]] = {f"{s}_wait{w}_s": [] for s in slices for w in waits}
    for round_ in range(args.rounds + 1):
        for name, bounds in slices.items():
            for wait in waits:
                seconds = read(bounds, wait)
                if round_:  # the first round warms the JVM up
                    times[f"{name}_wait{wait}_s"].append(seconds)
    medians = {key: round(statistics.median(values), 3) for key, values in times.items()}
    result = {"records_per_slice": args.records // 6, "rounds": args.rounds, **medians}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['records_per_slice']:,} records per slice, median of {args.rounds} reads:")
    for key, value in medians.items():
        print(f"  {key}: {value:.3f} s")


if __name__ == "__main__":
    main()

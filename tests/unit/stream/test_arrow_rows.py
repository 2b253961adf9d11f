from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession

from pulsecast.stream.arrow_rows import bronze_of_parse, silver_of_parse
from pulsecast.stream.transforms import bronze_rows_of_parsed, parse_events, silver_rows

from .test_transforms import event, kafka_rows


def same(got: pa.Table, want: pa.Table) -> None:
    assert [(f.name, f.type) for f in got.schema] == [(f.name, f.type) for f in want.schema]
    assert got.to_pylist() == want.to_pylist()


def test_bronze_and_silver_of_a_collected_parse_are_sparks(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    values = [
        event(),
        "not json",
        event(event_id="e2", event_time="2026-05-01T02:30:00+05:00"),  # 21:30 UTC, the day before
        event(event_id="e3", event_time="2026-05-01T23:59:59.5Z", p_cpu_util=500.0),
        event(
            event_id="e4", event_time="2026-05-01T23:59:59.5Z", ingest_time="2026-05-02T00:00:01Z"
        ),
    ]
    parsed = parse_events(kafka_rows(spark, values), "telemetry", telemetry, carry=("topic",))
    collected = parsed.toArrow()

    same(bronze_of_parse(collected), bronze_rows_of_parsed(parsed).toArrow())

    valid = collected.filter(pc.is_null(collected["reason"]))
    silver = silver_of_parse(valid, telemetry, 7)
    same(silver, silver_rows(parsed.where("reason IS NULL"), telemetry, 7, unique=True).toArrow())
    assert [(r["event_id"], str(r["event_date"]), r["event_hour"]) for r in silver.to_pylist()] == [
        ("e1", "2026-05-01", 12),
        ("e2", "2026-04-30", 21),
        ("e4", "2026-05-01", 23),
    ]

"""Bronze and silver rows in Arrow, from a micro-batch's parse collected to the driver.

The streaming job parses a small batch in the driver (every column of
:func:`~pulsecast.stream.transforms.parse_events`, judged; see
:mod:`pulsecast.stream.arrow_parse`), and shapes bronze's and silver's rows here, in bulk
with Arrow compute, instead of running a Spark job per table to collect them
(``docs/streaming.md``, "Performance"). The rows are those of
:func:`~pulsecast.stream.transforms.bronze_rows_of_parsed` and
:func:`~pulsecast.stream.transforms.silver_rows`, in the same columns and
types; the unit tests hold the two to each other.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pulsecast.config import StreamSpec

__all__ = ["bronze_of_parse", "silver_of_parse"]


def bronze_of_parse(parsed: pa.Table) -> pa.Table:
    """Bronze's rows of a collected parse that carries ``kafka_topic``."""
    stamps = parsed["kafka_timestamp"]
    return pa.table(
        {
            "key": parsed["kafka_key"],
            "value": parsed["raw_value"],
            "topic": parsed["kafka_topic"],
            "partition": parsed["partition"],
            "offset": parsed["offset"],
            "kafka_timestamp": stamps,
            "ingest_date": _utc_date(stamps),
        }
    )


def silver_of_parse(valid: pa.Table, spec: StreamSpec, batch_id: int) -> pa.Table:
    """Silver's rows of a collected parse's valid records, as batch ``batch_id``.

    Args:
        valid: Valid rows of a collected parse, one per event id (the caller
            deduplicates).
        spec: The stream's schema.
        batch_id: The micro-batch.
    """
    times = valid["event_time"]
    columns = {n: valid[n] for n in ("event_id", "key", "event_time", "ingest_time", *spec.fields)}
    return pa.table(
        {
            **columns,
            "kafka_partition": valid["partition"],
            "kafka_offset": valid["offset"],
            "batch_id": pa.repeat(pa.scalar(batch_id, pa.int64()), valid.num_rows),
            "event_date": _utc_date(times),
            "event_hour": pc.cast(pc.hour(_utc(times)), pa.int32()),
        }
    )


def _utc(stamps: pa.ChunkedArray) -> pa.ChunkedArray:
    """Instants with UTC as their zone, so calendar fields are UTC's (as Spark's session)."""
    unit = stamps.type.unit
    return pc.cast(stamps, pa.timestamp(unit, tz="UTC"))


def _utc_date(stamps: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(_utc(stamps), pa.date32())

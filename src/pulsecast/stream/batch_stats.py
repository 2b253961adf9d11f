"""What each micro-batch did, as a small lake table the dashboard's live panels read.

The overview and data-quality panels ask, every few seconds, how many records
arrived, how many landed, why the others were rejected and how old events
were when they landed. Answering that from bronze and silver means opening
one file per micro-batch and joining millions of rows on every refresh; the
streaming job knows the answers already, in bulk Arrow, when it commits a
batch. It appends them here (``<lake root>/state/<stream>_batches``, SQL name
``batches_<stream>``), in long form: one row per batch, measure and, for the
counts, the minute of the records' Kafka timestamps:

- ``received``: records read from Kafka (valid or not);
- ``accepted``: events written to silver;
- ``rejected``: records not written, per ``reason`` (the dead-letter reasons,
  ``late`` among them, and ``duplicate`` for an event id silver already held
  or an earlier record of the same batch had);
- ``out_of_order``: accepted events older than the newest event time of the
  batches before (late, but within the allowed lateness);
- ``entities`` (no minute): distinct keys among the accepted events;
- ``lag`` and ``pipeline`` (no minute): histograms of the seconds from each
  accepted event's event time (``lag``) and ingest time (``pipeline``) to the
  moment the batch's silver commit finished (``written_at``), one row per
  logarithmic bucket: ``seconds`` is the bucket's representative value, ``n``
  its events. A quantile read from the summed buckets of many batches is
  within :data:`RELATIVE_ACCURACY` of the exact one (the DDSketch
  construction); ``lag_max`` holds the batch's exact largest lag.

Appends are idempotent per batch id (a replayed batch is not counted twice)
and the table is compacted every :data:`COMPACT_EVERY` appends, so a day of
five-second batches stays a handful of files instead of 17,000.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from pulsecast.security.lake_crypto import LakeCrypto

__all__ = [
    "BATCH_STATS_SCHEMA",
    "COMPACT_EVERY",
    "RELATIVE_ACCURACY",
    "BatchStatsWriter",
    "batch_stats_rows",
    "epoch_micros",
    "first_occurrences",
    "histogram",
]

log = logging.getLogger(__name__)

#: A quantile of the lag histograms is within this fraction of the exact one.
RELATIVE_ACCURACY = 0.02
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
#: Lags below this (or negative: an event time ahead of the job's clock) count as this.
_SMALLEST_S = 0.001
#: Appends between two compactions of the table.
COMPACT_EVERY = 100
_US = 1_000_000

BATCH_STATS_SCHEMA = pa.schema(
    [
        ("batch_id", pa.int64()),
        ("written_at", pa.timestamp("us", tz="UTC")),
        ("minute", pa.timestamp("us", tz="UTC")),
        ("measure", pa.string()),
        ("reason", pa.string()),
        ("seconds", pa.float64()),
        ("n", pa.int64()),
        ("batch_date", pa.date32()),
    ]
)
_PARTITIONS = ["batch_date"]


def histogram(seconds: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Durations in logarithmic buckets: (each bucket's representative seconds, its count).

    Bucket ``i`` holds the values in ``(g^(i-1), g^i]`` with
    ``g = (1 + a) / (1 - a)``, ``a`` = :data:`RELATIVE_ACCURACY`; its
    representative value ``2g^i / (g + 1)`` is within ``a`` of each of them.
    """
    clipped = pc.max_element_wise(seconds, pa.scalar(_SMALLEST_S))
    index = pc.ceil(pc.divide(pc.ln(clipped), math.log(_GAMMA)))
    counts = pc.value_counts(index)
    buckets = counts.field("values")
    value = pc.divide(pc.multiply(pc.power(_GAMMA, buckets), 2.0), _GAMMA + 1.0)
    return value, pc.cast(counts.field("counts"), pa.int64())


def first_occurrences(
    ids: pa.Array | pa.ChunkedArray, order: Sequence[pa.Array | pa.ChunkedArray] = ()
) -> pa.Array:
    """A mask of the first row of each distinct value of ``ids``.

    Args:
        ids: The values.
        order: Columns that order the rows (the first, ascending, then the
            next...), first among equal values being the earlier row; the rows'
            own order when empty. The job orders copies of an event by Kafka
            partition and offset, as Spark's deduplication does
            (:func:`~pulsecast.stream.transforms.silver_rows`).
    """
    rows = np.arange(len(ids), dtype=np.int64)
    if order:
        keys = pa.table({f"k{i}": column for i, column in enumerate(order)})
        rows = pc.sort_indices(keys, [(f"k{i}", "ascending") for i in range(len(order))])
        rows = np.asarray(rows.to_numpy(), np.int64)
    ranked = pa.table({"id": pc.take(ids, pa.array(rows)), "rank": np.arange(len(rows))})
    first = ranked.group_by("id", use_threads=False).aggregate([("rank", "min")])["rank_min"]
    mask = np.zeros(len(ids), dtype=bool)
    mask[rows[first.to_numpy()]] = True
    return pa.array(mask)


def epoch_micros(times: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Timestamps as microseconds since the epoch (whatever their unit or zone)."""
    return pc.cast(pc.cast(times, pa.timestamp("us", tz="UTC")), pa.int64())


def _counts(minutes: pa.Array, labels: pa.Array | None, measure: str) -> pa.Table:
    """Rows of ``measure``: records per minute (and per label, as ``reason``)."""
    columns: dict[str, pa.Array] = {"minute": minutes}
    keys = ["minute"]
    if labels is not None:
        columns["reason"] = labels
        keys.append("reason")
    grouped = pa.table(columns).group_by(keys, use_threads=False).aggregate([([], "count_all")])
    rows = grouped.num_rows
    return pa.table(
        {
            "minute": grouped["minute"],
            "measure": pa.array([measure] * rows, pa.string()),
            "reason": grouped["reason"] if labels is not None else pa.nulls(rows, pa.string()),
            "seconds": pa.nulls(rows, pa.float64()),
            "n": grouped["count_all"],
        }
    )


def _per_batch(measure: str, seconds: pa.Array, n: pa.Array) -> pa.Table:
    rows = len(n)
    return pa.table(
        {
            "minute": pa.nulls(rows, pa.int64()),
            "measure": pa.array([measure] * rows, pa.string()),
            "reason": pa.nulls(rows, pa.string()),
            "seconds": pa.array(seconds, pa.float64()),
            "n": pa.array(n, pa.int64()),
        }
    )


def batch_stats_rows(
    verdict: pa.Table,
    *,
    batch_id: int,
    fresh: pa.Array,
    written_at: datetime,
    newest_before: datetime | None,
    entities: int,
) -> pa.Table:
    """One batch's rows of :data:`BATCH_STATS_SCHEMA` (see the module's description).

    Args:
        verdict: Every record of the batch: ``reason`` (null when valid),
            ``event_time``, ``ingest_time`` and ``kafka_timestamp``.
        batch_id: The batch.
        fresh: A mask over ``verdict``: the records written to silver.
        written_at: When silver's commit of the batch finished.
        newest_before: The newest event time of the batches before (None: none).
        entities: Distinct keys among the events written.
    """
    kafka_us = epoch_micros(verdict["kafka_timestamp"])
    minute_us = pc.multiply(pc.divide(kafka_us, 60 * _US), 60 * _US)  # integer division
    minutes = pc.cast(minute_us, pa.int64())
    valid = pc.is_null(verdict["reason"])
    # What became of each record: its reason, "duplicate", or null when written.
    outcome = pc.if_else(
        valid,
        pc.if_else(fresh, pa.scalar(None, pa.string()), pa.scalar("duplicate")),
        verdict["reason"],
    )
    written = pc.and_(valid, fresh)
    parts = [
        _counts(minutes, None, "received"),
        _counts(minutes.filter(written), None, "accepted"),
    ]
    rejected = pc.is_valid(outcome)
    if pc.any(rejected).as_py():
        parts.append(_counts(minutes.filter(rejected), outcome.filter(rejected), "rejected"))
    accepted = verdict.filter(written)
    if accepted.num_rows:
        event_us = epoch_micros(accepted["event_time"])
        if newest_before is not None:
            before = epoch_micros(
                pa.array([newest_before.astimezone(UTC)], pa.timestamp("us", "UTC"))
            )
            late = pc.less(event_us, before[0])
            if pc.any(late).as_py():
                parts.append(_counts(minutes.filter(written).filter(late), None, "out_of_order"))
        parts.append(_per_batch("entities", [None], [entities]))
        end_us = round(written_at.timestamp() * _US)
        for measure, column in (
            ("lag", event_us),
            ("pipeline", epoch_micros(accepted["ingest_time"])),
        ):
            seconds = pc.divide(pc.cast(pc.subtract(end_us, column), pa.float64()), float(_US))
            value, n = histogram(seconds)
            parts.append(_per_batch(measure, value, n))
            if measure == "lag":
                parts.append(_per_batch("lag_max", [pc.max(seconds).as_py()], [1]))
    rows = pa.concat_tables([p.cast(parts[0].schema) for p in parts])
    count = rows.num_rows
    moment = pa.scalar(written_at.astimezone(UTC), pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {
            "batch_id": pa.array([batch_id] * count, pa.int64()),
            "written_at": pa.array([moment] * count, pa.timestamp("us", tz="UTC")),
            "minute": pc.cast(rows["minute"], pa.timestamp("us", tz="UTC")),
            "measure": rows["measure"],
            "reason": rows["reason"],
            "seconds": rows["seconds"],
            "n": rows["n"],
            "batch_date": pa.array([written_at.astimezone(UTC).date()] * count, pa.date32()),
        }
    )
    return table.cast(BATCH_STATS_SCHEMA)


class BatchStatsWriter:
    """Appends one stream's batch statistics, once per batch, and keeps the table compact.

    Args:
        uri: The table (created empty if missing).
        stream: The stream (the appends' application id).
        compact_every: Appends between two compactions.
        crypto: The lake's encryption (None: the lake is not encrypted): the
            files are then written, and compacted, encrypted.
    """

    def __init__(
        self,
        uri: str,
        stream: str,
        *,
        compact_every: int = COMPACT_EVERY,
        crypto: LakeCrypto | None = None,
    ) -> None:
        from pulsecast.lake.small_tables import CompactedAppends

        self.uri = uri
        self.table = CompactedAppends(
            uri,
            f"pulsecast-batches-{stream}",
            "batch_date",
            compact_every=compact_every,
            crypto=crypto,
        )

    def ensure_table(self) -> None:
        """Create the table, empty, unless it exists."""
        from deltalake import write_deltalake

        write_deltalake(
            self.uri, BATCH_STATS_SCHEMA.empty_table(), partition_by=_PARTITIONS, mode="ignore"
        )

    def append(self, rows: pa.Table, batch_id: int) -> bool:
        """Append a batch's rows unless the table holds the batch; compact now and then."""
        return self.table.append(rows, batch_id)

"""Reading a catching-up stream's next micro-batch while the driver works on this one.

A micro-batch collected in the driver spends most of its time there, in
Python (parse, silver, gold), while Spark's tasks and one of the two cores
wait; its collect, Spark's Kafka read, then waits for the driver. When the
stream is behind (by a quarter batch or more, see ``min_records``), the
next batch's records are already known: Spark's Kafka source plans a batch
from where the last one ended up to ``maxOffsetsPerTrigger`` records,
shared among the partitions by their backlog (:func:`rate_limited_ends`).
So, right after a batch's records are
collected, :class:`ReadAhead` reads the next batch's likely records with a
Spark batch read on a thread of its own, and parses them there (the parse
depends on nothing the batch before changes; the watermark's judgement
comes later). When that batch comes, it takes the parse of the records of
the batch's actual offsets, read from the query's offset log (which Spark
writes before it runs the batch), and reads and parses any records the
guess missed. The batch is the same either way: the records at given
offsets of a Kafka partition never change, and the offsets are Spark's.
Whatever goes wrong (no log, a failed read, other partitions) is logged and
leaves the batch to its own collect: a read ahead never fails a batch.

Spark's progress reports count the rows its own reads of a batch produced,
and a batch read ahead is not read again:
:func:`pulsecast.monitoring.stream_metrics.note_read_ahead` gives the
listener the batch's records instead.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "OffsetRange",
    "ReadAhead",
    "in_range",
    "offset_log_ends",
    "offset_log_reader",
    "rate_limited_ends",
]

log = logging.getLogger(__name__)

#: A read ahead reads this share of the limit more than the guess (spread over partitions).
_MARGIN = 0.02
#: Offsets per partition.
Offsets = dict[int, int]
#: Reads the records of a topic from ``start`` up to ``end`` (per partition) as Arrow.
ReadRange = Callable[[Offsets, Offsets], pa.Table]
#: The newest offset of each of the given partitions (Kafka's high watermarks).
Latest = Callable[[list[int]], Offsets]
#: The text of one file of the query's offset log (by batch id); None if there is none.
ReadLog = Callable[[int], "str | None"]
#: Parses records: the parse, a row per record in their order (with their ``partition``
#: and ``offset``), and the positions of those Spark parsed (see
#: :func:`pulsecast.stream.arrow_parse.parse_records`).
Prepare = Callable[[pa.Table], tuple[pa.Table, np.ndarray]]


@dataclass(frozen=True)
class OffsetRange:
    """Records of one topic from ``start`` up to ``end`` (exclusive), per partition."""

    start: Offsets
    end: Offsets

    @property
    def size(self) -> int:
        """How many offsets the range spans."""
        return sum(max(self.end[p] - self.start.get(p, self.end[p]), 0) for p in self.end)


def rate_limited_ends(start: Offsets, latest: Offsets, *, limit: int) -> Offsets:
    """The ends Spark's Kafka source gives a batch from ``start`` of at most ``limit`` records.

    As ``KafkaMicroBatchStream.rateLimit``: ``limit`` shared among the
    partitions by their backlog (rounded down, but never to nothing), each
    end at most the partition's newest offset.
    """
    sizes = {p: end - start[p] for p, end in latest.items() if p in start and end > start[p]}
    total = sum(sizes.values())
    if total < 1:
        return dict(latest)
    ends = {}
    for p, end in latest.items():
        if p not in sizes:
            ends[p] = end
            continue
        share = limit * (sizes[p] / total)
        ends[p] = min(end, start[p] + (math.ceil(share) if share < 1 else math.floor(share)))
    return ends


def offset_log_ends(text: str, topic: str) -> Offsets | None:
    """A batch's end offsets of ``topic`` in one file of a query's offset log; None if absent.

    The file is ``v1``, the batch's metadata (JSON), then a line per source:
    the Kafka source's is ``{"<topic>": {"<partition>": <offset>, ...}}``.
    """
    lines = text.splitlines()
    if len(lines) < 3 or lines[0] != "v1":
        return None
    for line in lines[2:]:
        try:
            offsets = json.loads(line)
        except ValueError:
            continue
        if isinstance(offsets, dict) and isinstance(offsets.get(topic), dict):
            return {int(p): int(o) for p, o in offsets[topic].items()}
    return None


def in_range(records: pa.Table, span: OffsetRange) -> np.ndarray:
    """Which rows of ``records`` (``partition``, ``offset``) lie within ``span``."""
    if records.num_rows == 0:
        return np.zeros(0, bool)
    size = max(max(span.start, default=0), max(span.end, default=0)) + 1
    low = np.full(size, np.iinfo(np.int64).max, np.int64)  # partitions outside: no row
    high = np.full(size, np.iinfo(np.int64).min, np.int64)
    for p, stop in span.end.items():
        low[p], high[p] = span.start.get(p, stop), stop
    partition = records["partition"].to_numpy()
    offset = records["offset"].to_numpy()
    known = partition < size
    index = np.where(known, partition, 0)
    return np.asarray(known & (offset >= low[index]) & (offset < high[index]), bool)


@dataclass
class _Pending:
    """A read of ``span`` under way (or done: its ``parsed`` records, or an ``error``)."""

    after: int  # the batch it follows
    span: OffsetRange
    prepare: Prepare
    thread: threading.Thread
    parsed: tuple[pa.Table, np.ndarray] | None = None
    error: BaseException | None = None


class ReadAhead:
    """Reads the next micro-batch's records while the driver processes this one.

    Args:
        read_log: Reads a file of the query's offset log (see :func:`offset_log_reader`).
        topic: The topic the query reads.
        limit: The query's ``maxOffsetsPerTrigger``.
        read: Reads a range of the topic (a Spark batch read, collected),
            with the columns and types of the batch's own collect.
        latest: The partitions' newest offsets.
        min_records: A read ahead starts only when the stream is behind by at
            least this many records (fewer: the next batch is small, and the
            read's own Spark job would cost more than it saves).
    """

    def __init__(
        self,
        *,
        read_log: ReadLog,
        topic: str,
        limit: int,
        read: ReadRange,
        latest: Latest,
        min_records: int,
    ) -> None:
        self.read_log = read_log
        self.topic = topic
        self.limit = limit
        self.read = read
        self.latest = latest
        self.min_records = min_records
        self._ends: dict[int, Offsets] = {}  # batch id → its end offsets, as logged
        self._pending: _Pending | None = None
        self._unreadable = False  # the offset log's form is unknown (said once)

    def take(self, batch_id: int) -> tuple[pa.Table, int] | None:
        """Batch ``batch_id``'s parse, if a read ahead was made for it; else None.

        The parse (and how many of its records Spark parsed) of the
        batch's records, in the read's order; records of the batch's range
        that the read ahead did not reach are read and parsed now. None (the
        caller collects the batch) when there was no read ahead for this
        batch, it failed, or the offset log does not give the batch's range;
        a failure is logged, never raised.
        """
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        pending.thread.join()
        if pending.error is not None:
            self._warn(f"the read ahead of batch {batch_id} failed", pending.error, batch_id)
            return None
        if pending.after != batch_id - 1 or pending.parsed is None:
            return None
        try:
            return self._taken(pending, batch_id)
        except Exception as exc:
            self._warn(f"the read ahead of batch {batch_id} was not used", exc, batch_id)
            return None

    def start_after(self, batch_id: int, prepare: Prepare) -> None:
        """Batch ``batch_id``'s records are in: read (and ``prepare``) the next batch's.

        Only if the stream is behind by ``min_records`` or more; a failure to
        tell is logged, never raised.
        """
        try:
            span = self._next_span(batch_id)
        except Exception as exc:
            self._warn(f"no read ahead after batch {batch_id}", exc, batch_id)
            return
        if span is None:
            return
        self._forget()
        pending = _Pending(batch_id, span, prepare, threading.Thread())

        def run() -> None:
            try:
                pending.parsed = prepare(self.read(span.start, span.end))
            except BaseException as exc:  # logged when the batch comes (or it is dropped)
                pending.error = exc

        from pyspark import InheritableThread

        pending.thread = InheritableThread(target=run, daemon=True)
        self._pending = pending
        pending.thread.start()

    def drop(self) -> None:
        """Forget any read ahead and logged offsets (the batch failed: it is planned anew)."""
        self._forget()
        self._ends.clear()

    def _taken(self, pending: _Pending, batch_id: int) -> tuple[pa.Table, int] | None:
        span = self._range(batch_id)
        if span is None:
            return None
        if set(span.end) != set(pending.span.start) or any(
            span.start.get(p) != pending.span.start[p] for p in span.end
        ):
            return None  # not the range it was read for (other partitions, or a replan)
        assert pending.parsed is not None  # noqa: S101 (checked by the caller)
        parsed, spark_rows = pending.parsed
        keep = in_range(parsed, span)
        by_spark = int(np.count_nonzero(keep[spark_rows]))
        if not keep.all():
            parsed = parsed.filter(pa.array(keep))
        # What the read ahead did not reach (the stream grew unevenly meanwhile).
        reached = {p: min(max(pending.span.end[p], span.start[p]), span.end[p]) for p in span.end}
        missing = OffsetRange(reached, span.end)
        if missing.size:
            more, more_rows = pending.prepare(self.read(missing.start, missing.end))
            by_spark += len(more_rows)
            parsed = pa.concat_tables([parsed, more.cast(parsed.schema)])
        return parsed, by_spark

    def _next_span(self, batch_id: int) -> OffsetRange | None:
        """What to read after batch ``batch_id``: None if the stream is not behind enough."""
        this = self._range(batch_id)
        if this is not None and this.size < self.min_records:
            return None  # the stream was nearly caught up when this batch was planned
        end = self._end(batch_id)
        if end is None:
            return None
        latest = self.latest(sorted(end))
        if OffsetRange(end, latest).size < self.min_records:
            return None
        ends = rate_limited_ends(end, latest, limit=self.limit)
        # A little more than the guess: the stream may grow unevenly before Spark plans.
        margin = math.ceil(_MARGIN * self.limit / max(len(ends), 1))
        return OffsetRange(end, {p: min(latest[p], e + margin) for p, e in ends.items()})

    def _forget(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.thread.join()
            if pending.error is not None:
                self._warn("a read ahead not used failed", pending.error, pending.after + 1)

    def _warn(self, what: str, error: BaseException, batch_id: int) -> None:
        log.warning(
            "%s %s: %s (the batch is collected instead)",
            self.topic,
            what,
            next(iter(str(error).strip().splitlines()), type(error).__name__),
            exc_info=error,
            extra={"topic": self.topic, "batch_id": batch_id},
        )

    def _range(self, batch_id: int) -> OffsetRange | None:
        start, end = self._end(batch_id - 1), self._end(batch_id)
        if start is None or end is None:
            return None
        return OffsetRange(start, end)

    def _end(self, batch_id: int) -> Offsets | None:
        """Batch ``batch_id``'s end offsets, from the offset log (kept for the next batch)."""
        if batch_id not in self._ends:
            text = self.read_log(batch_id)
            ends = None if text is None else offset_log_ends(text, self.topic)
            if ends is None:
                if text is not None and not self._unreadable:
                    self._unreadable = True
                    log.warning(
                        "%s: the query's offset log does not give batch %s's offsets in a "
                        "form known here; its batches are collected, not read ahead",
                        self.topic,
                        batch_id,
                        extra={"topic": self.topic, "batch_id": batch_id},
                    )
                return None
            self._ends = {b: e for b, e in self._ends.items() if b >= batch_id - 1}
            self._ends[batch_id] = ends
        return self._ends[batch_id]


def offset_log_reader(spark: SparkSession, checkpoint: str) -> ReadLog:
    """Reads the files of the offset log of the query checkpointed at ``checkpoint``.

    Through Spark's Hadoop file systems: any scheme Spark checkpoints to.
    """
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # noqa: S101 (a live session has one)
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    root = checkpoint.rstrip("/")

    def read(batch_id: int) -> str | None:
        path = jvm.org.apache.hadoop.fs.Path(f"{root}/offsets/{batch_id}")
        fs = path.getFileSystem(conf)
        if not fs.exists(path):
            return None
        stream = fs.open(path)
        try:
            return bytes(stream.readAllBytes()).decode("utf-8")
        finally:
            stream.close()

    return read

"""The read ahead of a catching-up stream's next batch: its guess, its log, its slicing."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from pulsecast.stream.read_ahead import (
    OffsetRange,
    ReadAhead,
    in_range,
    offset_log_ends,
    rate_limited_ends,
)

TOPIC = "t.events"


def _log(ends: dict[int, int]) -> str:
    """An offset log file as Spark writes it for a Kafka source."""
    meta = {"batchWatermarkMs": 0, "batchTimestampMs": 1, "conf": {}}
    return "\n".join(
        ["v1", json.dumps(meta), json.dumps({TOPIC: {str(p): o for p, o in ends.items()}})]
    )


def _records(span: OffsetRange) -> pa.Table:
    """The records of ``span``: partition, offset and a value naming them."""
    rows = [(p, o) for p in sorted(span.end) for o in range(span.start[p], span.end[p])]
    return pa.table(
        {
            "partition": pa.array([p for p, _ in rows], pa.int32()),
            "offset": pa.array([o for _, o in rows], pa.int64()),
            "value": pa.array([f"{p}:{o}".encode() for p, o in rows], pa.binary()),
        }
    )


def _prepare(records: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """A stand-in parse: the records themselves, those at odd offsets "parsed by Spark"."""
    odd = np.flatnonzero(records["offset"].to_numpy() % 2 == 1)
    return records, odd


def _pairs(table: pa.Table) -> set[tuple[int, int]]:
    return set(zip(table["partition"].to_pylist(), table["offset"].to_pylist(), strict=True))


def test_rate_limit_shares_the_limit_by_backlog_as_spark_does() -> None:
    start = {0: 0, 1: 100, 2: 50}
    latest = {0: 600, 1: 400, 2: 350}  # backlogs 600, 300, 300
    assert rate_limited_ends(start, latest, limit=600) == {0: 300, 1: 250, 2: 200}


def test_rate_limit_never_starves_a_small_partition_and_caps_at_the_newest() -> None:
    start = {0: 0, 1: 0}
    assert rate_limited_ends(start, {0: 10_000, 1: 1}, limit=100) == {0: 99, 1: 1}
    assert rate_limited_ends(start, {0: 30, 1: 20}, limit=1_000) == {0: 30, 1: 20}


def test_rate_limit_with_no_backlog_is_the_newest() -> None:
    assert rate_limited_ends({0: 5}, {0: 5}, limit=100) == {0: 5}


def test_offset_log_gives_the_topics_ends() -> None:
    assert offset_log_ends(_log({0: 7, 1: 9}), TOPIC) == {0: 7, 1: 9}


def test_offset_log_of_several_sources_gives_the_topics() -> None:
    """Sources without an offset yet are "-"; other sources' offsets are skipped."""
    text = "\n".join(["v1", "{}", "-", '{"other.events": {"0": 3}}', '{"t.events": {"0": 8}}'])
    assert offset_log_ends(text, TOPIC) == {0: 8}


@pytest.mark.parametrize(
    "text",
    ["", "v2\n{}\n{}", 'v1\n{}\n{"other.events": {"0": 1}}', "v1\n{}\nnot json"],
)
def test_offset_log_without_the_topic_gives_none(text: str) -> None:
    assert offset_log_ends(text, TOPIC) is None


def test_in_range_keeps_the_range_only() -> None:
    table = _records(OffsetRange({0: 0, 1: 0, 2: 0}, {0: 10, 1: 10, 2: 10}))
    kept = table.filter(pa.array(in_range(table, OffsetRange({0: 2, 1: 0}, {0: 5, 1: 3}))))
    assert _pairs(kept) == {(0, 2), (0, 3), (0, 4), (1, 0), (1, 1), (1, 2)}


class _Topic:
    """A topic for the read ahead: its logged batch ends, its newest offsets, its reads."""

    def __init__(self, latest: dict[int, int]) -> None:
        self.latest = latest
        self.logged: dict[int, dict[int, int]] = {}
        self.reads: list[OffsetRange] = []
        self.failing_from: int | None = None  # reads from this one on fail

    def read(self, start: dict[int, int], end: dict[int, int]) -> pa.Table:
        span = OffsetRange(dict(start), dict(end))
        self.reads.append(span)
        if self.failing_from is not None and len(self.reads) > self.failing_from:
            raise RuntimeError("fetch failed")
        return _records(span)

    def ahead(self, limit: int, min_records: int = 1) -> ReadAhead:
        return ReadAhead(
            read_log=lambda b: _log(self.logged[b]) if b in self.logged else None,
            topic=TOPIC,
            limit=limit,
            read=self.read,
            latest=lambda parts: {p: self.latest[p] for p in parts},
            min_records=min_records,
        )


def test_the_next_batch_comes_from_the_read_ahead() -> None:
    topic = _Topic({0: 1_000, 1: 1_000})
    topic.logged = {0: {0: 100, 1: 100}, 1: {0: 200, 1: 200}}
    ahead = topic.ahead(limit=200)
    assert ahead.take(1) is None  # nothing read ahead yet
    ahead.start_after(0, _prepare)
    taken = ahead.take(1)
    assert taken is not None
    records, by_spark = taken
    assert _pairs(records) == _pairs(_records(OffsetRange({0: 100, 1: 100}, {0: 200, 1: 200})))
    assert by_spark == 100  # the odd offsets of both partitions
    assert len(topic.reads) == 1  # the guess held the batch: no second read


def test_what_the_guess_missed_is_read_then() -> None:
    topic = _Topic({0: 150, 1: 1_000})
    topic.logged = {0: {0: 100, 1: 100}}
    ahead = topic.ahead(limit=200)
    ahead.start_after(0, _prepare)
    topic.logged[1] = {0: 160, 1: 240}  # partition 0 grew before Spark planned
    taken = ahead.take(1)
    assert taken is not None
    records, by_spark = taken
    assert _pairs(records) == _pairs(_records(OffsetRange({0: 100, 1: 100}, {0: 160, 1: 240})))
    # The positions of the records "Spark parsed" follow the rows kept and added.
    assert by_spark == 6 + 70 + 24  # odd offsets kept of 0 and 1, then of the tail
    assert topic.reads == [
        # Backlogs 50 and 900 share the 200: 10 and 189, and a margin of 2 each.
        OffsetRange({0: 100, 1: 100}, {0: 112, 1: 291}),
        OffsetRange({0: 112, 1: 240}, {0: 160, 1: 240}),  # then what it missed
    ]


def test_no_read_ahead_while_the_stream_is_nearly_caught_up() -> None:
    topic = _Topic({0: 120})
    topic.logged = {0: {0: 100}}
    ahead = topic.ahead(limit=200, min_records=50)
    ahead.start_after(0, _prepare)
    assert topic.reads == []
    assert ahead.take(1) is None


def test_a_read_ahead_for_other_partitions_is_not_used() -> None:
    topic = _Topic({0: 1_000, 1: 10})
    topic.logged = {0: {0: 100}}
    ahead = topic.ahead(limit=100)
    ahead.start_after(0, _prepare)
    topic.logged[1] = {0: 190, 1: 10}  # a partition was added before Spark planned
    assert ahead.take(1) is None


def test_a_failed_read_ahead_leaves_the_batch_to_its_collect() -> None:
    topic = _Topic({0: 1_000})
    topic.logged = {0: {0: 100}, 1: {0: 200}}

    def broken(start: dict[int, int], end: dict[int, int]) -> pa.Table:
        raise RuntimeError("broker gone")

    ahead = topic.ahead(limit=100)
    ahead.read = broken
    ahead.start_after(0, _prepare)
    assert ahead.take(1) is None


def test_a_read_ahead_is_for_the_next_batch_only() -> None:
    topic = _Topic({0: 1_000})
    topic.logged = {0: {0: 100}, 1: {0: 200}, 2: {0: 300}}
    ahead = topic.ahead(limit=100)
    ahead.start_after(0, _prepare)
    assert ahead.take(2) is None  # batch 1 never came through here
    ahead.start_after(1, _prepare)
    ahead.drop()  # the batch failed: it will be planned anew
    assert ahead.take(2) is None


def test_failures_to_look_ahead_never_fail_the_batch(caplog: pytest.LogCaptureFixture) -> None:
    topic = _Topic({0: 1_000})
    topic.logged = {0: {0: 100}, 1: {0: 200}}

    def unreachable(partitions: list[int]) -> dict[int, int]:
        raise OSError("broker unreachable")

    ahead = topic.ahead(limit=100)
    ahead.latest = unreachable
    ahead.start_after(0, _prepare)  # no raise: logged
    assert ahead.take(1) is None
    assert "broker unreachable" in caplog.text

    def unreadable(batch_id: int) -> str:
        raise OSError("checkpoint store down")

    ahead = topic.ahead(limit=100)
    ahead.read_log = unreadable
    ahead.start_after(0, _prepare)
    assert "checkpoint store down" in caplog.text


def test_a_failed_read_of_what_the_guess_missed_leaves_the_batch_to_its_collect() -> None:
    topic = _Topic({0: 150, 1: 1_000})
    topic.logged = {0: {0: 100, 1: 100}}
    topic.failing_from = 1  # the guess is read; the read of what it missed fails
    ahead = topic.ahead(limit=200)
    ahead.start_after(0, _prepare)
    topic.logged[1] = {0: 160, 1: 240}
    assert ahead.take(1) is None
    assert len(topic.reads) == 2


def test_no_read_ahead_after_a_small_batch() -> None:
    """A batch well under the limit was planned with the stream nearly caught up."""
    topic = _Topic({0: 10_000})
    topic.logged = {0: {0: 100}, 1: {0: 110}}
    ahead = topic.ahead(limit=100, min_records=25)
    ahead.start_after(1, _prepare)
    assert topic.reads == []


def test_an_offset_log_of_another_form_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    topic = _Topic({0: 1_000})
    ahead = ReadAhead(
        read_log=lambda b: "v2\n0:{}\n",
        topic=TOPIC,
        limit=100,
        read=topic.read,
        latest=lambda parts: dict.fromkeys(parts, 1_000),
        min_records=1,
    )
    ahead.start_after(0, _prepare)
    ahead.start_after(1, _prepare)
    assert caplog.text.count("offset log does not give") == 1
    assert topic.reads == []

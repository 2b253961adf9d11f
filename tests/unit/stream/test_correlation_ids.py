"""The correlation ids a batch's log line names, from either form of its parse."""

from __future__ import annotations

import pyarrow as pa

from pulsecast.monitoring.correlation import CORRELATION_HEADER
from pulsecast.stream.job import _correlation_ids

HEADER = pa.struct([("key", pa.string()), ("value", pa.binary())])


def test_ids_are_read_from_the_headers_of_records_parsed_in_the_driver() -> None:
    headers = pa.array(
        [
            [{"key": CORRELATION_HEADER, "value": b"req-2"}, {"key": "other", "value": b"x"}],
            None,
            [],
            [{"key": CORRELATION_HEADER, "value": b"req-1"}],
            [{"key": CORRELATION_HEADER, "value": b"req-2"}],
            [{"key": CORRELATION_HEADER, "value": None}],
        ],
        pa.list_(HEADER),
    )
    assert _correlation_ids(pa.table({"kafka_headers": headers})) == (["req-1", "req-2"], 2)


def test_ids_are_read_from_the_verdicts_column_of_a_batch_parsed_by_spark() -> None:
    ids = pa.array([["b"], None, ["a", "b"], []], pa.list_(pa.string()))
    assert _correlation_ids(pa.table({"_correlation": ids})) == (["a", "b"], 2)


def test_a_batch_read_without_headers_names_none() -> None:
    assert _correlation_ids(pa.table({"reason": pa.array([None], pa.string())})) == ([], 0)

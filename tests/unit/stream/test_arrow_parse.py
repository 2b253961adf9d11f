"""The Arrow parse (``arrow_parse``) against Spark's (``transforms.parse_events``).

Every test parses the same Kafka records both ways and holds the results
equal, column by column, including the verdicts' reasons, fields and
messages; and checks that the ordinary records were parsed by Arrow, not
handed to Spark.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from pulsecast.config import FieldSpec, StreamSpec
from pulsecast.stream.arrow_parse import judge_late, parse_records
from pulsecast.stream.transforms import parse_events

SPEC = StreamSpec(
    key_field="entity_id",
    fields={
        "entity_id": FieldSpec(type="str", required=True),
        "reading": FieldSpec(type="float", required=True, min=-50, max=200),
        "count": FieldSpec(type="int", required=False, min=0, max=10**12),
        "ok": FieldSpec(type="bool", required=False),
        "seen_at": FieldSpec(type="timestamp", required=False),
        "level": FieldSpec(type="str", required=False, choices=["low", "high"]),
        "note": FieldSpec(type="str", required=False),
    },
)
STREAM = "plant"
KAFKA_TS = datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)


def record(i: int = 0, **changes: object) -> bytes:
    body: dict[str, object] = {
        "event_id": f"e{i}",
        "event_time": "2026-05-01T12:00:00.250Z",
        "payload": {"entity_id": f"m-{i % 3}", "reading": 20.5 + i, "count": i, "ok": True},
    }
    for key, value in changes.items():
        if key.startswith("p_"):
            payload = dict(body["payload"])  # type: ignore[call-overload]
            payload[key[2:]] = value
            body["payload"] = payload
        else:
            body[key] = value
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def raw_table(values: list[bytes | None], *, headers: bool = False) -> pa.Table:
    n = len(values)
    columns: dict[str, pa.Array] = {
        "key": pa.array([f"m-{i % 3}".encode() for i in range(n)], pa.binary()),
        "value": pa.array(values, pa.binary()),
        "topic": pa.array([f"{STREAM}.events"] * n),
        "partition": pa.array([i % 2 for i in range(n)], pa.int32()),
        "offset": pa.array(range(n), pa.int64()),
        "timestamp": pa.array([KAFKA_TS] * n, pa.timestamp("us", tz="UTC")),
        "timestampType": pa.array([0] * n, pa.int32()),
    }
    if headers:
        header = pa.struct([("key", pa.string()), ("value", pa.binary())])
        columns["headers"] = pa.array(
            [[{"key": "pulsecast-correlation-id", "value": f"c{i}".encode()}] for i in range(n)],
            pa.list_(header),
        )
    return pa.table(columns)


def spark_parse(spark: SparkSession, raw: pa.Table) -> pa.Table:
    carry = tuple(c for c in ("topic", "headers") if c in raw.column_names)
    frame = spark.createDataFrame(raw)
    return parse_events(frame, STREAM, SPEC, carry=carry).toArrow()


def both(
    spark: SparkSession, values: list[bytes | None], *, min_span: int = 1, headers: bool = False
) -> tuple[pa.Table, pa.Table, int]:
    """Spark's parse, Arrow's (with Spark for what it refuses) and how many Spark parsed."""
    raw = raw_table(values, headers=headers)
    expected = spark_parse(spark, raw)
    handed: list[int] = []

    def fallback(span: pa.Table) -> pa.Table:
        handed.append(span.num_rows)
        return spark_parse(spark, span)

    got, spark_rows = parse_records(
        raw,
        stream=STREAM,
        spec=SPEC,
        spark_parse=fallback,
        schema=expected.schema,
        min_span=min_span,
    )
    assert len(spark_rows) == sum(handed)
    assert len(handed) <= 1  # what Arrow refuses goes to Spark in one call
    return expected, got, len(spark_rows)


def assert_same(expected: pa.Table, got: pa.Table) -> None:
    assert got.schema == expected.schema
    for name in expected.column_names:
        assert plain(got[name]) == plain(expected[name]), name


def plain(column: pa.ChunkedArray) -> list[object]:
    """The column's values, NaN as a string (NaN equals nothing)."""
    return ["NaN" if v != v else v for v in column.to_pylist()]


ORDINARY = [
    record(0),
    record(1, ingest_time="2026-05-01T12:00:01Z", stream=STREAM, key="m-1"),
    record(2, p_reading=-50, p_count=10**12),  # bounds are inclusive
    record(3, p_reading=1e2, p_seen_at="2026-05-01 13:00:00+01:00", p_level="low"),
    record(4, event_time="2026-05-01T12:00:00.123456+0530", p_seen_at="2026-05-01T11:00:00-0200"),
    record(5, p_note="caf\u00e9 \\ \u2028 \x00", p_ok=None, p_count=None),
    record(6, event_id=..., unknown={"deep": [1, {"x": None}]}),  # id: the value's SHA-256
    record(7, event_time="0001-01-01T00:00:00Z", p_reading=0.0),
    b'  {"event_id":"e8","event_time":"2026-05-01T12:00:00Z","payload":{"entity_id":"m-2",'
    b'"reading":-0.0,"Reading":"x"}}\t',
    # Each of these is judged by Arrow, as Spark does.
    record(9, p_reading=250.0),
    record(10, p_reading=float("nan")),  # Spark orders NaN above every number
    record(11, p_reading=float("-inf")),
    record(12, p_count=-1),
    record(13, p_entity_id=None),
    record(14, payload=None),
    record(15, payload=...),
    record(16, event_time=None),
    record(17, key="m-other"),
    record(18, stream="other"),
    record(19, p_level="medium"),
    record(20, p_reading=None, p_level="medium"),  # the first problem wins
    b"{}",
    record(21, p_reading=float("inf")),
]


@pytest.mark.parametrize("headers", [False, True])
def test_ordinary_records_are_parsed_by_arrow_as_spark_parses_them(
    spark: SparkSession, headers: bool
) -> None:
    expected, got, by_spark = both(spark, ORDINARY, headers=headers)
    assert by_spark == 0
    assert_same(expected, got)
    reasons = got["reason"].to_pylist()
    assert reasons[:9] == [None] * 9
    assert reasons[9:] == [
        "out_of_range",
        "out_of_range",
        "out_of_range",
        "out_of_range",
        "missing_field",
        "missing_field",
        "missing_field",
        "missing_field",
        "key_mismatch",
        "stream_mismatch",
        "not_allowed",
        "missing_field",
        "missing_field",
        "out_of_range",
    ]


REFUSED = [
    b"not json",
    b'{"event_id":"x"',
    b"null",  # a line pyarrow's reader must never see (it crashes on it)
    b"[1]",
    b'"text"',
    b"5",
    b"",
    b"   ",
    None,
    b'{"a":1}{"b":2}',
    b'{"a":1} null',
    b'{"a":1}\n{"b":2}',
    b'{"a":1}\r',
    b"\xef\xbb\xbf" + record(0),
    b"{'event_id':'x'}",
    record(0, payload=5),
    record(0, payload=[1]),
    record(0, p_entity_id=7),  # Spark takes a number as a text field's text
    record(0, p_note=True),
    record(0, event_id=12),
    record(0, p_reading="20.5"),
    record(0, p_count=1.5),
    record(0, p_count=10**20),
    record(0, p_ok="yes"),
    b'{"event_id":"a","event_id":"b","event_time":"2026-05-01T12:00:00Z","payload":{}}',
    b'{"event_id":"\xff"}',
    b'{"event_id":"\\ud800"}',
    record(0, event_time="2026-05-01"),  # Spark reads it, and rejects it
    record(0, event_time="2026-02-30T00:00:00Z"),
    record(0, event_time="2026-05-01T12:00:00z"),
    record(0, event_time="2026-05-01T12:00:00.123456789Z"),
    record(0, event_time="2026-05-01T12:00:00Z\n"),  # Java's $ matches before a line end
    record(0, ingest_time="yesterday"),
    record(0, p_seen_at="12:00"),
    record(0, p_reading=123.0).replace(b"123.0", b"1e400"),
    record(0, p_reading=123.0).replace(b"123.0", b"Inf"),  # Arrow reads these words,
    record(0, p_reading=123.0).replace(b"123.0", b"-Inf"),  # Spark's parser does not
    record(0, p_reading=123.0).replace(b"123.0", b"-NaN"),
    record(0, p_reading=123.0).replace(b"123.0", b"+INF"),
    record(0, other=777).replace(b"777", b"Inf"),  # in a field no one declared, too
    b'{"a":1} null {"b":2}',
    record(0, event_time="2026-05-01T12:00:00+19:00"),  # beyond Java's +-18:00
    record(0, event_time="2026-05-01T12:00:00-1801"),
    record(0, ingest_time="2026-05-01T12:00:00+23:59"),
    record(0, p_seen_at="2026-05-01T12:00:00+2000"),
    b'{"payload":{"reading":' + b"1" * 1200 + b"}}",
    b'{"x":' + b"[" * 1100 + b"]" * 1100 + b"}",
]


@pytest.mark.parametrize("value", REFUSED, ids=range(len(REFUSED)))
def test_records_arrow_cannot_be_trusted_with_are_parsed_by_spark(
    spark: SparkSession, value: bytes | None
) -> None:
    values = [record(0), record(1), value, record(3), record(4)]
    expected, got, by_spark = both(spark, values)
    assert_same(expected, got)
    assert by_spark == 1  # the span is halved down to the one record


def test_a_refused_span_is_halved_until_spark_parses_small_spans(spark: SparkSession) -> None:
    values = [record(i) for i in range(40)]
    values[5] = b'{"event_id": oops}'  # an object to look at; the reader refuses it
    values[33] = b"null"  # ruled out by its value alone: straight to Spark
    expected, got, by_spark = both(spark, values, min_span=4)
    assert_same(expected, got)
    # The 39 others: 39 -> 19 -> 9 -> 4 + 5 -> 2 + 3, records 4 and 5 go to Spark.
    assert by_spark == 1 + 2


def test_halving_stops_when_bad_records_are_everywhere(spark: SparkSession) -> None:
    values = [record(i) for i in range(64)]
    for i in range(0, 64, 4):
        values[i] = record(i, p_reading="hot")  # a text for a number: the reader refuses
    expected, got, by_spark = both(spark, values, min_span=1)
    assert_same(expected, got)
    # 64 -> 2 x 32 -> 4 x 16 -> 8 x 8 -> 16 x 4 refused, more than 8: all 64 to Spark.
    assert by_spark == 64
    assert got["reason"].to_pylist()[:2] == ["wrong_type", None]


def test_valid_records_older_than_the_watermark_are_late(spark: SparkSession) -> None:
    values = [
        record(0, event_time="2026-05-01T11:58:00Z"),
        record(1, event_time="2026-05-01T12:00:00Z"),
        record(2, event_time="2026-05-01T11:50:00Z", p_reading=500.0),
    ]
    _, got, _ = both(spark, values)
    mark = pa.scalar(datetime(2026, 5, 1, 11, 59, tzinfo=UTC), pa.timestamp("us", tz="UTC"))
    judged = judge_late(got, mark, "event_time: older")
    assert judged["reason"].to_pylist() == ["late", None, "out_of_range"]
    assert judged["field"].to_pylist() == ["event_time", None, "payload.reading"]
    assert judged["message"].to_pylist()[0] == "event_time: older"
    assert judge_late(got, None, "x") is got


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_time": "2026-02-30T00:00:00Z"}, "event_time"),
        ({"event_time": "2026-05-01T24:00:00Z"}, "event_time"),
        ({"p_seen_at": "2026-13-01T00:00:00+01:00"}, "payload.seen_at"),
    ],
)
def test_a_time_of_the_pattern_that_is_no_date_is_an_invalid_timestamp(
    spark: SparkSession, changes: dict[str, object], field: str
) -> None:
    expected, got, by_spark = both(spark, [record(0), record(1, **changes)])
    assert_same(expected, got)
    assert by_spark == 1
    assert got["reason"].to_pylist() == [None, "invalid_timestamp"]
    assert got["field"].to_pylist() == [None, field]


def test_number_words_in_a_text_are_read_by_arrow(spark: SparkSession) -> None:
    values = [record(0, p_note="Information on -NaN and Infra"), record(1, p_note="[Inf]")]
    expected, got, by_spark = both(spark, values)
    assert_same(expected, got)
    assert by_spark == 1  # "[Inf]": a text that looks like a value costs a refusal

"""Parse and judge a micro-batch's Kafka records in the driver, with Arrow.

The streaming job collects a small batch's raw records (as Spark's
pass-through reads them) and parses them here: pyarrow's multithreaded JSON
reader against the stream's declared schema, then the same checks as
:func:`~pulsecast.stream.transforms.parse_events`, in bulk with Arrow compute.
The result has the columns, types and verdicts (reason, field, message) of
Spark's parse collected; the unit tests hold the two to each other on
ordinary and pathological records.

The reader is stricter than Spark's JSON parser in some ways and looser in
none that this module lets through. Records it cannot be trusted with (a
malformed or non-object value, a number given for a text field, a value it
would split or skip, an unusual timestamp, a very long number or deep
nesting) make it refuse a span of records; :func:`parse_records` halves a
refused span until the spans are small, and those are parsed by Spark's own
:func:`~pulsecast.stream.transforms.parse_events`, so every verdict is
Spark's either way. No record is parsed by Python code of its own.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from pulsecast.config import FieldSpec, StreamSpec
from pulsecast.stream.transforms import RFC3339, TYPE_NAMES, bound_text

__all__ = ["RAW_COLUMNS", "judge_late", "parse_records", "read_schema"]


#: The Kafka source's columns that :func:`parse_records` reads (``headers`` if read).
RAW_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp")

_ARROW_TYPES: dict[str, pa.DataType] = {
    "float": pa.float64(),
    "int": pa.int64(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.string(),  # parsed below, strictly RFC 3339
}
_INSTANT = pa.timestamp("us", tz="UTC")
#: Each value starts and ends an object (a value the reader would take for none is
#: refused: it crashes on a line of ``null``), and holds no line end (checked below).
_OBJECT_EDGES = (r"^[ \t]*\{", r"\}[ \t]*$")
_LF, _CR = ord("\n"), ord("\r")
#: Jackson's limits in Spark's JSON parser (nesting depth, digits of a number): a value
#: shorter than this cannot reach them; longer ones are checked (see ``_within_limits``).
_JACKSON_LIMIT = 1000
#: A refused span is halved down to this many records, then parsed by Spark.
MIN_SPAN = 2048

#: Parses a span of raw records with Spark: the columns of the parse, as Arrow.
SparkParse = Callable[[pa.Table], pa.Table]


def read_schema(spec: StreamSpec) -> pa.Schema:
    """The JSON reader's schema: the envelope's strings and the typed payload."""
    payload = pa.struct([(name, _ARROW_TYPES[f.type]) for name, f in spec.fields.items()])
    envelope = [(name, pa.string()) for name in ("event_id", "stream", "key", "event_time")]
    return pa.schema([*envelope, ("ingest_time", pa.string()), ("payload", payload)])


def parse_records(
    raw: pa.Table,
    stream: str,
    spec: StreamSpec,
    spark_parse: SparkParse,
    schema: pa.Schema,
    *,
    min_span: int = MIN_SPAN,
) -> tuple[pa.Table, int]:
    """Every record of ``raw`` parsed and judged, as ``parse_events`` collected would be.

    Args:
        raw: Kafka records (:data:`RAW_COLUMNS`, and ``headers`` when read).
        stream: The stream's name.
        spec: Its declared schema.
        spark_parse: Spark's parse of a span of ``raw`` that Arrow refuses
            (``parse_events`` over it, collected).
        schema: The columns the result has (Spark's parse's, as Arrow).
        min_span: A refused span of more records than this is halved.

    Returns:
        The parse, a row per record in ``raw``'s order, with ``schema``'s
        columns; and how many records Spark parsed.
    """
    if raw.num_rows == 0:
        return schema.empty_table(), 0
    spans: list[pa.Table] = []
    by_spark = 0
    pending = [raw.combine_chunks()]
    while pending:
        span = pending.pop()
        parsed = _arrow_parse(span, stream, spec)
        if parsed is None and span.num_rows > min_span:
            half = span.num_rows // 2
            pending += [span.slice(half), span.slice(0, half)]  # the first half is next
            continue
        if parsed is None:
            parsed = spark_parse(span)
            by_spark += span.num_rows
        spans.append(parsed.select(schema.names).cast(schema))
    return pa.concat_tables(spans).combine_chunks(), by_spark


def _arrow_parse(raw: pa.Table, stream: str, spec: StreamSpec) -> pa.Table | None:
    """The parse of ``raw`` with Arrow, or None when it is refused (see the module)."""
    values = raw["value"].combine_chunks()
    try:
        text = pc.cast(values, pa.string())  # raises on invalid UTF-8
    except pa.ArrowInvalid:
        return None
    if values.null_count or not _within_limits(text):
        return None
    for edge in _OBJECT_EDGES:
        if not pc.all(pc.match_substring_regex(text, edge)).as_py():
            return None
    lines = pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values)
    joined = pc.binary_join(lines, b"\n")[0].as_buffer()
    # No line ends but the ones between records: the reader sees one line per record.
    ends = np.frombuffer(joined, np.uint8)
    if np.count_nonzero(ends == _LF) != len(values) - 1 or np.count_nonzero(ends == _CR):
        return None
    try:
        keys = pc.cast(raw["key"], pa.string())
        read = pj.read_json(
            pa.BufferReader(joined),
            read_options=pj.ReadOptions(use_threads=True, block_size=1 << 22),
            parse_options=pj.ParseOptions(
                explicit_schema=read_schema(spec), unexpected_field_behavior="ignore"
            ),
        )
        read.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if read.num_rows != raw.num_rows:
        return None
    read = read.combine_chunks()
    payload = read["payload"].chunk(0)
    fields = {name: payload.field(name) for name in spec.fields}
    instants = _instants(read, spec, fields)
    if instants is None:
        return None
    event_time, ingest_time, stamps = instants
    verdict = _verdicts(read, stream, spec, fields)
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "kafka_key": keys,
        "raw_value": values,
        "partition": raw["partition"],
        "offset": raw["offset"],
        "kafka_timestamp": raw["timestamp"],
        "kafka_topic": raw["topic"],
    }
    if "headers" in raw.column_names:
        columns["kafka_headers"] = raw["headers"]
    columns |= {
        "event_id": _event_ids(read["event_id"].chunk(0), values),
        "key": fields[spec.key_field],
        "event_time": event_time,
        "ingest_time": pc.coalesce(ingest_time, pc.cast(raw["timestamp"], _INSTANT)),
        **{name: stamps.get(name, fields[name]) for name in spec.fields},
        **verdict,
    }
    return pa.table(columns)


def _within_limits(text: pa.Array) -> bool:
    """Whether no value can reach Jackson's nesting or number-length limits.

    A value that can (longer than the limits) may still be fine: its
    brackets and number characters are counted, a bound on both.
    """
    long = text.filter(pc.greater(pc.utf8_length(text), _JACKSON_LIMIT))
    if len(long) == 0:
        return True
    brackets = pc.add(pc.count_substring(long, "{"), pc.count_substring(long, "["))
    numbers = pc.count_substring_regex(long, "[-+.eE0-9]")
    deepest, longest = pc.max(brackets).as_py(), pc.max(numbers).as_py()
    return bool(deepest < _JACKSON_LIMIT and longest < _JACKSON_LIMIT)


def _instants(
    read: pa.Table, spec: StreamSpec, fields: dict[str, pa.Array]
) -> tuple[pa.Array, pa.Array, dict[str, pa.Array]] | None:
    """``event_time``, ``ingest_time`` and the timestamp fields as instants, or None.

    None (Spark parses the span) when a text is not of the strict pattern or
    Arrow cannot read it. (RE2 matches the pattern where Java does, except
    before a final line end, which Java's ``$`` accepts: such a text fails
    here and goes to Spark too.)
    """
    texts = {
        "event_time": read["event_time"].chunk(0),
        "ingest_time": read["ingest_time"].chunk(0),
        **{n: fields[n] for n, f in spec.fields.items() if f.type == "timestamp"},
    }
    parsed: dict[str, pa.Array] = {}
    for name, text in texts.items():
        # A text that fails the pattern is rejected by the verdict (or, as ingest_time,
        # read leniently), but Spark reads some of them, and its instant is kept.
        if not pc.all(pc.match_substring_regex(text, RFC3339), min_count=0).as_py():
            return None
        try:
            parsed[name] = pc.cast(text, _INSTANT)
        except pa.ArrowInvalid:
            return None
    event_time = parsed.pop("event_time")
    ingest_time = parsed.pop("ingest_time")
    return event_time, ingest_time, parsed


def _verdicts(
    read: pa.Table, stream: str, spec: StreamSpec, fields: dict[str, pa.Array]
) -> dict[str, pa.Array]:
    """Each record's ``reason``, ``field`` and ``message``: the first problem, or nulls."""
    n = read.num_rows
    reason = pa.nulls(n, pa.string())
    field = pa.nulls(n, pa.string())
    message = pa.nulls(n, pa.string())
    decided = pa.repeat(pa.scalar(False), n)
    payload = read["payload"].chunk(0)
    event_time = read["event_time"].chunk(0)
    checks: list[tuple[pa.Array, str, str | None, str]] = [
        (pc.is_null(payload), "missing_field", "payload", "payload: required field is missing"),
        (
            pc.is_null(event_time),
            "missing_field",
            "event_time",
            "event_time: required field is missing",
        ),
        (
            pc.invert(pc.match_substring_regex(event_time, RFC3339)),
            "invalid_timestamp",
            "event_time",
            "event_time: expected RFC 3339 datetime with a timezone",
        ),
    ]
    for name, spec_field in spec.fields.items():
        checks += _field_checks(name, spec_field, fields[name])
    key = read["key"].chunk(0)
    checks.append(
        (
            pc.not_equal(key, fields[spec.key_field]),
            "key_mismatch",
            "key",
            f"key: differs from payload.{spec.key_field}",
        )
    )
    checks.append(
        (
            pc.not_equal(read["stream"].chunk(0), pa.scalar(stream)),
            "stream_mismatch",
            "stream",
            f"stream: differs from {stream!r}",
        )
    )
    problems = [pc.fill_null(condition, False) for condition, *_ in checks]
    if not pc.any(functools.reduce(pc.or_, problems)).as_py():
        return {"reason": reason, "field": field, "message": message}
    for problem, (_, why, where, text) in zip(problems, checks, strict=True):
        hit = pc.and_(problem, pc.invert(decided))
        reason = pc.if_else(hit, pa.scalar(why), reason)
        field = pc.if_else(hit, pa.scalar(where, pa.string()), field)
        message = pc.if_else(hit, pa.scalar(text), message)
        decided = pc.or_(decided, hit)
    return {"reason": reason, "field": field, "message": message}


def _field_checks(
    name: str, spec: FieldSpec, value: pa.Array
) -> list[tuple[pa.Array, str, str, str]]:
    """A payload field's checks, in ``transforms._field_problem``'s order."""
    path = f"payload.{name}"
    kind = TYPE_NAMES[spec.type]
    checks: list[tuple[pa.Array, str, str, str]] = []
    if spec.required:
        checks.append(
            (pc.is_null(value), "missing_field", path, f"{path}: required field is missing")
        )
    if spec.type == "timestamp":
        checks.append(
            (
                pc.invert(pc.match_substring_regex(value, RFC3339)),
                "invalid_timestamp",
                path,
                f"{path}: expected RFC 3339 datetime with a timezone",
            )
        )
    if spec.min is not None:
        text = f"{path}: expected {kind} >= {bound_text(spec.min, kind)}"
        checks.append((pc.less(value, pa.scalar(float(spec.min))), "out_of_range", path, text))
    if spec.max is not None:
        text = f"{path}: expected {kind} <= {bound_text(spec.max, kind)}"
        above = pc.greater(value, pa.scalar(float(spec.max)))
        if spec.type == "float":  # Spark orders NaN above every number
            above = pc.or_(above, pc.is_nan(value))
        checks.append((above, "out_of_range", path, text))
    if spec.choices:
        allowed = pc.is_in(value, value_set=pa.array(spec.choices, pa.string()))
        other = pc.and_(pc.is_valid(value), pc.invert(allowed))
        checks.append((other, "not_allowed", path, f"{path}: invalid enum value"))
    return checks


def _event_ids(ids: pa.Array, values: pa.Array) -> pa.Array:
    """The envelope's ids; a record without one is named by its value's SHA-256, as Spark's."""
    if not ids.null_count:
        return ids
    missing = pc.is_null(ids)
    digests = [hashlib.sha256(v).hexdigest() for v in values.filter(missing).to_pylist()]
    return pc.replace_with_mask(ids, missing, pa.array(digests, pa.string()))


def judge_late(parsed: pa.Table, watermark: pa.Scalar | None, text: str) -> pa.Table:
    """``parsed`` with valid records older than ``watermark`` judged ``late`` (``text``)."""
    if watermark is None:
        return parsed
    late = pc.fill_null(
        pc.and_(pc.is_null(parsed["reason"]), pc.less(parsed["event_time"], watermark)), False
    )
    if not pc.any(late).as_py():
        return parsed
    judged = {
        "reason": pc.if_else(late, pa.scalar("late"), parsed["reason"]),
        "field": pc.if_else(late, pa.scalar("event_time"), parsed["field"]),
        "message": pc.if_else(late, pa.scalar(text), parsed["message"]),
    }
    for name, column in judged.items():
        parsed = parsed.set_column(parsed.schema.get_field_index(name), name, column)
    return parsed

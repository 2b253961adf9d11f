"""Parse and judge a micro-batch's Kafka records in the driver, with Arrow.

The streaming job collects a small batch's raw records (as Spark's
pass-through reads them) and parses them here: pyarrow's multithreaded JSON
reader against the stream's declared schema, then the same checks as
:func:`~pulsecast.stream.transforms.parse_events`, in bulk with Arrow compute.
The result has the columns, types and verdicts (reason, field, message) of
Spark's parse collected; the unit tests hold the two to each other on
ordinary and pathological records.

The reader is stricter than Spark's JSON parser in some ways and looser in
none that this module lets through. Records it cannot be trusted with go to
Spark's own :func:`~pulsecast.stream.transforms.parse_events`, so every
verdict is Spark's either way: those a check of their value rules out (not
one object on one line, number words only the reader takes, a very long
number or deep nesting; see :func:`_trusted`), and those in a span the
reader refuses (malformed JSON, a number given for a text field, an unusual
timestamp), which :func:`parse_records` halves until the spans are small.
No record is parsed by Python code of its own.
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

__all__ = [
    "MAX_REFUSED_SPANS",
    "MIN_SPAN",
    "RAW_COLUMNS",
    "SparkParse",
    "judge_late",
    "parse_records",
    "read_schema",
]


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
#: Each value starts and ends an object (see :func:`_trusted`).
_OBJECT_EDGES = (r"^[ \t]*\{", r"\}[ \t]*$")
#: A closing brace followed by what no object member or array holds: a second value.
_AFTER_OBJECT = r"\}[ \t]*[^ \t,}\]]"
#: Number words the reader takes and Spark's parser rejects, as a value (not in a text).
_ODD_NUMBERS = r"[:,\[][ \t]*(-?Inf($|[^i])|-NaN)"
_LF, _CR = ord("\n"), ord("\r")
#: A time zone offset beyond Java's range, +-18:00.
_BEYOND_18_HOURS = r"[+-](19|2[0-9]):?[0-9]{2}$|[+-]18:?(0[1-9]|[1-5][0-9])$"
#: Jackson's limits in Spark's JSON parser (nesting depth, digits of a number): a value
#: shorter than this cannot reach them; longer ones are checked (see ``_within_limits``).
_JACKSON_LIMIT = 1000
#: A refused span is halved down to this many records, then parsed by Spark.
MIN_SPAN = 2048
#: More refused spans than this in one round of halving: they all go to Spark.
MAX_REFUSED_SPANS = 8

#: Parses a span of raw records with Spark: the columns of the parse, as Arrow.
SparkParse = Callable[[pa.Table], pa.Table]


def read_schema(spec: StreamSpec) -> pa.Schema:
    """The JSON reader's schema: the envelope's strings and the typed payload."""
    payload = pa.struct([(name, _ARROW_TYPES[f.type]) for name, f in spec.fields.items()])
    envelope = [(name, pa.string()) for name in ("event_id", "stream", "key", "event_time")]
    return pa.schema([*envelope, ("ingest_time", pa.string()), ("payload", payload)])


def parse_records(
    raw: pa.Table,
    *,
    stream: str,
    spec: StreamSpec,
    spark_parse: SparkParse,
    schema: pa.Schema,
    min_span: int = MIN_SPAN,
) -> tuple[pa.Table, np.ndarray]:
    """Every record of ``raw`` parsed and judged, as ``parse_events`` collected would be.

    Records that a check of their own value rules out (see :func:`_trusted`)
    go to Spark. The others are read by Arrow; a span the reader refuses
    is halved, down to ``min_span`` records, or until more than
    :data:`MAX_REFUSED_SPANS` spans of one round are refused (bad records
    everywhere: halving on would read the batch again and again); then the
    refused spans go to Spark. Spark parses what it is given in one call.

    Args:
        raw: Kafka records (:data:`RAW_COLUMNS`, and ``headers`` when read).
        stream: The stream's name.
        spec: Its declared schema.
        spark_parse: Spark's parse of records of ``raw`` (``parse_events``
            over them, collected, in their order).
        schema: The columns the result has (Spark's parse's, as Arrow).
        min_span: A refused span of more records than this is halved.

    Returns:
        The parse, a row per record in ``raw``'s order, with ``schema``'s
        columns; and the positions (in ``raw``) of the records Spark parsed.
    """
    if raw.num_rows == 0:
        return schema.empty_table(), np.array([], np.int64)
    min_span = max(min_span, 1)  # a span of one is never halved
    raw = raw.combine_chunks()
    trusted = _trusted(raw["value"].chunk(0))
    positions = np.flatnonzero(trusted)
    readable = raw if len(positions) == raw.num_rows else raw.take(pa.array(positions))
    pieces: list[tuple[np.ndarray, pa.Table]] = []
    to_spark = [np.flatnonzero(~trusted)]
    pending = [(0, readable.num_rows)] if readable.num_rows else []
    while pending:
        refused = []
        for start, stop in pending:
            parsed = _arrow_parse(readable.slice(start, stop - start), stream, spec)
            if parsed is None:
                refused.append((start, stop))
            else:
                pieces.append((positions[start:stop], parsed))
        if len(refused) > MAX_REFUSED_SPANS:
            to_spark += [positions[start:stop] for start, stop in refused]
            break
        pending = []
        for start, stop in refused:
            if stop - start <= min_span:
                to_spark.append(positions[start:stop])
            else:
                middle = (start + stop) // 2
                pending += [(start, middle), (middle, stop)]
    for_spark = np.concatenate(to_spark)
    if len(for_spark):
        records = raw.take(pa.array(for_spark))
        parsed = spark_parse(records)
        same = parsed.num_rows == records.num_rows and all(
            pc.all(pc.equal(parsed[c], records[c])).as_py() for c in ("partition", "offset")
        )
        if not same:
            msg = "Spark's parse of the records Arrow refused changed their order"
            raise RuntimeError(msg)
        pieces.append((for_spark, parsed))
    order = np.concatenate([where for where, _ in pieces])
    table = pa.concat_tables([piece.select(schema.names).cast(schema) for _, piece in pieces])
    if not np.array_equal(order, np.arange(raw.num_rows)):
        table = table.take(pa.array(np.argsort(order, kind="stable")))
    return table.combine_chunks(), np.sort(for_spark)


def _trusted(values: pa.Array) -> np.ndarray:
    """Which values Arrow's reader may be given: a check of each value on its own.

    Ruled out: a null; a value that does not start and end an object (the
    reader crashes on a line of ``null``), or holds a line end (the reader
    would see two lines), or goes on after an object's end; the number
    words ``Inf``, ``-Inf`` and ``-NaN`` as a value, which the reader takes
    and Spark does not (``NaN``, ``Infinity`` and ``-Infinity`` both take); a value
    long enough to reach the limits of Spark's JSON parser (see
    :func:`_within_limits`). A match inside a JSON string only costs a
    refusal. Invalid UTF-8 is refused by span (:func:`_arrow_parse`).
    """
    text = pc.cast(values, pa.string(), safe=False)
    ok = pc.is_valid(values)
    for edge, plain in zip(_OBJECT_EDGES, (pc.starts_with, pc.ends_with), strict=True):
        # Most values start and end with the braces themselves: the pattern (which
        # allows blanks around them) is matched only when some value does not.
        at_edge = pc.fill_null(plain(text, "{" if plain is pc.starts_with else "}"), True)
        if not pc.all(at_edge).as_py():
            ok = pc.and_(ok, pc.match_substring_regex(text, edge))
    ok = pc.and_(ok, pc.invert(pc.match_substring_regex(text, _AFTER_OBJECT)))
    # The rarer checks run only when some value holds the bytes they look for.
    data = np.frombuffer(values.buffers()[2] or b"", np.uint8)
    holds = {char: bool((data == ord(char)).any()) for char in "\n\rIN"}
    if holds["\n"] or holds["\r"]:
        ok = pc.and_(ok, pc.invert(pc.match_substring_regex(text, "[\n\r]")))
    if holds["I"] or holds["N"]:
        ok = pc.and_(ok, pc.invert(pc.match_substring_regex(text, _ODD_NUMBERS)))
    ok = pc.and_(ok, _within_limits(text))
    return np.asarray(pc.fill_null(ok, False).to_numpy(zero_copy_only=False), bool)


def _arrow_parse(raw: pa.Table, stream: str, spec: StreamSpec) -> pa.Table | None:
    """The parse of ``raw`` with Arrow, or None when it is refused (see the module)."""
    values = raw["value"].combine_chunks()
    try:
        pc.cast(values, pa.string())  # raises on invalid UTF-8
        keys = pc.cast(raw["key"], pa.string())
        lines = pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values)
        joined = pc.binary_join(lines, b"\n")[0].as_buffer()
    except pa.ArrowInvalid:
        return None
    # Checked per value already (_trusted); again, as the reader's safety rests on it.
    ends = np.frombuffer(joined, np.uint8)
    if np.count_nonzero(ends == _LF) != len(values) - 1 or np.count_nonzero(ends == _CR):
        return None
    try:
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


def _within_limits(text: pa.Array) -> pa.Array:
    """Which values cannot reach Jackson's nesting or number-length limits.

    A value that can (longer than the limits) may still be fine: its
    brackets and number characters are counted, a bound on both.
    """
    long = pc.greater(pc.utf8_length(text), _JACKSON_LIMIT)
    if not pc.any(long).as_py():
        return pc.invert(long)
    brackets = pc.add(pc.count_substring(text, "{"), pc.count_substring(text, "["))
    numbers = pc.count_substring_regex(text, "[-+.eE0-9]")
    within = pc.and_(pc.less(brackets, _JACKSON_LIMIT), pc.less(numbers, _JACKSON_LIMIT))
    return pc.or_(pc.invert(long), within)


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
        # Arrow reads offsets up to 23:59, Java up to 18:00 (texts in UTC, ending in Z,
        # the usual case, have none to check).
        in_utc = pc.all(pc.fill_null(pc.ends_with(text, "Z"), True)).as_py()
        if not in_utc and pc.any(pc.match_substring_regex(text, _BEYOND_18_HOURS)).as_py():
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
    """Each record's ``reason``, ``field`` and ``message``: the first problem, or nulls.

    The checks of ``transforms.parse_events`` for a record read whole, but
    for the timestamps' pattern: a span whose times fail it goes to Spark
    (:func:`_instants`).
    """
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
    """A payload field's checks, in ``transforms._field_problem``'s order (see ``_verdicts``)."""
    path = f"payload.{name}"
    kind = TYPE_NAMES[spec.type]
    checks: list[tuple[pa.Array, str, str, str]] = []
    if spec.required:
        checks.append(
            (pc.is_null(value), "missing_field", path, f"{path}: required field is missing")
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

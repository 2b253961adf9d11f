"""Pure DataFrame transforms of the streaming job: parse, validate, shape, aggregate.

Every function takes and returns Spark DataFrames and touches no storage, so
each is unit-tested on small inline DataFrames. Validation runs as Spark
expressions over whole micro-batches (no Python per event): the typed
``from_json`` parse is the fast path, and only rows it marks as corrupt pay for
a second, all-strings parse that says which field was missing or of the wrong
type. Reasons and messages match the Python validator's codes
(:data:`pulsecast.events.envelope.REASONS`).

Differences from the Python validator, on purpose: undeclared payload fields
are ignored here (bronze keeps the raw record), and numbers given for string
fields are taken as their text.
"""

from __future__ import annotations

from functools import reduce
from typing import TYPE_CHECKING

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pulsecast.config import FieldSpec, StreamSpec, WindowSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = [
    "bronze_rows",
    "dead_letter_rows",
    "numeric_fields",
    "parse_events",
    "silver_rows",
    "window_aggregates",
]

_SPARK_TYPES: dict[str, T.DataType] = {
    "float": T.DoubleType(),
    "int": T.LongType(),
    "str": T.StringType(),
    "bool": T.BooleanType(),
    "timestamp": T.StringType(),  # parsed below, strictly RFC 3339
}
_TYPE_NAMES = {
    "float": "float",
    "int": "int",
    "str": "str",
    "bool": "bool",
    "timestamp": "datetime",
}
_RFC3339 = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|z|[+-]\d{2}:?\d{2})$"
_ENVELOPE_STRINGS = ("event_id", "stream", "key", "event_time", "ingest_time")


def numeric_fields(spec: StreamSpec) -> list[str]:
    """The payload fields that gold aggregates."""
    return [name for name, f in spec.fields.items() if f.type in ("float", "int")]


def _schema(spec: StreamSpec, *, typed: bool) -> T.StructType:
    payload = T.StructType(
        [
            T.StructField(name, _SPARK_TYPES[f.type] if typed else T.StringType())
            for name, f in spec.fields.items()
        ]
    )
    fields = [T.StructField(name, T.StringType()) for name in _ENVELOPE_STRINGS]
    fields.append(T.StructField("payload", payload if typed else T.StringType()))
    if typed:
        fields.append(T.StructField("_corrupt", T.StringType()))
    return T.StructType(fields)


def _fmt(value: float, kind: str) -> str:
    return str(int(value)) if kind == "int" else repr(float(value))


def _field_problem(name: str, spec: FieldSpec, typed: Column, raw: Column | None) -> Column:
    """``struct(reason, field, message)`` for one payload field, or null when it is fine."""
    path = f"payload.{name}"

    def problem(reason: str, text: str) -> Column:
        return F.struct(
            F.lit(reason).alias("reason"),
            F.lit(path).alias("field"),
            F.lit(f"{path}: {text}").alias("message"),
        )

    kind = _TYPE_NAMES[spec.type]
    checks: list[tuple[Column, Column]] = []
    if raw is not None:
        # Only corrupt rows get here: tell "absent" from "present but wrong type".
        if spec.required:
            checks.append((raw.isNull(), problem("missing_field", "required field is missing")))
        checks.append((raw.isNotNull() & typed.isNull(), problem("wrong_type", f"expected {kind}")))
    elif spec.required:
        checks.append((typed.isNull(), problem("missing_field", "required field is missing")))
    if spec.type == "timestamp":
        checks.append(
            (
                typed.isNotNull() & ~typed.rlike(_RFC3339),
                problem("invalid_timestamp", "expected RFC 3339 datetime with a timezone"),
            )
        )
    if spec.min is not None:
        text = f"expected {kind} >= {_fmt(spec.min, kind)}"
        checks.append((typed < F.lit(spec.min), problem("out_of_range", text)))
    if spec.max is not None:
        text = f"expected {kind} <= {_fmt(spec.max, kind)}"
        checks.append((typed > F.lit(spec.max), problem("out_of_range", text)))
    if spec.choices:
        checks.append(
            (
                typed.isNotNull() & ~typed.isin(*spec.choices),
                problem("not_allowed", "invalid enum value"),
            )
        )
    return _first(checks)


def _first(checks: list[tuple[Column, Column]]) -> Column:
    """The value of the first true condition, else null (a CASE WHEN)."""
    if not checks:
        return F.lit(None).cast("struct<reason:string,field:string,message:string>")
    expr = F.when(checks[0][0], checks[0][1])
    for condition, value in checks[1:]:
        expr = expr.when(condition, value)
    return expr


def parse_events(raw: DataFrame, stream: str, spec: StreamSpec) -> DataFrame:
    """Parse Kafka records of ``<stream>.events`` and judge each one.

    Args:
        raw: Kafka source rows (``key``, ``value``, ``topic``, ``partition``,
            ``offset``, ``timestamp``).
        stream: The stream's name.
        spec: Its declared schema.

    Returns:
        One row per record: the raw ``value`` and Kafka coordinates, the envelope
        (``event_id``, ``key``, ``event_time``, ``ingest_time``), the payload fields
        as typed columns, and ``reason``/``field``/``message`` (null when valid).
    """
    text = F.col("value").cast("string")
    parsed = raw.select(
        F.col("key").cast("string").alias("kafka_key"),
        F.col("value"),
        F.col("partition"),
        F.col("offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.from_json(
            text,
            _schema(spec, typed=True),
            {"columnNameOfCorruptRecord": "_corrupt", "mode": "PERMISSIVE"},
        ).alias("j"),
    )
    corrupt = F.col("j._corrupt").isNotNull()
    # Second parse, all strings: evaluated only for corrupt rows (CASE WHEN is lazy).
    loose = F.when(corrupt, F.from_json(text, _schema(spec, typed=False)))
    loose_payload = F.from_json(
        loose.getField("payload"),
        T.StructType([T.StructField(n, T.StringType()) for n in spec.fields]),
    )
    whole = F.get_json_object(text, "$")
    trimmed = F.ltrim(text)
    envelope_time = F.col("j.event_time")
    checks: list[tuple[Column, Column]] = [
        (
            corrupt & whole.isNull() & (F.trim(text) != "null"),
            _problem("malformed_json", None, "malformed JSON"),
        ),
        (corrupt & ~trimmed.startswith("{"), _problem("not_an_object", None, "expected object")),
        (
            F.col("j.payload").isNull() & (~corrupt | loose.getField("payload").isNull()),
            _problem("missing_field", "payload", "payload: required field is missing"),
        ),
        (
            F.col("j.payload").isNull(),
            _problem("wrong_type", "payload", "payload: expected object"),
        ),
        (
            envelope_time.isNull(),
            _problem("missing_field", "event_time", "event_time: required field is missing"),
        ),
        (
            ~envelope_time.rlike(_RFC3339),
            _problem(
                "invalid_timestamp",
                "event_time",
                "event_time: expected RFC 3339 datetime with a timezone",
            ),
        ),
    ]
    per_field = [
        _field_problem(name, f, F.col(f"j.payload.{name}"), loose_payload.getField(name))
        for name, f in spec.fields.items()
    ]
    field_check = F.coalesce(
        *[
            F.when(corrupt, p_loose).otherwise(p_strict)
            for p_loose, p_strict in zip(
                per_field,
                [
                    _field_problem(n, f, F.col(f"j.payload.{n}"), None)
                    for n, f in spec.fields.items()
                ],
                strict=True,
            )
        ]
    )
    key_value = F.col(f"j.payload.{spec.key_field}")
    checks.append((field_check.isNotNull(), field_check))
    checks.append(
        (
            F.col("j.key").isNotNull() & (F.col("j.key") != key_value),
            _problem("key_mismatch", "key", f"key: differs from payload.{spec.key_field}"),
        )
    )
    checks.append(
        (
            F.col("j.stream").isNotNull() & (F.col("j.stream") != F.lit(stream)),
            _problem("stream_mismatch", "stream", f"stream: differs from {stream!r}"),
        )
    )
    verdict = _first(checks)
    return parsed.select(
        "kafka_key",
        "value",
        "partition",
        "offset",
        "kafka_timestamp",
        F.coalesce(F.col("j.event_id"), F.sha2(F.col("value"), 256)).alias("event_id"),
        key_value.alias("key"),
        F.try_to_timestamp(envelope_time).alias("event_time"),
        F.coalesce(F.try_to_timestamp(F.col("j.ingest_time")), F.col("kafka_timestamp")).alias(
            "ingest_time"
        ),
        *[
            (
                F.try_to_timestamp(F.col(f"j.payload.{n}"))
                if f.type == "timestamp"
                else F.col(f"j.payload.{n}")
            ).alias(n)
            for n, f in spec.fields.items()
        ],
        verdict.getField("reason").alias("reason"),
        verdict.getField("field").alias("field"),
        verdict.getField("message").alias("message"),
    )


def _problem(reason: str, field: str | None, message: str) -> Column:
    return F.struct(
        F.lit(reason).alias("reason"),
        F.lit(field).cast("string").alias("field"),
        F.lit(message).alias("message"),
    )


def bronze_rows(raw: DataFrame) -> DataFrame:
    """Every Kafka record as received, with its coordinates, partitioned by ingest date."""
    return raw.select(
        F.col("key").cast("string").alias("key"),
        F.col("value"),
        F.col("topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.to_date(F.col("timestamp")).alias("ingest_date"),
    )


def silver_rows(valid: DataFrame, spec: StreamSpec, batch_id: int) -> DataFrame:
    """Validated, typed events, one per event id, with their partition columns."""
    return valid.dropDuplicates(["event_id"]).select(
        "event_id",
        "key",
        "event_time",
        "ingest_time",
        *spec.fields,
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.lit(batch_id).cast("long").alias("batch_id"),
        F.to_date("event_time").alias("event_date"),
        F.hour("event_time").alias("event_hour"),
    )


def dead_letter_rows(invalid: DataFrame, stream: str, *, source: str = "stream") -> DataFrame:
    """Kafka records for ``<stream>.dlq``: the value as received, the reason in headers."""

    def header(name: str, value: Column) -> Column:
        return F.struct(F.lit(name).alias("key"), value.cast("binary").alias("value"))

    return invalid.select(
        F.col("kafka_key").alias("key"),
        F.col("value"),
        F.array(
            header("pulsecast.reason", F.col("reason")),
            header("pulsecast.error", F.col("message")),
            header("pulsecast.stream", F.lit(stream)),
            header("pulsecast.source", F.lit(source)),
            header("pulsecast.field", F.coalesce(F.col("field"), F.lit(""))),
        ).alias("headers"),
    )


def window_aggregates(events: DataFrame, spec: StreamSpec, window: WindowSpec) -> DataFrame:
    """Event-time aggregates per key and window, one row per numeric field (long format).

    Args:
        events: Silver rows (``key``, ``event_time`` and the payload fields).
        spec: The stream's schema (which fields are numeric).
        window: Window length and slide.

    Returns:
        Rows of ``key``, ``window_start``, ``window_end``, ``metric``, then count, mean,
        min, max, stddev and
        approximate p50/p95 of each numeric field.
    """
    slide = f"{window.slide_s or window.size_s} seconds"
    win = F.window("event_time", f"{window.size_s} seconds", slide)
    fields = numeric_fields(spec)
    aggs = []
    for name in fields:
        value = F.col(name).cast("double")
        aggs += [
            F.count(value).alias(f"{name}__count"),
            F.avg(value).alias(f"{name}__mean"),
            F.min(value).alias(f"{name}__min"),
            F.max(value).alias(f"{name}__max"),
            F.stddev_samp(value).alias(f"{name}__stddev"),
            F.percentile_approx(value, [0.5, 0.95], 10000).alias(f"{name}__pct"),
        ]
    wide = events.groupBy("key", win.alias("w")).agg(*aggs)
    per_metric = [
        F.struct(
            F.lit(name).alias("metric"),
            F.col(f"{name}__count").alias("count"),
            F.col(f"{name}__mean").alias("mean"),
            F.col(f"{name}__min").alias("min"),
            F.col(f"{name}__max").alias("max"),
            F.col(f"{name}__stddev").alias("stddev"),
            F.col(f"{name}__pct")[0].alias("p50"),
            F.col(f"{name}__pct")[1].alias("p95"),
        )
        for name in fields
    ]
    return (
        wide.select(
            "key",
            F.col("w.start").alias("window_start"),
            F.col("w.end").alias("window_end"),
            F.explode(F.array(*per_metric)).alias("m"),
        )
        .select("key", "window_start", "window_end", "m.*")
        .where(F.col("count") > 0)
    )


def union_all(frames: list[DataFrame]) -> DataFrame:
    """Union DataFrames by column name."""
    return reduce(lambda a, b: a.unionByName(b), frames)

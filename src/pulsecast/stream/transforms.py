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

from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from functools import reduce
from math import gcd
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import BaseModel
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from pulsecast.config import FieldSpec, StreamSpec, WindowSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_T = TypeVar("_T")

__all__ = [
    "DEAD_LETTER_INPUT",
    "RFC3339",
    "TYPE_NAMES",
    "bound_text",
    "bronze_rows",
    "bronze_rows_of_parsed",
    "dead_letter_rows",
    "fold_panes",
    "numeric_fields",
    "pane_partials",
    "pane_seconds",
    "parse_events",
    "silver_rows",
    "window_starts",
    "windows_from_panes",
]

_SPARK_TYPES: dict[str, T.DataType] = {
    "float": T.DoubleType(),
    "int": T.LongType(),
    "str": T.StringType(),
    "bool": T.BooleanType(),
    "timestamp": T.StringType(),  # parsed below, strictly RFC 3339
}
#: Type names as the validator's messages write them.
TYPE_NAMES = {
    "float": "float",
    "int": "int",
    "str": "str",
    "bool": "bool",
    "timestamp": "datetime",
}
#: Timestamps must match this (a Java regex in Spark; RE2 in Arrow matches where Java
#: does, except before a final line end, where Java's ``$`` matches too).
RFC3339 = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|z|[+-]\d{2}:?\d{2})$"
_ENVELOPE_STRINGS = ("event_id", "stream", "key", "event_time", "ingest_time")
#: Columns built by :func:`_once`, by builder, JVM and arguments.
_BUILT: dict[tuple[Hashable, ...], Any] = {}
_MAX_BUILT = 256


def _once(build: Callable[..., _T], *args: Any) -> _T:
    """``build(*args)``, built once per JVM and reused.

    Building a Column costs a py4j call per function and literal: the parse
    alone is thousands of calls, about a third of a second, which every
    micro-batch would pay again for the same expressions. Columns are
    unresolved expressions, valid on any DataFrame of the same JVM, so the
    transforms build theirs once and bind them to each batch's DataFrame.
    Arguments that differ per batch (its id, a watermark) are not built here.
    Settings models in ``args`` are told apart by their JSON.
    """
    from pyspark import SparkContext

    key = (
        build.__qualname__,
        id(SparkContext._gateway),
        *(a.model_dump_json() if isinstance(a, BaseModel) else a for a in args),
    )
    built = _BUILT.get(key)
    if built is None:
        if len(_BUILT) >= _MAX_BUILT:
            _BUILT.clear()
        built = _BUILT[key] = build(*args)
    return cast("_T", built)


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


def bound_text(value: float, kind: str) -> str:
    """A bound as the validator's messages write it, for a field of ``kind`` (``TYPE_NAMES``)."""
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

    kind = TYPE_NAMES[spec.type]
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
                typed.isNotNull() & _no_instant(typed),
                problem("invalid_timestamp", "expected RFC 3339 datetime with a timezone"),
            )
        )
    if spec.min is not None:
        text = f"expected {kind} >= {bound_text(spec.min, kind)}"
        checks.append((typed < F.lit(spec.min), problem("out_of_range", text)))
    if spec.max is not None:
        text = f"expected {kind} <= {bound_text(spec.max, kind)}"
        checks.append((typed > F.lit(spec.max), problem("out_of_range", text)))
    if spec.choices:
        checks.append(
            (
                typed.isNotNull() & ~typed.isin(*spec.choices),
                problem("not_allowed", "invalid enum value"),
            )
        )
    return _first(checks)


def _no_instant(text: Column) -> Column:
    """Whether a non-null text is no RFC 3339 instant.

    That is, off the pattern, or no real date and time (February 30, hour 24),
    which the pattern alone lets through.
    """
    return ~text.rlike(RFC3339) | F.try_to_timestamp(text).isNull()


def _first(checks: list[tuple[Column, Column]]) -> Column:
    """The value of the first true condition, else null (a CASE WHEN)."""
    if not checks:
        return F.lit(None).cast("struct<reason:string,field:string,message:string>")
    expr = F.when(checks[0][0], checks[0][1])
    for condition, value in checks[1:]:
        expr = expr.when(condition, value)
    return expr


def parse_events(
    raw: DataFrame, stream: str, spec: StreamSpec, *, carry: tuple[str, ...] = ()
) -> DataFrame:
    """Parse Kafka records of ``<stream>.events`` and judge each one.

    Args:
        raw: Kafka source rows (``key``, ``value``, ``topic``, ``partition``,
            ``offset``, ``timestamp``).
        stream: The stream's name.
        spec: Its declared schema.
        carry: Other Kafka columns to keep, each as ``kafka_<name>`` (``topic``
            for :func:`bronze_rows_of_parsed`, ``headers``).

    Returns:
        One row per record: the record as received (``raw_value``) and Kafka
        coordinates, the envelope (``event_id``, ``key``, ``event_time``,
        ``ingest_time``), the payload fields as typed columns, and
        ``reason``/``field``/``message`` (null when valid).
    """
    parsed = raw
    for columns in _once(_parse_columns, stream, spec, carry):
        parsed = parsed.select(*columns)
    return parsed


def _parse_columns(stream: str, spec: StreamSpec, carry: tuple[str, ...]) -> list[list[Column]]:
    """:func:`parse_events`' selects, in order.

    The records as read and parsed; the loose parse of corrupt ones; each
    payload field's problem; the verdict; the result. Each intermediate
    result is a column of its own, referenced by name from the next select,
    so no expression is repeated in the plan: a plan several times smaller
    for Spark to analyse on every step that builds on the parse.
    """
    carried = [f"kafka_{name}" for name in carry]
    read = [
        F.col("key").cast("string").alias("kafka_key"),
        F.col("value").alias("raw_value"),  # a payload field may be called value
        F.col("partition"),
        F.col("offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        *[F.col(name).alias(alias) for name, alias in zip(carry, carried, strict=True)],
        F.from_json(
            F.col("value").cast("string"),
            _schema(spec, typed=True),
            {"columnNameOfCorruptRecord": "_corrupt", "mode": "PERMISSIVE"},
        ).alias("j"),
    ]
    text = F.col("raw_value").cast("string")
    corrupt = F.col("j._corrupt").isNotNull()
    # Second parse, all strings: evaluated only for corrupt rows (CASE WHEN is lazy).
    loose = F.when(corrupt, F.from_json(text, _schema(spec, typed=False))).getField("payload")
    loose_parse = [
        F.col("*"),
        loose.isNull().alias("_loose_no_payload"),
        F.from_json(
            loose, T.StructType([T.StructField(n, T.StringType()) for n in spec.fields])
        ).alias("_loose_payload"),
    ]
    loose_payload = F.col("_loose_payload")
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
            F.col("j.payload").isNull() & (~corrupt | F.col("_loose_no_payload")),
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
            _no_instant(envelope_time),
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
    field_problem = F.col("_field_problem")
    checks.append((field_problem.isNotNull(), field_problem))
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
    verdict = F.col("_verdict")
    result = [
        F.col("kafka_key"),
        F.col("raw_value"),
        F.col("partition"),
        F.col("offset"),
        F.col("kafka_timestamp"),
        *[F.col(name) for name in carried],
        F.coalesce(F.col("j.event_id"), F.sha2(F.col("raw_value"), 256)).alias("event_id"),
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
    ]
    return [
        read,
        loose_parse,
        [F.col("*"), field_check.alias("_field_problem")],
        [F.col("*"), _first(checks).alias("_verdict")],
        result,
    ]


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


def bronze_rows_of_parsed(parsed: DataFrame) -> DataFrame:
    """:func:`bronze_rows` of the records :func:`parse_events` parsed (carrying ``topic``).

    The same rows as ``bronze_rows(raw)``, from a parse the job keeps in
    memory: writing bronze then reads no Kafka record twice.
    """
    return parsed.select(
        F.col("kafka_key").alias("key"),
        F.col("raw_value").alias("value"),
        F.col("kafka_topic").alias("topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("kafka_timestamp"),
        F.to_date(F.col("kafka_timestamp")).alias("ingest_date"),
    )


def silver_rows(
    valid: DataFrame, spec: StreamSpec, batch_id: int, *, unique: bool = False
) -> DataFrame:
    """Validated, typed events, one per event id, with their partition columns.

    Of the copies of an event id, the one with the lowest Kafka partition,
    then offset, is kept, whichever task reads it: a replayed batch keeps the
    same copy, and so does the job's Arrow path
    (:func:`~pulsecast.stream.batch_stats.first_occurrences`).

    Args:
        valid: Valid rows of :func:`parse_events`.
        spec: The stream's schema.
        batch_id: The micro-batch they come from.
        unique: The caller knows no event id repeats in ``valid``: skip the
            deduplication (a shuffle).
    """
    events = valid
    if not unique:
        copies = Window.partitionBy("event_id").orderBy("partition", "offset")
        events = (
            valid.withColumn("_copy", F.row_number().over(copies))
            .where(F.col("_copy") == 1)
            .drop("_copy")
        )
    before, after = _once(_silver_columns, spec)
    return events.select(*before, F.lit(batch_id).cast("long").alias("batch_id"), *after)


def _silver_columns(spec: StreamSpec) -> tuple[list[Column], list[Column]]:
    """:func:`silver_rows`' columns before and after ``batch_id``."""
    before = [
        *[F.col(name) for name in ("event_id", "key", "event_time", "ingest_time", *spec.fields)],
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
    ]
    after = [
        F.to_date("event_time").alias("event_date"),
        F.hour("event_time").alias("event_hour"),
    ]
    return before, after


#: The columns of the parse that :func:`dead_letter_rows` reads.
DEAD_LETTER_INPUT = ("kafka_key", "raw_value", "reason", "field", "message")


def dead_letter_rows(invalid: DataFrame, stream: str, *, source: str = "stream") -> DataFrame:
    """Kafka records for ``<stream>.dlq``: the value as received, the reason in headers.

    Args:
        invalid: Rows with the columns :data:`DEAD_LETTER_INPUT`.
        stream: The stream.
        source: Written into the ``pulsecast.source`` header.
    """
    return invalid.select(*_once(_dead_letter_columns, stream, source))


def _dead_letter_columns(stream: str, source: str) -> list[Column]:
    def header(name: str, value: Column) -> Column:
        return F.struct(F.lit(name).alias("key"), value.cast("binary").alias("value"))

    return [
        F.col("kafka_key").alias("key"),
        F.col("raw_value").alias("value"),
        F.array(
            header("pulsecast.reason", F.col("reason")),
            header("pulsecast.error", F.col("message")),
            header("pulsecast.stream", F.lit(stream)),
            header("pulsecast.source", F.lit(source)),
            header("pulsecast.field", F.coalesce(F.col("field"), F.lit(""))),
        ).alias("headers"),
    ]


def pane_seconds(windows: list[WindowSpec]) -> int:
    """The pane length: the largest span that divides every window's size and slide."""
    return reduce(gcd, [w.size_s for w in windows] + [w.slide_s or w.size_s for w in windows])


def pane_partials(events: DataFrame, spec: StreamSpec, pane_s: int, batch_id: int) -> DataFrame:
    """Mergeable partial aggregates of ``events`` per key, pane and numeric field.

    A pane is an epoch-aligned ``pane_s`` span of event time. Each row holds what
    any window made of panes needs: count, mean and sum of squared deviations
    (``m2``, merged with Chan's formula), min, max and a KLL quantile sketch.
    Partials of later batches for the same pane merge with these; nothing is
    ever recomputed from silver.

    Args:
        events: Silver rows (``key``, ``event_time`` and the payload fields).
        spec: The stream's schema (which fields are numeric).
        pane_s: Pane length, seconds (see :func:`pane_seconds`).
        batch_id: The micro-batch the partials come from.

    Returns:
        Rows of ``key``, ``metric``, ``pane_start``, ``n``, ``mean``, ``m2``,
        ``min``, ``max``, ``sketch``, ``batch_id``, ``pane_date``.
    """
    group, aggs, per_metric, kept, after = _once(_pane_columns, spec, pane_s)
    return (
        events.groupBy(*group)
        .agg(*aggs)
        .select(*per_metric)
        .where(kept)
        .select(*after[:-1], F.lit(batch_id).cast("long").alias("batch_id"), after[-1])
    )


def _pane_columns(
    spec: StreamSpec, pane_s: int
) -> tuple[list[Column], list[Column], list[Column], Column, list[Column]]:
    """:func:`pane_partials`' grouping, aggregates, one row per metric, filter and columns."""
    fields = numeric_fields(spec)
    aggs = []
    for name in fields:
        value = F.col(name).cast("double")
        aggs += [
            F.count(value).alias(f"{name}__n"),
            F.avg(value).alias(f"{name}__mean"),
            (F.var_pop(value) * F.count(value)).alias(f"{name}__m2"),
            F.min(value).alias(f"{name}__min"),
            F.max(value).alias(f"{name}__max"),
            F.kll_sketch_agg_double(value).alias(f"{name}__sketch"),
        ]
    pane = F.window("event_time", f"{pane_s} seconds").start
    per_metric = [
        F.struct(
            F.lit(name).alias("metric"),
            *[
                F.col(f"{name}__{part}").alias(part)
                for part in ("n", "mean", "m2", "min", "max", "sketch")
            ],
        )
        for name in fields
    ]
    columns = [
        F.col(name)
        for name in ("key", "m.metric", "pane_start", "m.n", "m.mean", "m.m2", "m.min", "m.max")
    ]
    return (
        [F.col("key"), pane.alias("pane_start")],
        aggs,
        [F.col("key"), F.col("pane_start"), F.explode(F.array(*per_metric)).alias("m")],
        F.col("m.n") > 0,
        [*columns, F.col("m.sketch"), F.to_date("pane_start").alias("pane_date")],
    )


def windows_from_panes(
    panes: DataFrame, window: WindowSpec, *, one_partition: bool = False
) -> DataFrame:
    """Merge pane partials into event-time window aggregates, one row per metric.

    Every pane lies wholly inside the windows that contain its start, because
    windows and panes are epoch-aligned and the pane length divides the
    window's size and slide.

    Args:
        panes: Rows of :func:`pane_partials` (any number per pane).
        window: Window length and slide.
        one_partition: Merge in one partition, without a shuffle: for the
            few partials of a micro-batch. (Placing a pane in sliding
            windows copies it once per window, and Spark would otherwise
            shuffle the copies even when ``panes`` is one partition.)

    Returns:
        Rows of ``key``, ``window_start``, ``window_end``, ``metric``, then count,
        mean, min, max, sample stddev and approximate p50/p95.
    """
    placed, merged = _once(_window_columns, window)
    in_windows = panes.select(*placed)
    if one_partition:
        in_windows = in_windows.coalesce(1)
    return _merge_partials(in_windows, "w").select(*merged)


def _window_columns(window: WindowSpec) -> tuple[list[Column], list[Column]]:
    """:func:`windows_from_panes`' columns: the panes placed in windows, and the result."""
    slide = f"{window.slide_s or window.size_s} seconds"
    win = F.window("pane_start", f"{window.size_s} seconds", slide)
    # A sketch of NaN readings only is empty, and has no quantiles (asking raises).
    quantiles = F.when(
        F.kll_sketch_get_n_double("sketch") > 0,
        F.kll_sketch_get_quantile_double("sketch", F.array(F.lit(0.5), F.lit(0.95))),
    )
    merged = [
        F.col("key"),
        F.col("w.start").alias("window_start"),
        F.col("w.end").alias("window_end"),
        F.col("metric"),
        F.col("n").alias("count"),
        F.col("mean"),
        F.col("min"),
        F.col("max"),
        F.when(
            F.col("n") > 1, F.sqrt(F.greatest(F.col("m2"), F.lit(0.0)) / (F.col("n") - 1))
        ).alias("stddev"),
        quantiles[0].alias("p50"),
        quantiles[1].alias("p95"),
    ]
    return [F.col("*"), win.alias("w")], merged


def fold_panes(panes: DataFrame) -> DataFrame:
    """Merge every pane's partials into one: a row per key, metric and pane.

    What :func:`windows_from_panes` gives from the result is what it gives
    from ``panes`` (the merge is associative), up to the approximation of the
    quantile sketches, which a merge may compact.

    Args:
        panes: Rows of :func:`pane_partials` (any number per pane).

    Returns:
        Rows of :func:`pane_partials`' columns; ``batch_id`` is the newest
        batch each pane's partials came from.
    """
    return _merge_partials(panes, "pane_start", newest_batch=True).select(*_once(_fold_columns))


def _fold_columns() -> list[Column]:
    names = ("key", "metric", "pane_start", "n", "mean", "m2", "min", "max", "sketch", "batch_id")
    return [*[F.col(n) for n in names], F.to_date("pane_start").alias("pane_date")]


def _merge_partials(partials: DataFrame, span: str, *, newest_batch: bool = False) -> DataFrame:
    """Partials merged per ``key``, ``metric`` and ``span``: n, mean, m2, min, max, sketch.

    With ``newest_batch``, ``batch_id`` too: the newest of the merged partials'.
    """
    group, weighted, aggs = _once(_merge_columns, span, newest_batch)
    return partials.select(F.col("*"), weighted).groupBy(*group).agg(*aggs)


def _merge_columns(span: str, newest_batch: bool) -> tuple[list[Column], Column, list[Column]]:
    group = [F.col("key"), F.col("metric"), F.col(span)]
    over = Window.partitionBy(*group)
    # Chan et al.: the merged m2 is each part's m2 plus its mean's deviation.
    weighted = (F.sum(F.col("n") * F.col("mean")).over(over) / F.sum("n").over(over)).alias(
        "w_mean"
    )
    aggs = [
        F.sum("n").alias("n"),
        F.first("w_mean").alias("mean"),
        F.sum(F.col("m2") + F.col("n") * (F.col("mean") - F.col("w_mean")) ** 2).alias("m2"),
        F.min("min").alias("min"),
        F.max("max").alias("max"),
        F.kll_merge_agg_double("sketch").alias("sketch"),
    ]
    if newest_batch:
        aggs.append(F.max("batch_id").alias("batch_id"))
    return group, weighted, aggs


def window_starts(pane_starts: list[datetime], window: WindowSpec) -> list[datetime]:
    """Starts of the windows holding any of ``pane_starts``, sorted.

    Epoch-aligned like Spark's ``window`` (with no start offset); the pane
    starts are timezone-aware.
    """
    size = timedelta(seconds=window.size_s)
    slide = timedelta(seconds=window.slide_s or window.size_s)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    starts: set[datetime] = set()
    for pane in pane_starts:
        start = pane - (pane - epoch) % slide
        while start > pane - size:
            starts.add(start)
            start -= slide
    return sorted(starts)

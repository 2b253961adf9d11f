"""Gold's pane partials and window merges in Arrow equal Spark's, and their sketches mix."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from datasketches import kll_doubles_sketch
from pyspark.sql import DataFrame, SparkSession

from pulsecast.config import FieldSpec, StreamSpec, WindowSpec
from pulsecast.stream.arrow_gold import fold_panes_of, pane_partials_of, windows_of_panes
from pulsecast.stream.transforms import (
    fold_panes,
    numeric_fields,
    pane_partials,
    parse_events,
    silver_rows,
    window_starts,
    windows_from_panes,
)

from .test_transforms import event, kafka_rows

TUMBLING = WindowSpec(name="1m", size_s=60)
SLIDING = WindowSpec(name="5m", size_s=300, slide_s=60)
PANE_ID = ["key", "metric", "pane_start"]
WINDOW_ID = ["key", "metric", "window_start"]


def silver(spark: SparkSession, telemetry, batch: int, count: int) -> DataFrame:  # type: ignore[no-untyped-def]
    """``count`` events of three machines over four minutes, some without a power reading."""
    values = []
    for i in range(count):
        n = batch * count + i
        minute, second = divmod(n * 7 % 240, 60)
        changes: dict[str, object] = {
            "event_id": f"b{batch}-{i}",
            "event_time": f"2026-05-01T12:0{minute}:{second:02d}Z",
            "p_entity_id": f"m-{n % 3}",
            "p_temperature_c": 40.0 + (n * 7919 % 97) / 3,
            "p_cpu_util": float(n % 2),  # two values: the spread is exact
            "p_power_kw": None if n % 5 == 0 else 100.0 + n % 13,
        }
        values.append(event(**changes))
    parsed = parse_events(kafka_rows(spark, values), "telemetry", telemetry)
    return silver_rows(parsed.where("reason IS NULL"), telemetry, batch)


def by(table: pa.Table, columns: list[str]) -> dict[tuple[object, ...], dict[str, object]]:
    return {tuple(r[c] for c in columns): r for r in table.to_pylist()}


def summary(sketch: bytes) -> tuple[object, ...]:
    """What a KLL sketch answers (its bytes may order the same values differently)."""
    kll = kll_doubles_sketch.deserialize(bytes(sketch))
    if kll.is_empty():
        return (0,)
    return kll.n, kll.get_quantiles([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0])


def same_numbers(got: dict[str, object], want: dict[str, object], exact: tuple[str, ...]) -> None:
    for name, value in want.items():
        if name == "sketch":
            assert summary(got[name]) == summary(value)  # type: ignore[arg-type]
        elif isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[name]), name  # type: ignore[arg-type]
        elif name in exact or not isinstance(value, float):
            assert got[name] == value, name
        else:
            assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-9), name


def partials(spark: SparkSession, telemetry, batches: int = 2, count: int = 90):  # type: ignore[no-untyped-def]
    """Two batches' pane partials, from Arrow and from Spark (Spark's schema)."""
    fields = numeric_fields(telemetry)
    sparks, arrows = [], []
    for batch in range(batches):
        rows = silver(spark, telemetry, batch, count)
        frame = pane_partials(rows, telemetry, 60, batch)
        sparks.append(frame)
        arrows.append(pane_partials_of(rows.toArrow(), fields, 60, batch, frame.toArrow().schema))
    by_spark = sparks[0]
    for frame in sparks[1:]:
        by_spark = by_spark.unionByName(frame)
    return pa.concat_tables(arrows), by_spark


def test_pane_partials_of_arrow_are_sparks(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    got, frame = partials(spark, telemetry, batches=1)
    want = frame.toArrow()
    assert got.schema == want.schema
    assert got.num_rows == want.num_rows == 3 * 4 * 4  # three machines, four panes, four fields
    mine, theirs = by(got, PANE_ID), by(want, PANE_ID)
    assert mine.keys() == theirs.keys()
    for pane, row in theirs.items():
        same_numbers(mine[pane], row, exact=("n", "min", "max", "pane_date", "batch_id"))
    # Power was missing in a fifth of the events: its partials count the rest.
    assert sum(r["n"] for r in got.to_pylist() if r["metric"] == "power_kw") == 90 - 18


def test_windows_of_panes_are_sparks_tumbling_and_sliding(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    got, frame = partials(spark, telemetry)
    for window in (TUMBLING, SLIDING):
        want = windows_from_panes(frame, window).toArrow()
        merged = windows_of_panes(got, window)
        assert merged.column_names == want.column_names
        mine, theirs = by(merged, WINDOW_ID), by(want, WINDOW_ID)
        assert mine.keys() == theirs.keys()
        assert len(theirs) == 3 * 4 * (4 if window is TUMBLING else 8)
        for key, row in theirs.items():
            # Under 200 values a sketch keeps them all: its quantiles are exact, as Spark's.
            same_numbers(mine[key], row, exact=("count", "min", "max", "p50", "p95"))


def test_windows_of_panes_keep_only_the_starts_asked_for(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    got, _ = partials(spark, telemetry, batches=1)
    starts = window_starts([datetime(2026, 5, 1, 12, 1, tzinfo=UTC)], SLIDING)
    some = by(windows_of_panes(got, SLIDING, starts), WINDOW_ID)
    every = by(windows_of_panes(got, SLIDING), WINDOW_ID)
    assert {k[2] for k in some} == set(starts)
    assert some == {k: r for k, r in every.items() if k[2] in starts}


def test_folded_partials_of_arrow_are_sparks(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    got, frame = partials(spark, telemetry, batches=3, count=60)
    schema = frame.toArrow().schema
    folded = fold_panes_of(got, schema)
    want = fold_panes(frame).toArrow()
    assert [(f.name, f.type) for f in folded.schema] == [(f.name, f.type) for f in want.schema]
    mine, theirs = by(folded, PANE_ID), by(want, PANE_ID)
    assert mine.keys() == theirs.keys()
    for pane, row in theirs.items():
        same_numbers(mine[pane], row, exact=("n", "min", "max", "batch_id", "pane_date"))
    assert {r["batch_id"] for r in folded.to_pylist()} == {2}


def test_partials_of_either_engine_merge_in_the_other(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    arrow, frame = partials(spark, telemetry)
    # Arrow's partials merged by Spark, and Spark's by Arrow: the same windows.
    by_spark = windows_from_panes(spark.createDataFrame(arrow, schema=frame.schema), SLIDING)
    by_arrow = windows_of_panes(frame.toArrow(), SLIDING)
    mine, theirs = by(by_arrow, WINDOW_ID), by(by_spark.toArrow(), WINDOW_ID)
    assert mine.keys() == theirs.keys()
    for key, row in theirs.items():
        same_numbers(mine[key], row, exact=("count", "min", "max", "p50", "p95"))


def test_quantiles_of_large_panes_stay_close_to_sparks(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    """Past a few hundred values a sketch compacts, at random: both stay near each other."""
    got, frame = partials(spark, telemetry, batches=1, count=3000)
    mine = by(windows_of_panes(got, SLIDING), WINDOW_ID)
    theirs = by(windows_from_panes(frame, SLIDING).toArrow(), WINDOW_ID)
    assert mine.keys() == theirs.keys()
    compacted = [
        k for k, r in theirs.items() if r["metric"] == "temperature_c" and r["count"] > 600
    ]
    assert compacted
    for key in compacted:
        spread = theirs[key]["max"] - theirs[key]["min"]
        for q in ("p50", "p95"):
            assert abs(mine[key][q] - theirs[key][q]) <= 0.05 * spread, (key, q)


def test_int_fields_and_nan_readings_aggregate_as_in_spark(spark: SparkSession) -> None:
    """Ints beyond 2**53 round as Spark's cast; a window of NaNs only has no quantiles, in both."""
    spec = StreamSpec(
        key_field="entity_id",
        fields={
            "entity_id": FieldSpec(type="str"),
            "count": FieldSpec(type="int"),
            "level": FieldSpec(type="float"),
        },
    )
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    rows = pa.table(
        {
            "key": ["m-1", "m-1", "m-2"],
            "event_time": pa.array([at, at, at], pa.timestamp("us", tz="UTC")),
            "count": pa.array([2**53 + 1, 3, 7], pa.int64()),
            "level": [float("nan"), float("nan"), 1.5],
        }
    )
    frame = pane_partials(spark.createDataFrame(rows), spec, 60, 0)
    want = frame.toArrow()
    got = pane_partials_of(rows, numeric_fields(spec), 60, 0, want.schema)
    mine, theirs = by(got, PANE_ID), by(want, PANE_ID)
    assert mine.keys() == theirs.keys()
    for pane, row in theirs.items():
        same_numbers(mine[pane], row, exact=("n", "min", "max", "pane_date", "batch_id"))
    assert mine[("m-1", "count", at)]["max"] == float(2**53)
    windows = by(windows_of_panes(got, TUMBLING), WINDOW_ID)
    by_spark = by(windows_from_panes(frame, TUMBLING).toArrow(), WINDOW_ID)
    assert windows.keys() == by_spark.keys()
    for key, row in by_spark.items():
        same_numbers(windows[key], row, exact=("count", "min", "max", "p50", "p95"))
    nans = windows[("m-1", "level", at)]
    assert nans["count"] == 2 and math.isnan(nans["mean"])
    assert (nans["p50"], nans["p95"]) == (None, None)
    assert windows[("m-2", "level", at)]["p95"] == 1.5

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pulsecast.config import Settings, WindowSpec
from pulsecast.stream import transforms
from pulsecast.stream.session import spark_conf
from pulsecast.stream.transforms import (
    bronze_rows,
    bronze_rows_of_parsed,
    dead_letter_rows,
    fold_panes,
    pane_partials,
    pane_seconds,
    parse_events,
    silver_rows,
    window_starts,
    windows_from_panes,
)
from pulsecast.testing import settings_for

KAFKA = "key string, value string, topic string, partition int, offset long, timestamp timestamp"
TS = datetime(2026, 5, 1, 12, 0, 30)


def event(**changes: object) -> str:
    body: dict[str, object] = {
        "event_id": "e1",
        "event_time": "2026-05-01T12:00:00Z",
        "payload": {
            "entity_id": "m-1",
            "temperature_c": 60.0,
            "cpu_util": 50.0,
            "vibration_mm_s": 2.0,
            "power_kw": 10.0,
        },
    }
    for key, value in changes.items():
        if key.startswith("p_"):
            payload = dict(body["payload"])  # type: ignore[call-overload]
            if value is None:
                payload.pop(key[2:])
            else:
                payload[key[2:]] = value
            body["payload"] = payload
        elif value is None:
            body.pop(key)
        else:
            body[key] = value
    return json.dumps(body)


def kafka_rows(spark: SparkSession, values: list[str]):  # type: ignore[no-untyped-def]
    rows = [("m-1", v, "telemetry.events", 0, i, TS) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, KAFKA).selectExpr(
        "cast(key as binary) key",
        "cast(value as binary) value",
        "topic",
        "partition",
        "offset",
        "timestamp",
    )


CASES = [
    (event(), None, None, None),
    (
        event(p_cpu_util=101.0),
        "out_of_range",
        "payload.cpu_util",
        "payload.cpu_util: expected float <= 100.0",
    ),
    (
        event(p_power_kw=-1),
        "out_of_range",
        "payload.power_kw",
        "payload.power_kw: expected float >= 0.0",
    ),
    (
        event(p_temperature_c=None),
        "missing_field",
        "payload.temperature_c",
        "payload.temperature_c: required field is missing",
    ),
    (
        event(p_cpu_util="high"),
        "wrong_type",
        "payload.cpu_util",
        "payload.cpu_util: expected float",
    ),
    (
        event(event_time="yesterday"),
        "invalid_timestamp",
        "event_time",
        "event_time: expected RFC 3339 datetime with a timezone",
    ),
    (
        event(event_time="2026-05-01T12:00:00"),
        "invalid_timestamp",
        "event_time",
        "event_time: expected RFC 3339 datetime with a timezone",
    ),
    (
        event(event_time=None),
        "missing_field",
        "event_time",
        "event_time: required field is missing",
    ),
    (event(payload=None), "missing_field", "payload", "payload: required field is missing"),
    (event(payload="x"), "wrong_type", "payload", "payload: expected object"),
    (event(key="m-2"), "key_mismatch", "key", "key: differs from payload.entity_id"),
    (event(stream="other"), "stream_mismatch", "stream", "stream: differs from 'telemetry'"),
    ('{"event_time": ', "malformed_json", None, "malformed JSON"),
    ("[1, 2]", "not_an_object", None, "expected object"),
]


def test_parse_events_judges_each_record(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    parsed = parse_events(kafka_rows(spark, [c[0] for c in CASES]), "telemetry", telemetry)
    got = [(r["reason"], r["field"], r["message"]) for r in parsed.orderBy("offset").collect()]
    assert got == [c[1:] for c in CASES]


def test_the_parse_is_built_once_per_schema_and_judges_by_its_own(
    spark: SparkSession,
    telemetry,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []

    def counting(stream: str, spec, carry):  # type: ignore[no-untyped-def]
        built.append(stream)
        return real(stream, spec, carry)

    real = transforms._parse_columns
    counting.__qualname__ = real.__qualname__
    monkeypatch.setattr(transforms, "_BUILT", {})
    monkeypatch.setattr(transforms, "_parse_columns", counting)
    cpu = telemetry.fields["cpu_util"]
    strict = telemetry.model_copy(
        update={"fields": {**telemetry.fields, "cpu_util": cpu.model_copy(update={"max": 90.0})}}
    )
    hot = event(p_cpu_util=95.0)

    def reasons(spec):  # type: ignore[no-untyped-def]
        parsed = parse_events(kafka_rows(spark, [hot, event()]), "telemetry", spec)
        return [r["reason"] for r in parsed.orderBy("offset").collect()]

    assert reasons(telemetry) == [None, None]
    assert reasons(telemetry) == [None, None]  # the same columns on another batch
    assert reasons(strict) == ["out_of_range", None]
    assert built == ["telemetry", "telemetry"]  # once per schema


def test_parse_events_types_the_valid_ones(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    row = parse_events(kafka_rows(spark, [event()]), "telemetry", telemetry).first()
    assert row["event_id"] == "e1"
    assert row["key"] == "m-1"
    assert row["event_time"] == datetime(2026, 5, 1, 12, 0)
    assert row["ingest_time"] == TS  # no ingest_time in the envelope: Kafka's timestamp
    assert row["cpu_util"] == 50.0


def test_parse_events_without_event_id_uses_a_content_hash(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    rows = parse_events(
        kafka_rows(spark, [event(event_id=None)] * 2), "telemetry", telemetry
    ).collect()
    assert rows[0]["event_id"] == rows[1]["event_id"]
    assert len(rows[0]["event_id"]) == 64


def test_silver_rows_drop_duplicate_ids_and_add_partitions(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    values = [event(), event(), event(event_id="e2", event_time="2026-05-01T13:05:00Z")]
    parsed = parse_events(kafka_rows(spark, values), "telemetry", telemetry)
    silver = silver_rows(parsed, telemetry, batch_id=7).orderBy("event_id").collect()
    assert [r["event_id"] for r in silver] == ["e1", "e2"]
    assert [r["event_hour"] for r in silver] == [12, 13]
    assert silver[0]["event_date"].isoformat() == "2026-05-01"
    assert silver[0]["batch_id"] == 7


def test_silver_rows_keep_the_copy_of_the_lowest_partition_and_offset(
    spark: SparkSession,
    telemetry,  # type: ignore[no-untyped-def]
) -> None:
    values = [event(p_temperature_c=t) for t in (10.0, 20.0, 30.0)]
    records = kafka_rows(spark, values).withColumn(
        "partition", F.when(F.col("offset") == 0, 1).otherwise(0)
    )
    # Read newest first, the copy at partition 0, offset 1 is still the one kept.
    newest_first = records.orderBy(F.col("offset").desc()).coalesce(1)
    parsed = parse_events(newest_first, "telemetry", telemetry)
    silver = silver_rows(parsed, telemetry, batch_id=0).collect()
    assert [(r["kafka_partition"], r["kafka_offset"]) for r in silver] == [(0, 1)]
    assert silver[0]["temperature_c"] == 20.0


def test_a_payload_field_called_value_is_not_the_kafka_value(spark: SparkSession) -> None:
    series = Settings().streams["series"]  # NAB replays: {"series_id": ..., "value": ...}
    record = {
        "event_id": "s1",
        "event_time": "2014-04-01T00:00:00Z",
        "payload": {"series_id": "speed_7578", "value": 12.5},
    }
    parsed = parse_events(kafka_rows(spark, [json.dumps(record), "oops"]), "series", series)
    silver = silver_rows(parsed.where("reason IS NULL"), series, batch_id=0).collect()
    assert [(r["series_id"], r["value"]) for r in silver] == [("speed_7578", 12.5)]
    dead = dead_letter_rows(parsed.where("reason IS NOT NULL"), "series").collect()
    assert [bytes(r["value"]) for r in dead] == [b"oops"]


def test_bronze_keeps_the_record_as_received(spark: SparkSession) -> None:
    row = bronze_rows(kafka_rows(spark, ["not json"])).first()
    assert row["value"] == bytearray(b"not json")
    assert row["ingest_date"].isoformat() == "2026-05-01"
    assert (row["topic"], row["partition"], row["offset"]) == ("telemetry.events", 0, 0)


def test_bronze_of_the_parse_equals_bronze_of_the_records(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    raw = kafka_rows(spark, [event(), "not json", event(p_cpu_util=500.0)])
    parsed = parse_events(raw, "telemetry", telemetry, carry=("topic",))
    assert bronze_rows_of_parsed(parsed).collect() == bronze_rows(raw).collect()


def test_parse_events_carries_kafka_columns_under_their_own_names(spark: SparkSession) -> None:
    series = Settings().streams["series"]  # a payload field called value
    record = {
        "event_id": "s1",
        "event_time": "2014-04-01T00:00:00Z",
        "payload": {"series_id": "speed_7578", "value": 12.5},
    }
    raw = kafka_rows(spark, [json.dumps(record)])
    row = parse_events(raw, "series", series, carry=("topic",)).first()
    assert (row["kafka_topic"], row["value"]) == ("telemetry.events", 12.5)


def test_silver_rows_of_unique_events_keep_every_row(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    values = [event(), event(event_id="e2", event_time="2026-05-01T13:05:00Z")]
    parsed = parse_events(kafka_rows(spark, values), "telemetry", telemetry)
    unique = silver_rows(parsed, telemetry, batch_id=7, unique=True).orderBy("event_id")
    assert (
        unique.collect() == silver_rows(parsed, telemetry, batch_id=7).orderBy("event_id").collect()
    )


def test_dead_letters_carry_reason_headers(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    parsed = parse_events(kafka_rows(spark, [event(p_cpu_util=500.0)]), "telemetry", telemetry)
    row = dead_letter_rows(parsed, "telemetry").first()
    headers = {h["key"]: bytes(h["value"]).decode() for h in row["headers"]}
    assert headers == {
        "pulsecast.reason": "out_of_range",
        "pulsecast.error": "payload.cpu_util: expected float <= 100.0",
        "pulsecast.stream": "telemetry",
        "pulsecast.source": "stream",
        "pulsecast.field": "payload.cpu_util",
    }
    assert json.loads(bytes(row["value"]))["payload"]["cpu_util"] == 500.0


def _silver(spark: SparkSession, telemetry, readings: dict[str, float]):  # type: ignore[no-untyped-def]
    values = [
        event(event_id=f"e{t}", event_time=f"2026-05-01T{t}Z", p_temperature_c=v)
        for t, v in readings.items()
    ]
    return silver_rows(
        parse_events(kafka_rows(spark, values), "telemetry", telemetry), telemetry, 0
    )


def test_windows_from_panes_match_a_hand_computation(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    temps = {"12:00:05": 10.0, "12:00:50": 20.0, "12:01:10": 40.0}
    panes = pane_partials(_silver(spark, telemetry, temps), telemetry, 60, 0)
    tumbling = windows_from_panes(panes, WindowSpec(name="1m", size_s=60))
    rows = {(r["window_start"].strftime("%H:%M"), r["metric"]): r for r in tumbling.collect()}
    first = rows[("12:00", "temperature_c")]
    assert (first["count"], first["mean"], first["min"], first["max"]) == (2, 15.0, 10.0, 20.0)
    assert first["stddev"] == pytest.approx(7.0710678)
    assert (first["p50"], first["p95"]) == (10.0, 20.0)
    assert rows[("12:01", "temperature_c")]["count"] == 1
    assert rows[("12:01", "temperature_c")]["stddev"] is None  # one reading has no spread
    assert len(rows) == 2 * 4  # two windows, four numeric metrics
    sliding = windows_from_panes(panes, WindowSpec(name="5m", size_s=300, slide_s=60))
    counts = sorted(
        (r["window_start"].strftime("%H:%M"), r["count"])
        for r in sliding.where("metric = 'temperature_c'").collect()
    )
    assert counts == [
        ("11:56", 2),
        ("11:57", 3),
        ("11:58", 3),
        ("11:59", 3),
        ("12:00", 3),
        ("12:01", 1),
    ]


def test_partials_of_two_batches_merge_like_one(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    readings = {
        f"12:0{m}:{s:02d}": 50.0 + (s * 7919 % 97) / 3 for m in range(3) for s in range(0, 60, 4)
    }
    times = sorted(readings)
    early = {t: readings[t] for t in times[::2]}
    late = {t: readings[t] for t in times[1::2]}
    split = pane_partials(_silver(spark, telemetry, early), telemetry, 60, 0).unionByName(
        pane_partials(_silver(spark, telemetry, late), telemetry, 60, 1)
    )
    assert split.count() == 2 * 3 * 4  # two batches x three panes x four metrics
    window = WindowSpec(name="5m", size_s=300, slide_s=60)
    whole = pane_partials(_silver(spark, telemetry, readings), telemetry, 60, 0)
    columns = ["key", "window_start", "metric", "count", "mean", "min", "max", "stddev", "p50"]
    merged = windows_from_panes(split, window).select(*columns).orderBy(*columns[:3]).collect()
    expected = windows_from_panes(whole, window).select(*columns).orderBy(*columns[:3]).collect()
    assert len(merged) == len(expected) == 7 * 4
    for got, want in zip(merged, expected, strict=True):
        assert got[:3] == want[:3]
        assert got["count"] == want["count"]
        assert got["mean"] == pytest.approx(want["mean"])
        assert (got["min"], got["max"], got["p50"]) == (want["min"], want["max"], want["p50"])
        assert got["stddev"] == pytest.approx(want["stddev"])
    five = [r for r in expected if r["metric"] == "temperature_c" and r["count"] == 45]
    assert five and five[0]["stddev"] == pytest.approx(statistics.stdev(readings.values()))


def test_sliding_windows_merge_in_one_partition_without_a_shuffle(
    spark: SparkSession,
    telemetry,  # type: ignore[no-untyped-def]
) -> None:
    readings = {f"12:0{m}:{s:02d}": 30.0 + (s * 13 % 11) for m in range(4) for s in range(0, 60, 6)}
    computed = pane_partials(_silver(spark, telemetry, readings), telemetry, 60, 0)
    # As the job has them: collected, then one partition of local rows.
    panes = spark.createDataFrame(computed.toArrow(), schema=computed.schema).coalesce(1)
    window = WindowSpec(name="5m", size_s=300, slide_s=60)
    columns = ["key", "window_start", "metric", "count", "mean", "min", "max", "stddev", "p95"]
    shuffled = windows_from_panes(panes, window)
    single = windows_from_panes(panes, window, one_partition=True)
    plan = single._jdf.queryExecution().executedPlan().toString()
    assert "Exchange" not in plan
    assert "Exchange" in shuffled._jdf.queryExecution().executedPlan().toString()
    assert single.select(*columns).orderBy(*columns[:3]).collect() == (
        shuffled.select(*columns).orderBy(*columns[:3]).collect()
    )


def test_folded_partials_merge_like_the_partials(spark: SparkSession, telemetry) -> None:  # type: ignore[no-untyped-def]
    readings = {f"12:0{m}:{s:02d}": 20.0 + (s * 31 % 17) / 2 for m in range(2) for s in range(60)}
    times = sorted(readings)
    parts = [
        pane_partials(
            _silver(spark, telemetry, {t: readings[t] for t in times[i::3]}), telemetry, 60, i
        )
        for i in range(3)
    ]
    partials = parts[0].unionByName(parts[1]).unionByName(parts[2])
    folded = fold_panes(partials)
    assert partials.count() == 3 * 2 * 4  # three batches x two panes x four metrics
    assert folded.count() == 2 * 4  # one row per pane and metric
    assert folded.columns == partials.columns
    assert {r["batch_id"] for r in folded.collect()} == {2}  # the newest batch of each pane
    window = WindowSpec(name="1m", size_s=60)
    columns = ["key", "window_start", "metric", "count", "mean", "min", "max", "stddev", "p50"]
    got = windows_from_panes(folded, window).select(*columns).orderBy(*columns[:3]).collect()
    want = windows_from_panes(partials, window).select(*columns).orderBy(*columns[:3]).collect()
    assert len(got) == len(want) == 2 * 4
    for g, w in zip(got, want, strict=True):
        assert (g[:3], g["count"]) == (w[:3], w["count"])
        assert (g["min"], g["max"], g["p50"]) == (w["min"], w["max"], w["p50"])
        assert g["mean"] == pytest.approx(w["mean"])
        assert g["stddev"] == pytest.approx(w["stddev"])
    minute = next(r for r in got if r["metric"] == "temperature_c")
    first = [readings[t] for t in times if t.startswith("12:00")]
    assert minute["stddev"] == pytest.approx(statistics.stdev(first))


def test_pane_length_divides_every_window() -> None:
    windows = [WindowSpec(name="1m", size_s=60), WindowSpec(name="5m", size_s=300, slide_s=60)]
    assert pane_seconds(windows) == 60
    assert pane_seconds([WindowSpec(name="h", size_s=3600, slide_s=900)]) == 900
    assert pane_seconds([*windows, WindowSpec(name="90s", size_s=90)]) == 30


def test_spark_conf_binds_loopback_and_loads_local_jars(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(tmp_path, spark={"shuffle_partitions": 3, "conf": {"a.b": "c"}})
    conf = spark_conf(settings, [tmp_path / "b.jar", tmp_path / "a.jar"])
    assert conf["spark.master"] == "local[*]"
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.jars"] == f"{tmp_path / 'a.jar'},{tmp_path / 'b.jar'}"
    assert conf["spark.sql.shuffle.partitions"] == "3"
    assert conf["spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled"] == "true"
    assert conf["a.b"] == "c"
    cluster = spark_conf(settings_for(tmp_path, spark={"master": "spark://h:7077"}), [])
    assert "spark.driver.bindAddress" not in cluster
    local_cluster = spark_conf(
        settings_for(tmp_path, spark={"master": "spark://127.0.0.1:7077"}), []
    )
    assert local_cluster["spark.driver.bindAddress"] == "127.0.0.1"


@pytest.mark.parametrize(
    "window",
    [
        WindowSpec(name="1m", size_s=60),
        WindowSpec(name="5m", size_s=300, slide_s=60),
        WindowSpec(name="90s", size_s=90, slide_s=30),
    ],
)
def test_window_starts_are_the_windows_spark_puts_the_panes_in(
    spark: SparkSession, window: WindowSpec
) -> None:
    panes = [
        datetime(2026, 5, 1, 11, 59, tzinfo=UTC),
        datetime(2026, 5, 1, 12, 0, tzinfo=UTC),
        datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC),
        datetime(2026, 5, 2, 0, 1, tzinfo=UTC),
    ]
    frame = spark.createDataFrame([(p,) for p in panes], "pane_start timestamp")
    slide = f"{window.slide_s or window.size_s} seconds"
    expected = sorted(
        r[0].replace(tzinfo=None)
        for r in frame.select(F.window("pane_start", f"{window.size_s} seconds", slide).start)
        .distinct()
        .collect()
    )
    starts = window_starts(panes, window)
    assert [s.astimezone(UTC).replace(tzinfo=None) for s in starts] == expected

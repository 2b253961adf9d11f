from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from pulsecast.config import FieldSpec, Settings, StreamSpec
from pulsecast.events import Rejection, SchemaRegistry, UnknownStreamError
from pulsecast.testing import telemetry_event

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def telemetry(settings: Settings):  # type: ignore[no-untyped-def]
    return SchemaRegistry(settings.streams)["telemetry"]


def test_schema_valid_event_gets_envelope_fields(telemetry) -> None:  # type: ignore[no-untyped-def]
    event = telemetry.validate_obj(telemetry_event("m-7"), ingest_time=NOW)
    assert not isinstance(event, Rejection)
    assert event.key == "m-7"
    assert event.stream == "telemetry"
    assert event.ingest_time == NOW
    assert len(event.event_id) == 32
    assert event.payload.cpu_util == 42.0


def test_schema_keeps_given_event_id(telemetry) -> None:  # type: ignore[no-untyped-def]
    event = telemetry.validate_obj(telemetry_event(event_id="abc"))
    assert event.event_id == "abc"


def test_schema_wire_form_round_trips(telemetry) -> None:  # type: ignore[no-untyped-def]
    event = telemetry.validate_obj(telemetry_event("m-1"), ingest_time=NOW)
    wire = telemetry.encode(event)
    data = msgspec.json.decode(wire)
    assert list(data) == ["event_id", "stream", "key", "event_time", "ingest_time", "payload"]
    assert data["event_time"] == "2026-01-01T00:00:00Z"
    assert data["ingest_time"] == "2026-11-28T12:00:00Z"
    assert telemetry.decode(wire) == event
    assert telemetry.validate_json(wire) == event


def test_schema_encode_many_equals_encode(telemetry) -> None:  # type: ignore[no-untyped-def]
    events = telemetry.validate_many([telemetry_event(f"m-{i}") for i in range(5)])
    assert telemetry.encode_many(events) == [telemetry.encode(e) for e in events]
    assert telemetry.encode_many([]) == []


def bad(**changes: object) -> dict[str, object]:
    event = telemetry_event("m-1")
    payload = dict(event["payload"])
    for key, value in changes.items():
        if key.startswith("p_"):
            name = key[2:]
            if value is None:
                payload.pop(name)
            else:
                payload[name] = value
        else:
            event[key] = value
    event["payload"] = payload
    return event


@pytest.mark.parametrize(
    ("event", "reason", "field", "message"),
    [
        (
            bad(p_cpu_util=101),
            "out_of_range",
            "payload.cpu_util",
            "payload.cpu_util: expected float <= 100.0",
        ),
        (
            bad(p_power_kw=-1),
            "out_of_range",
            "payload.power_kw",
            "payload.power_kw: expected float >= 0.0",
        ),
        (
            bad(p_temperature_c=None),
            "missing_field",
            "payload.temperature_c",
            "payload.temperature_c: required field is missing",
        ),
        (
            bad(p_cpu_util="high"),
            "wrong_type",
            "payload.cpu_util",
            "payload.cpu_util: expected float, got str",
        ),
        (
            bad(p_entity_id=7),
            "wrong_type",
            "payload.entity_id",
            "payload.entity_id: expected str, got int",
        ),
        (
            bad(p_colour="red"),
            "unknown_field",
            "payload.colour",
            "payload.colour: field is not declared in the stream's schema",
        ),
        (
            bad(event_time="yesterday"),
            "invalid_timestamp",
            "event_time",
            "event_time: invalid RFC3339 encoded datetime",
        ),
        (
            bad(event_time="2026-01-01T00:00:00"),
            "invalid_timestamp",
            "event_time",
            "event_time: expected datetime with a timezone component",
        ),
        (bad(key="m-2"), "key_mismatch", "key", "key: 'm-2' differs from payload.entity_id 'm-1'"),
        (bad(stream="other"), "stream_mismatch", "stream", "stream: 'other' sent to 'telemetry'"),
        (
            {"payload": telemetry_event()["payload"]},
            "missing_field",
            "event_time",
            "event_time: required field is missing",
        ),
        ([1, 2], "not_an_object", None, "expected object, got array"),
    ],
)
def test_schema_rejections_name_field_and_problem(  # type: ignore[no-untyped-def]
    telemetry, event, reason, field, message
) -> None:
    expected = Rejection(reason, field, message)
    assert telemetry.validate_obj(event) == expected
    assert telemetry.validate_json(msgspec.json.encode(event)) == expected


def test_schema_malformed_json(telemetry) -> None:  # type: ignore[no-untyped-def]
    rejection = telemetry.validate_json(b'{"event_time": ')
    assert rejection == Rejection(
        "malformed_json", None, "malformed JSON: Input data was truncated"
    )


def test_schema_choices_and_optional_fields(settings: Settings) -> None:
    spec = StreamSpec(
        key_field="user",
        fields={
            "user": FieldSpec(type="str"),
            "plan": FieldSpec(type="str", choices=["free", "pro"]),
            "seats": FieldSpec(type="int", required=False, min=1),
            "at": FieldSpec(type="timestamp", required=False),
        },
    )
    schema = SchemaRegistry({"signups": spec})["signups"]
    ok = schema.validate_obj({"event_time": NOW, "payload": {"user": "u", "plan": "pro"}})
    assert ok.payload.seats is None
    assert schema.validate_obj(
        {"event_time": NOW, "payload": {"user": "u", "plan": "gold"}}
    ) == Rejection("not_allowed", "payload.plan", "payload.plan: invalid enum value 'gold'")
    assert (
        schema.validate_obj(
            {"event_time": NOW, "payload": {"user": "u", "plan": "pro", "seats": 1.5}}
        ).reason
        == "wrong_type"
    )


def test_schema_lenient_mode_converts_strings(telemetry) -> None:  # type: ignore[no-untyped-def]
    row = telemetry_event(cpu_util="12.5", when="2026-01-01 00:00:00+00:00")
    assert isinstance(telemetry.validate_obj(row), Rejection)
    event = telemetry.validate_obj(row, strict=False)
    assert event.payload.cpu_util == 12.5


def test_schema_validate_many_keeps_order_and_finds_the_bad_ones(telemetry) -> None:  # type: ignore[no-untyped-def]
    events = [telemetry_event(f"m-{i}") for i in range(6)]
    events[2] = bad(p_cpu_util=500)
    events[4] = bad(key="zz")
    results = telemetry.validate_many(events)
    kinds = [r.reason if isinstance(r, Rejection) else r.key for r in results]
    assert kinds == ["m-0", "m-1", "out_of_range", "m-3", "key_mismatch", "m-5"]


def test_schema_decode_batch_fast_and_fallback_paths(telemetry) -> None:  # type: ignore[no-untyped-def]
    good = [telemetry_event(f"m-{i}") for i in range(3)]
    results = telemetry.decode_batch(msgspec.json.encode(good))
    assert [r.key for r in results] == ["m-0", "m-1", "m-2"]
    mixed = [good[0], bad(p_cpu_util="x"), good[2]]
    results = telemetry.decode_batch(msgspec.json.encode(mixed))
    assert isinstance(results[1], Rejection)
    assert results[1].field == "payload.cpu_util"
    assert [results[0].key, results[2].key] == ["m-0", "m-2"]
    assert telemetry.split_batch(b'[{"a": 1}, 2]') == [msgspec.Raw(b'{"a": 1}'), msgspec.Raw(b"2")]


def test_registry_unknown_stream(settings: Settings) -> None:
    registry = SchemaRegistry(settings.streams)
    with pytest.raises(UnknownStreamError) as info:
        registry["nope"]
    assert str(info.value) == "unknown stream 'nope'; configured streams: series, telemetry"
    assert "telemetry" in registry
    assert sorted(registry.names()) == ["series", "telemetry"]

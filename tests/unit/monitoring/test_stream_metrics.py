from __future__ import annotations

import copy
import math
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pyspark.sql.streaming.listener import (
    QueryIdleEvent,
    QueryProgressEvent,
    QueryStartedEvent,
    QueryTerminatedEvent,
)

from pulsecast.monitoring.stream_metrics import (
    PrometheusStreamListener,
    kafka_lag,
    note_read_ahead,
    record_batch,
    record_progress,
)
from pulsecast.testing import settings_for


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def progress_sample(name: str) -> dict[str, Any]:
    """A micro-batch's progress as Spark 4.2 writes it (query.lastProgress), trimmed."""
    return {
        "id": "8c1b1c62-5a3e-4a2c-9a5e-2f1d0d1f6a11",
        "runId": "0b7e7c38-1a5f-4b9f-a2f3-9b8f2f1c8d22",
        "name": name,
        "timestamp": "2026-11-28T05:00:00.000Z",
        "batchId": 17,
        "batchDuration": 1500,
        "numInputRows": 4000,
        "inputRowsPerSecond": 2000.0,
        "processedRowsPerSecond": 2666.6,
        "durationMs": {
            "addBatch": 1300,
            "getBatch": 0,
            "latestOffset": 5,
            "triggerExecution": 1500,
        },
        "eventTime": {
            "avg": "2026-11-28T04:59:58.000Z",
            "max": "2026-11-28T04:59:59.500Z",
            "min": "2026-11-28T04:59:56.000Z",
            "watermark": "2026-11-28T04:58:00.000Z",
        },
        "stateOperators": [
            {
                "operatorName": "stateStoreSave",
                "numRowsTotal": 250,
                "numRowsUpdated": 40,
                "numRowsRemoved": 3,
                "allUpdatesTimeMs": 12,
                "allRemovalsTimeMs": 0,
                "commitTimeMs": 30,
                "memoryUsedBytes": 90_000,
                "numRowsDroppedByWatermark": 7,
                "numShufflePartitions": 2,
                "numStateStoreInstances": 2,
                "customMetrics": {},
            }
        ],
        "sources": [
            {
                "description": "KafkaV2[Subscribe[telemetry.events]]",
                "startOffset": {"telemetry.events": {"0": 1000, "1": 900}},
                "endOffset": {"telemetry.events": {"0": 3000, "1": 2900}},
                "latestOffset": {"telemetry.events": {"0": 3500, "1": 2900}},
                "numInputRows": 4000,
                "inputRowsPerSecond": 2000.0,
                "processedRowsPerSecond": 2666.6,
                "metrics": {"maxOffsetsBehindLatest": "500"},
            }
        ],
        "sink": {"description": "ForeachBatchSink", "numOutputRows": -1},
    }


def test_record_progress_maps_a_batch_to_metrics() -> None:
    query = f"pulsecast-t{uuid.uuid4().hex[:8]}"
    assert record_progress(progress_sample(query)) == query
    q = {"query": query}
    assert value("pulsecast_stream_input_rows_total", **q) == 4000
    assert value("pulsecast_stream_input_rows_per_second", **q) == 2000.0
    assert value("pulsecast_stream_processed_rows_per_second", **q) == 2666.6
    assert value("pulsecast_stream_batch_duration_seconds_sum", **q) == 1.5
    assert value("pulsecast_stream_batch_duration_seconds_count", **q) == 1
    assert value("pulsecast_stream_batch_duration_seconds_bucket", **q, le="1.0") == 0
    assert value("pulsecast_stream_batch_duration_seconds_bucket", **q, le="2.0") == 1
    assert value("pulsecast_stream_watermark_delay_seconds", **q) == 120.0
    assert value("pulsecast_stream_state_rows", **q, operator="stateStoreSave") == 250
    assert value("pulsecast_stream_state_memory_bytes", **q, operator="stateStoreSave") == 90_000
    assert value("pulsecast_stream_rows_dropped_by_watermark_total", **q) == 7
    lag = {**q, "topic": "telemetry.events"}
    assert value("pulsecast_stream_source_lag_records", **lag, partition="0") == 500
    assert value("pulsecast_stream_source_lag_records", **lag, partition="1") == 0
    stamp = value("pulsecast_stream_last_progress_timestamp_seconds", **q)
    assert stamp == 1_795_842_000.0  # 2026-11-28T05:00:00Z

    # Counters add up batch after batch; gauges hold the latest batch.
    second = progress_sample(query)
    second.update(numInputRows=10, inputRowsPerSecond=5.0, batchDuration=250)
    record_progress(second)
    assert value("pulsecast_stream_input_rows_total", **q) == 4010
    assert value("pulsecast_stream_input_rows_per_second", **q) == 5.0
    assert value("pulsecast_stream_batch_duration_seconds_count", **q) == 2


def test_record_progress_of_an_empty_batch_without_watermark_or_state() -> None:
    query = f"pulsecast-t{uuid.uuid4().hex[:8]}"
    sample = progress_sample(query)
    sample.update(
        numInputRows=0,
        inputRowsPerSecond=math.nan,
        processedRowsPerSecond=None,
        eventTime={"watermark": "1970-01-01T00:00:00.000Z"},
        stateOperators=[],
    )
    record_progress(sample)
    q = {"query": query}
    assert value("pulsecast_stream_input_rows_total", **q) == 0  # the series exists: rate() is 0
    assert value("pulsecast_stream_input_rows_per_second", **q) == 0.0
    assert value("pulsecast_stream_processed_rows_per_second", **q) == 0.0
    assert value("pulsecast_stream_watermark_delay_seconds", **q) is None


def test_a_batch_read_ahead_counts_its_records_not_sparks_zero() -> None:
    """Spark's progress of a batch the job read ahead says 0 rows: the job's count wins."""
    query = f"pulsecast-q{uuid.uuid4().hex[:8]}"
    first = progress_sample(query)
    record_progress(first)  # batch 17, 4,000 rows read by Spark itself
    ahead = copy.deepcopy(first)
    ahead |= {
        "batchId": 18,
        "timestamp": "2026-11-28T05:00:02.000Z",  # 2 s after the one before
        "numInputRows": 0,
        "inputRowsPerSecond": 0.0,
        "processedRowsPerSecond": 0.0,
    }
    note_read_ahead(query, 18, 3_000)
    note_read_ahead(query, 99, 5)  # another batch's note: not this one's
    record_progress(ahead)
    assert value("pulsecast_stream_input_rows_total", query=query) == 4_000 + 3_000
    assert value("pulsecast_stream_input_rows_per_second", query=query) == 3_000 / 2
    assert value("pulsecast_stream_processed_rows_per_second", query=query) == 3_000 / 1.5


def test_kafka_lag_reads_offsets_as_json_strings_and_ignores_other_sources() -> None:
    source = {
        "description": "KafkaV2[Subscribe[series.events]]",
        "endOffset": '{"series.events":{"0":10,"2":7}}',
        "latestOffset": '{"series.events":{"0":15,"1":4,"2":7}}',
    }
    assert kafka_lag(source) == {("series.events", "0"): 5, ("series.events", "2"): 0}
    assert kafka_lag({"description": "DeltaSource[file:/lake/silver]", "endOffset": "{}"}) == {}
    assert kafka_lag({"description": "KafkaV2[x]", "endOffset": "not json"}) == {}


def test_listener_follows_a_query_through_pysparks_events(tmp_path: Path) -> None:
    stream = f"s{uuid.uuid4().hex[:8]}"
    query = f"pulsecast-{stream}"
    base = settings_for(tmp_path)
    settings = settings_for(
        tmp_path,
        streams={stream: base.streams["telemetry"]},
        stream={"trigger_interval_s": 3.0},
        monitoring={"latency_objective_s": 45.0},
    )
    listener = PrometheusStreamListener(settings)
    assert value("pulsecast_stream_latency_objective_seconds", stream=stream) == 45.0

    sample = progress_sample(query)
    ids = {"id": sample["id"], "runId": sample["runId"]}
    listener.onQueryStarted(
        QueryStartedEvent.fromJson({**ids, "name": query, "timestamp": sample["timestamp"]})
    )
    q = {"query": query}
    assert value("pulsecast_stream_query_active", **q) == 1
    assert value("pulsecast_stream_trigger_interval_seconds", **q) == 3.0

    listener.onQueryProgress(QueryProgressEvent.fromJson({"progress": copy.deepcopy(sample)}))
    assert value("pulsecast_stream_input_rows_total", **q) == 4000
    lag = {**q, "topic": "telemetry.events", "partition": "0"}
    assert value("pulsecast_stream_source_lag_records", **lag) == 500  # offsets as JSON text

    listener.onQueryIdle(QueryIdleEvent.fromJson({**ids, "timestamp": "2026-11-28T05:00:30.000Z"}))
    assert value("pulsecast_stream_input_rows_per_second", **q) == 0
    assert value("pulsecast_stream_last_progress_timestamp_seconds", **q) == 1_795_842_030.0

    listener.onQueryTerminated(
        QueryTerminatedEvent.fromJson({**ids, "exception": "boom", "errorClassOnException": None})
    )
    assert value("pulsecast_stream_query_active", **q) == 0
    assert value("pulsecast_stream_query_failures_total", **q) == 1


def test_listener_survives_an_unreadable_progress(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    listener = PrometheusStreamListener(settings_for(tmp_path))
    broken = progress_sample("pulsecast-broken")
    broken["timestamp"] = "yesterday"
    listener.onQueryProgress(QueryProgressEvent.fromJson({"progress": broken}))
    assert "unreadable progress of query pulsecast-broken" in caplog.text


def test_record_batch_counts_dead_letters_and_latency() -> None:
    stream = f"s{uuid.uuid4().hex[:8]}"
    record_batch(stream, records=100, dead_letters={"late": 3, "out_of_range": 2, "wrong_type": 0})
    record_batch(stream, records=50, latencies_s=[1.5, 4.0, -0.1])
    assert value("pulsecast_stream_records_total", stream=stream) == 150
    assert value("pulsecast_stream_dead_letters_total", stream=stream, reason="late") == 3
    assert value("pulsecast_stream_dead_letters_total", stream=stream, reason="out_of_range") == 2
    assert value("pulsecast_stream_dead_letters_total", stream=stream, reason="wrong_type") is None
    assert value("pulsecast_stream_end_to_end_latency_seconds_count", stream=stream) == 3
    assert value("pulsecast_stream_end_to_end_latency_seconds_sum", stream=stream) == 5.5

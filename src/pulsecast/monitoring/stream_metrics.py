"""The streaming job's metrics: a ``StreamingQueryListener`` and the job's ``/metrics``.

Spark reports each micro-batch of each query as a ``QueryProgressEvent``;
:class:`PrometheusStreamListener` turns those into the ``pulsecast_stream_*``
metrics of :mod:`pulsecast.monitoring.metrics` (rows in and processed per
second, batch durations, watermark delay, state rows, what each Kafka
partition still holds unread). The mapping itself is :func:`record_progress`,
a pure function of the progress mapping (Spark's ``StreamingQueryProgress``
is a ``dict``, and so is the JSON of ``query.lastProgress``), tested without
Spark. What only the job's batch writer knows (records judged, dead letters
by reason, end-to-end latency) it records with :func:`record_batch`.
:func:`serve_metrics` serves the process's metrics on
``monitoring.job_metrics_port``.

Imports pyspark's listener API (pure Python; no JVM is started here).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from pyspark.sql.streaming.listener import (
    QueryIdleEvent,
    QueryProgressEvent,
    QueryStartedEvent,
    QueryTerminatedEvent,
    StreamingQueryListener,
)

from pulsecast.config import Settings
from pulsecast.monitoring import metrics as m

__all__ = [
    "PrometheusStreamListener",
    "kafka_lag",
    "note_read_ahead",
    "record_batch",
    "record_progress",
    "serve_metrics",
]

log = logging.getLogger(__name__)

_NO_WATERMARK = 0.0
#: Records of batches read ahead by the job, by query and batch id (note_read_ahead).
_READ_AHEAD: dict[tuple[str, int], int] = {}
_READ_AHEAD_KEPT = 1_000
#: The start of each query's previous progress (an input rate's interval).
_LAST_STARTED: dict[str, float] = {}
_READ_AHEAD_LOCK = threading.Lock()


def _epoch_s(stamp: str) -> float:
    """An ISO-8601 UTC timestamp of Spark's progress (``...Z``) as Unix time."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _number(value: Any) -> float:
    """A progress figure as a float (Spark gives NaN or nothing for an empty batch)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(number) or math.isinf(number) else number


def _offsets(value: Any) -> dict[str, dict[str, int]]:
    """A Kafka source's offsets (``{"topic": {"0": 12}}``) from a JSON string or a mapping."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, Mapping):
        return {}
    return {
        str(topic): {str(p): int(o) for p, o in parts.items()}
        for topic, parts in value.items()
        if isinstance(parts, Mapping)
    }


def kafka_lag(source: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """Records per (topic, partition) a Kafka source had not read when its batch ended.

    Args:
        source: One entry of a progress's ``sources``.

    Returns:
        ``latestOffset - endOffset`` per partition; empty for other sources.
    """
    if not str(source.get("description", "")).startswith("Kafka"):
        return {}
    end = _offsets(source.get("endOffset"))
    latest = _offsets(source.get("latestOffset"))
    lag: dict[tuple[str, str], int] = {}
    for topic, partitions in latest.items():
        for partition, offset in partitions.items():
            done = end.get(topic, {}).get(partition)
            if done is not None:
                lag[(topic, partition)] = max(offset - done, 0)
    return lag


def note_read_ahead(query: str, batch_id: int, records: int) -> None:
    """Batch ``batch_id`` of ``query`` had ``records`` records, read ahead by the job.

    Spark's progress counts the rows its own read of a batch produced, and
    the job does not read a batch it read ahead again
    (:mod:`pulsecast.stream.read_ahead`): its progress says 0 rows.
    :func:`record_progress` counts these records for it instead. The notes
    of the newest batches are kept (a progress may never come for one).
    """
    with _READ_AHEAD_LOCK:
        _READ_AHEAD[(query, batch_id)] = records
        while len(_READ_AHEAD) > _READ_AHEAD_KEPT:
            del _READ_AHEAD[next(iter(_READ_AHEAD))]


def record_progress(progress: Mapping[str, Any]) -> str:
    """Update the streaming metrics from one micro-batch's progress.

    Args:
        progress: A ``StreamingQueryProgress`` (or its JSON as a dict).

    Returns:
        The query label the figures were recorded under.
    """
    query = str(progress.get("name") or progress.get("id"))
    started = _epoch_s(str(progress["timestamp"]))  # first: a bad progress records nothing
    rows = int(_number(progress.get("numInputRows")))
    input_rate = _number(progress.get("inputRowsPerSecond"))
    processed_rate = _number(progress.get("processedRowsPerSecond"))
    with _READ_AHEAD_LOCK:
        read_ahead = _READ_AHEAD.pop((query, int(_number(progress.get("batchId", -1)))), 0)
        previous = _LAST_STARTED.get(query)
        _LAST_STARTED[query] = started
    if read_ahead and not rows:
        # Spark did not read the batch itself (see note_read_ahead): its rates, from the
        # batch's records, as Spark computes them from its own count.
        rows = read_ahead
        took = _number((progress.get("durationMs") or {}).get("triggerExecution")) / 1000
        processed_rate = rows / took if took > 0 else 0.0
        since = started - previous if previous is not None else 0.0
        input_rate = rows / since if since > 0 else processed_rate
    m.STREAM_INPUT_ROWS.labels(query).inc(rows)
    m.STREAM_INPUT_ROWS_PER_SECOND.labels(query).set(input_rate)
    m.STREAM_PROCESSED_ROWS_PER_SECOND.labels(query).set(processed_rate)
    m.STREAM_BATCH_SECONDS.labels(query).observe(_number(progress.get("batchDuration")) / 1000)
    m.STREAM_LAST_PROGRESS.labels(query).set(started)
    watermark = (progress.get("eventTime") or {}).get("watermark")
    if watermark and _epoch_s(str(watermark)) > _NO_WATERMARK:
        m.STREAM_WATERMARK_DELAY.labels(query).set(max(started - _epoch_s(str(watermark)), 0.0))
    dropped = 0
    for operator in progress.get("stateOperators") or []:
        name = str(operator.get("operatorName") or "state")
        m.STREAM_STATE_ROWS.labels(query, name).set(_number(operator.get("numRowsTotal")))
        m.STREAM_STATE_MEMORY_BYTES.labels(query, name).set(
            _number(operator.get("memoryUsedBytes"))
        )
        dropped += int(_number(operator.get("numRowsDroppedByWatermark")))
    if dropped:
        m.STREAM_ROWS_DROPPED_BY_WATERMARK.labels(query).inc(dropped)
    for source in progress.get("sources") or []:
        for (topic, partition), lag in kafka_lag(source).items():
            m.STREAM_SOURCE_LAG.labels(query, topic, partition).set(lag)
    return query


def record_batch(
    stream: str,
    *,
    records: int,
    dead_letters: Mapping[str, int] | None = None,
    latencies_s: Iterable[float] = (),
) -> None:
    """Record what the job's batch writer learnt from one micro-batch.

    Args:
        stream: The stream.
        records: Records the batch judged, valid or not.
        dead_letters: Records sent to ``<stream>.dlq``, by reason (``late`` included).
        latencies_s: End-to-end latencies: from an event's ingest to its
            aggregates being visible in the warehouse (a few per batch do:
            the batch's oldest and newest events, for instance).
    """
    m.STREAM_RECORDS.labels(stream).inc(records)
    for reason, count in (dead_letters or {}).items():
        if count:
            m.STREAM_DEAD_LETTERS.labels(stream, reason).inc(count)
    child = m.STREAM_END_TO_END_SECONDS.labels(stream)
    for latency in latencies_s:
        child.observe(max(latency, 0.0))


class PrometheusStreamListener(StreamingQueryListener):
    """Keeps the ``pulsecast_stream_*`` metrics up to date from Spark's query events.

    Add it once per session (``spark.streams.addListener(...)``); it follows
    every query of the session. Spark calls it from its listener thread: each
    method only sets metrics, which are thread-safe, and returns at once.

    Args:
        settings: The platform's settings: the streams' trigger intervals and
            the latency objective are published for the alert rules.
    """

    def __init__(self, settings: Settings) -> None:
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()
        self._triggers: dict[str, float] = {}
        for stream in settings.streams:
            self._triggers[f"pulsecast-{stream}"] = settings.stream.trigger_interval_s
            self._triggers[f"pulsecast-{stream}-scores"] = settings.ml.detector.trigger_interval_s
            m.STREAM_LATENCY_OBJECTIVE.labels(stream).set(settings.monitoring.latency_objective_s)

    def _query(self, query_id: object) -> str:
        with self._lock:
            return self._names.get(str(query_id), str(query_id))

    def onQueryStarted(self, event: QueryStartedEvent) -> None:
        """A query started: mark it active and publish its trigger interval."""
        query = str(event.name or event.id)
        with self._lock:
            self._names[str(event.id)] = query
        m.STREAM_QUERY_ACTIVE.labels(query).set(1)
        if query in self._triggers:
            m.STREAM_TRIGGER_INTERVAL.labels(query).set(self._triggers[query])

    def onQueryProgress(self, event: QueryProgressEvent) -> None:
        """A micro-batch ended: see :func:`record_progress`."""
        try:
            record_progress(event.progress)
        except (KeyError, TypeError, ValueError) as exc:
            # A metric must never stop a query: Spark would log and drop the error anyway.
            log.warning("unreadable progress of query %s: %s", event.progress.name, exc)

    def onQueryIdle(self, event: QueryIdleEvent) -> None:
        """The query waits for data: no rows flow, and it is alive."""
        query = self._query(event.id)
        m.STREAM_INPUT_ROWS_PER_SECOND.labels(query).set(0)
        m.STREAM_PROCESSED_ROWS_PER_SECOND.labels(query).set(0)
        m.STREAM_LAST_PROGRESS.labels(query).set(_epoch_s(event.timestamp))

    def onQueryTerminated(self, event: QueryTerminatedEvent) -> None:
        """A query stopped: mark it inactive, and count it when it failed."""
        query = self._query(event.id)
        m.STREAM_QUERY_ACTIVE.labels(query).set(0)
        if event.exception:
            m.STREAM_QUERY_FAILURES.labels(query).inc()


def serve_metrics(settings: Settings) -> WSGIServer | None:
    """Serve this process's metrics on ``http://<monitoring.host>:<job_metrics_port>/metrics``.

    For a long-running process other than the HTTP ingest (which serves
    ``/metrics`` itself): the streaming job. The server runs on a daemon
    thread; call ``shutdown()`` on the result to stop it.

    Returns:
        The server, or None when ``monitoring.job_metrics_port`` is 0 or the
        port is taken (a warning is logged: metrics never stop the job).
    """
    mon = settings.monitoring
    if mon.job_metrics_port == 0:
        return None
    try:
        server, _thread = start_http_server(mon.job_metrics_port, addr=mon.host)
    except OSError as exc:
        log.warning(
            "not serving metrics: port %s (monitoring.job_metrics_port) on %s: %s",
            mon.job_metrics_port,
            mon.host,
            exc.strerror or exc,
        )
        return None
    log.info("metrics on http://%s:%s/metrics", mon.host, mon.job_metrics_port)
    return server

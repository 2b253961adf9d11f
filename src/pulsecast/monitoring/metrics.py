"""Every Prometheus metric of pulsecast: its name, its meaning and its bounded labels.

Components record into these objects where the information lives (the HTTP
ingest, the streaming job's listener, live scoring) and serve them on
``/metrics``; the monitor computes the probe metrics (:data:`PROBE_METRICS`)
at each scrape. The alert rules in ``infra/prometheus/rules`` and the Grafana
dashboards in ``infra/grafana`` may only use names defined here (a unit test
checks both).

Label values are bounded: ``stream`` is a configured stream, ``query`` a
streaming query (``pulsecast-<stream>`` or ``pulsecast-<stream>-scores``),
``reason`` one of the rejection codes of :mod:`pulsecast.events.envelope`
(plus ``late``), ``topic``/``partition`` the streams' topics, ``service`` a
local server, ``metric`` a payload field of a stream's schema and ``model``
one of ``forecaster`` and ``detector``. No label ever holds an event id, a
key or free text.

Needs only ``prometheus_client``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = [
    "ALERTS_RECEIVED",
    "DISK_FREE_BYTES",
    "DISK_SIZE_BYTES",
    "INGEST_BATCH_EVENTS",
    "INGEST_EVENTS",
    "INGEST_PRODUCE_ERRORS",
    "INGEST_REJECTIONS",
    "INGEST_REQUESTS",
    "INGEST_REQUEST_SECONDS",
    "KAFKA_CONSUMER_LAG",
    "KAFKA_LOG_END_OFFSET",
    "MODEL_ANOMALIES",
    "MODEL_FORECAST_ABS_ERROR",
    "MODEL_HOLDOUT_MAE",
    "MODEL_LAST_TRAINED",
    "MODEL_SCORED",
    "MODEL_VERSION",
    "PROBE_METRICS",
    "SERVICE_UP",
    "STREAM_BATCH_SECONDS",
    "STREAM_DEAD_LETTERS",
    "STREAM_END_TO_END_SECONDS",
    "STREAM_INPUT_ROWS",
    "STREAM_INPUT_ROWS_PER_SECOND",
    "STREAM_LAST_PROGRESS",
    "STREAM_LATENCY_OBJECTIVE",
    "STREAM_PROCESSED_ROWS_PER_SECOND",
    "STREAM_QUERY_ACTIVE",
    "STREAM_QUERY_FAILURES",
    "STREAM_RECORDS",
    "STREAM_ROWS_DROPPED_BY_WATERMARK",
    "STREAM_SOURCE_LAG",
    "STREAM_STATE_MEMORY_BYTES",
    "STREAM_STATE_ROWS",
    "STREAM_TRIGGER_INTERVAL",
    "STREAM_WATERMARK_DELAY",
    "ProbeMetric",
    "exposed_names",
    "record_forecast_errors",
    "record_model",
    "record_scores",
]

# -- HTTP ingest ------------------------------------------------------------------------------

INGEST_REQUESTS = Counter(
    "pulsecast_ingest_requests_total",
    "Requests to POST /v1/streams/{stream}/events by HTTP status code "
    "(stream is 'unknown' for a stream that is not configured).",
    ["stream", "code"],
)
INGEST_EVENTS = Counter(
    "pulsecast_ingest_events_total",
    "Events received by the HTTP ingest, by outcome: accepted (stored in Kafka), "
    "rejected (invalid, sent to the DLQ) or failed (Kafka did not acknowledge).",
    ["stream", "status"],
)
INGEST_REJECTIONS = Counter(
    "pulsecast_ingest_rejections_total",
    "Events the HTTP ingest rejected, by rejection reason code.",
    ["stream", "reason"],
)
INGEST_REQUEST_SECONDS = Histogram(
    "pulsecast_ingest_request_duration_seconds",
    "Time to answer one ingest request, Kafka's acknowledgement included.",
    ["stream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
INGEST_BATCH_EVENTS = Histogram(
    "pulsecast_ingest_batch_events",
    "Events per ingest request.",
    ["stream"],
    buckets=(1, 10, 100, 500, 1_000, 5_000, 10_000, 50_000),
)
INGEST_PRODUCE_ERRORS = Counter(
    "pulsecast_ingest_produce_errors_total",
    "Events the HTTP ingest could not get acknowledged by Kafka: kind is delivery "
    "(Kafka refused one) or timeout (no answer within ingest.delivery_timeout_s).",
    ["stream", "kind"],
)

# -- The streaming job (StreamingQueryListener and the batch writer) --------------------------

STREAM_INPUT_ROWS = Counter(
    "pulsecast_stream_input_rows_total",
    "Rows a streaming query read from its sources.",
    ["query"],
)
STREAM_INPUT_ROWS_PER_SECOND = Gauge(
    "pulsecast_stream_input_rows_per_second",
    "Rate at which rows arrived for the query's latest micro-batch.",
    ["query"],
)
STREAM_PROCESSED_ROWS_PER_SECOND = Gauge(
    "pulsecast_stream_processed_rows_per_second",
    "Rate at which the query's latest micro-batch processed its rows.",
    ["query"],
)
STREAM_BATCH_SECONDS = Histogram(
    "pulsecast_stream_batch_duration_seconds",
    "Wall-clock time of each micro-batch.",
    ["query"],
    buckets=(0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0),
)
STREAM_TRIGGER_INTERVAL = Gauge(
    "pulsecast_stream_trigger_interval_seconds",
    "The query's configured trigger interval (batches longer than this fall behind).",
    ["query"],
)
STREAM_WATERMARK_DELAY = Gauge(
    "pulsecast_stream_watermark_delay_seconds",
    "How far the query's event-time watermark trails the batch's start.",
    ["query"],
)
STREAM_STATE_ROWS = Gauge(
    "pulsecast_stream_state_rows",
    "Rows held in the state store of each stateful operator.",
    ["query", "operator"],
)
STREAM_STATE_MEMORY_BYTES = Gauge(
    "pulsecast_stream_state_memory_bytes",
    "Memory used by the state store of each stateful operator.",
    ["query", "operator"],
)
STREAM_ROWS_DROPPED_BY_WATERMARK = Counter(
    "pulsecast_stream_rows_dropped_by_watermark_total",
    "Rows Spark's stateful operators dropped as older than the watermark.",
    ["query"],
)
STREAM_SOURCE_LAG = Gauge(
    "pulsecast_stream_source_lag_records",
    "Records the query had not read yet when its latest micro-batch ended "
    "(Kafka's latest offset minus the batch's end offset), per partition.",
    ["query", "topic", "partition"],
)
STREAM_LAST_PROGRESS = Gauge(
    "pulsecast_stream_last_progress_timestamp_seconds",
    "When the query last reported progress (or idleness), Unix time.",
    ["query"],
)
STREAM_QUERY_ACTIVE = Gauge(
    "pulsecast_stream_query_active",
    "1 while the query runs, 0 once it stopped.",
    ["query"],
)
STREAM_QUERY_FAILURES = Counter(
    "pulsecast_stream_query_failures_total",
    "Times the query stopped with an error (the job restarts it from its checkpoint).",
    ["query"],
)
STREAM_RECORDS = Counter(
    "pulsecast_stream_records_total",
    "Records the job's batch writer judged, valid or not.",
    ["stream"],
)
STREAM_DEAD_LETTERS = Counter(
    "pulsecast_stream_dead_letters_total",
    "Records the job sent to <stream>.dlq, by reason (late: older than the allowed lateness).",
    ["stream", "reason"],
)
STREAM_END_TO_END_SECONDS = Histogram(
    "pulsecast_stream_end_to_end_latency_seconds",
    "Time from an event's ingest to its aggregates being visible in the warehouse.",
    ["stream"],
    buckets=(0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
STREAM_LATENCY_OBJECTIVE = Gauge(
    "pulsecast_stream_latency_objective_seconds",
    "The objective for the p95 end-to-end latency (monitoring.latency_objective_s).",
    ["stream"],
)

# -- Models (live scoring and the registry) ---------------------------------------------------

MODEL_SCORED = Counter(
    "pulsecast_model_scored_total",
    "Windows the online detector scored.",
    ["stream"],
)
MODEL_ANOMALIES = Counter(
    "pulsecast_model_anomalies_total",
    "Windows the online detector flagged as anomalous.",
    ["stream"],
)
MODEL_FORECAST_ABS_ERROR = Histogram(
    "pulsecast_model_forecast_abs_error",
    "Absolute error of each live forecast once its horizon has passed, per payload field.",
    ["stream", "metric"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0),
)
MODEL_HOLDOUT_MAE = Gauge(
    "pulsecast_model_holdout_mae",
    "Mean absolute error of the serving forecaster on its holdout, per payload field.",
    ["stream", "metric"],
)
MODEL_VERSION = Gauge(
    "pulsecast_model_version",
    "Registry version of the model the job serves.",
    ["stream", "model"],
)
MODEL_LAST_TRAINED = Gauge(
    "pulsecast_model_last_trained_timestamp_seconds",
    "When the serving model was trained, Unix time.",
    ["stream", "model"],
)

# -- Alerts received by the monitor -----------------------------------------------------------

ALERTS_RECEIVED = Counter(
    "pulsecast_alerts_received_total",
    "Alert notifications the monitor received from Alertmanager, by status.",
    ["status"],
)


# -- Probe metrics: computed by the monitor at each scrape ------------------------------------


@dataclass(frozen=True)
class ProbeMetric:
    """A metric whose value is measured when scraped (by the monitor's probes).

    Attributes:
        name: The exposed name (a counter's ends in ``_total``).
        documentation: Its meaning.
        labels: Its label names.
        kind: ``gauge`` or ``counter``.
    """

    name: str
    documentation: str
    labels: tuple[str, ...] = ()
    kind: Literal["gauge", "counter"] = "gauge"

    def family(self, samples: Iterable[tuple[tuple[str, ...], float]]) -> Metric:
        """The metric family holding ``samples`` (label values, value)."""
        if self.kind == "counter":
            counter = CounterMetricFamily(
                self.name.removesuffix("_total"), self.documentation, labels=self.labels
            )
            for values, value in samples:
                counter.add_metric(list(values), value)
            return counter
        gauge = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, value in samples:
            gauge.add_metric(list(values), value)
        return gauge


SERVICE_UP = ProbeMetric(
    "pulsecast_service_up",
    "1 when the local server answers on its port, 0 when it does not.",
    ("service",),
)
KAFKA_CONSUMER_LAG = ProbeMetric(
    "pulsecast_kafka_consumer_lag_records",
    "Records of a topic partition the streaming query has not committed yet: the broker's "
    "end offset minus the offset of the query's latest committed checkpoint.",
    ("consumer", "topic", "partition"),
)
KAFKA_LOG_END_OFFSET = ProbeMetric(
    "pulsecast_kafka_log_end_offset_total",
    "End offset of each partition of the streams' topics: records ever written to it.",
    ("topic", "partition"),
    kind="counter",
)
DISK_FREE_BYTES = ProbeMetric(
    "pulsecast_disk_free_bytes",
    "Free space of the file system holding the data directory.",
)
DISK_SIZE_BYTES = ProbeMetric(
    "pulsecast_disk_size_bytes",
    "Size of the file system holding the data directory.",
)

PROBE_METRICS: tuple[ProbeMetric, ...] = (
    SERVICE_UP,
    KAFKA_CONSUMER_LAG,
    KAFKA_LOG_END_OFFSET,
    DISK_FREE_BYTES,
    DISK_SIZE_BYTES,
)

_RECORDED: tuple[MetricWrapperBase, ...] = (
    INGEST_REQUESTS,
    INGEST_EVENTS,
    INGEST_REJECTIONS,
    INGEST_REQUEST_SECONDS,
    INGEST_BATCH_EVENTS,
    INGEST_PRODUCE_ERRORS,
    STREAM_INPUT_ROWS,
    STREAM_INPUT_ROWS_PER_SECOND,
    STREAM_PROCESSED_ROWS_PER_SECOND,
    STREAM_BATCH_SECONDS,
    STREAM_TRIGGER_INTERVAL,
    STREAM_WATERMARK_DELAY,
    STREAM_STATE_ROWS,
    STREAM_STATE_MEMORY_BYTES,
    STREAM_ROWS_DROPPED_BY_WATERMARK,
    STREAM_SOURCE_LAG,
    STREAM_LAST_PROGRESS,
    STREAM_QUERY_ACTIVE,
    STREAM_QUERY_FAILURES,
    STREAM_RECORDS,
    STREAM_DEAD_LETTERS,
    STREAM_END_TO_END_SECONDS,
    STREAM_LATENCY_OBJECTIVE,
    MODEL_SCORED,
    MODEL_ANOMALIES,
    MODEL_FORECAST_ABS_ERROR,
    MODEL_HOLDOUT_MAE,
    MODEL_VERSION,
    MODEL_LAST_TRAINED,
    ALERTS_RECEIVED,
)


def exposed_names() -> frozenset[str]:
    """Every series name pulsecast exposes (``_total``, ``_bucket``, ``_sum``... included).

    What PromQL in rules and dashboards may refer to, besides Prometheus's own
    ``up`` and ``ALERTS``.
    """
    names = {probe.name for probe in PROBE_METRICS}
    for metric in _RECORDED:
        for family in metric.describe():
            names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return frozenset(names)


_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


# -- Recording helpers for live scoring and the registry --------------------------------------


def record_scores(stream: str, *, scored: int, flagged: int) -> None:
    """Count one scoring batch's scored and flagged windows."""
    MODEL_SCORED.labels(stream).inc(scored)
    MODEL_ANOMALIES.labels(stream).inc(flagged)


def record_forecast_errors(stream: str, metric: str, abs_errors: Iterable[float]) -> None:
    """Observe the absolute errors of resolved live forecasts of one payload field."""
    child = MODEL_FORECAST_ABS_ERROR.labels(stream, metric)
    for error in abs_errors:
        child.observe(error)


def record_model(
    stream: str,
    model: Literal["forecaster", "detector"],
    *,
    version: int,
    trained_at_s: float,
    holdout_mae: dict[str, float] | None = None,
) -> None:
    """Publish the model a stream is served by (call when the job loads a new one).

    Args:
        stream: The stream.
        model: Which model.
        version: Its registry version.
        trained_at_s: When it was trained, Unix time.
        holdout_mae: Its holdout error per payload field (forecasters).
    """
    MODEL_VERSION.labels(stream, model).set(version)
    MODEL_LAST_TRAINED.labels(stream, model).set(trained_at_s)
    for metric, mae in (holdout_mae or {}).items():
        MODEL_HOLDOUT_MAE.labels(stream, metric).set(mae)

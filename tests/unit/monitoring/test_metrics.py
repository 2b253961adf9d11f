"""The metric catalogue: conventional names, bounded labels, every metric documented."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from pulsecast.monitoring import metrics
from pulsecast.monitoring.metrics import PROBE_METRICS, exposed_names
from tests.conftest import REPO

#: Labels whose values could be unbounded: never on a metric.
UNBOUNDED = {"event_id", "key", "entity_id", "message", "error", "field", "path", "url", "id"}


def families() -> set[str]:
    names = set()
    for name in exposed_names():
        for suffix in ("_bucket", "_sum", "_count"):
            name = name.removesuffix(suffix)
        names.add(name)
    return names


def test_metric_names_follow_prometheus_conventions() -> None:
    for name in families():
        assert name.startswith("pulsecast_"), name
        assert name == name.lower(), name
    for probe in PROBE_METRICS:
        assert probe.name.endswith("_total") == (probe.kind == "counter"), probe.name


def test_metric_labels_are_bounded() -> None:
    catalogue = [getattr(metrics, n) for n in metrics.__all__ if n.isupper()]
    recorded = [m for m in catalogue if isinstance(m, MetricWrapperBase)]
    assert len(recorded) == 30
    for metric in recorded:
        assert not set(metric._labelnames) & UNBOUNDED, f"{metric}: unbounded labels"
    for probe in PROBE_METRICS:
        assert not set(probe.labels) & UNBOUNDED, f"{probe.name}: unbounded labels"


def test_every_metric_is_documented() -> None:
    doc = (REPO / "docs" / "operations.md").read_text()
    missing = sorted(name for name in families() if f"`{name}`" not in doc)
    assert missing == []


def test_model_helpers_record_under_the_catalogues_names() -> None:
    stream = f"s{uuid.uuid4().hex[:8]}"
    metrics.record_scores(stream, scored=200, flagged=3)
    metrics.record_forecast_errors(stream, "cpu_util", [1.0, 3.0])
    metrics.record_model(
        stream, "forecaster", version=7, trained_at_s=1_795_842_000, holdout_mae={"cpu_util": 1.5}
    )

    def value(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"stream": stream, **labels})

    assert value("pulsecast_model_scored_total") == 200
    assert value("pulsecast_model_anomalies_total") == 3
    assert value("pulsecast_model_forecast_abs_error_sum", metric="cpu_util") == 4.0
    assert value("pulsecast_model_holdout_mae", metric="cpu_util") == 1.5
    assert value("pulsecast_model_version", model="forecaster") == 7
    assert value("pulsecast_model_last_trained_timestamp_seconds", model="forecaster") == (
        1_795_842_000
    )
    assert f'pulsecast_model_version{{model="forecaster",stream="{stream}"}} 7.0' in (
        generate_latest().decode()
    )

"""Rates and lag for ``pulsecast status``, read from the components' ``/metrics``.

Three components serve the figures an operator looks at first:

- the HTTP ingest (``<ingest.url>/metrics``): events accepted per second;
- the streaming job (``monitoring.job_metrics_port``): rows per second its
  latest micro-batch processed, the duration of its recent batches, the
  champion models it serves and, when the monitor is not running, Kafka lag
  and dead letters as the job sees them;
- the monitor (``monitoring.monitor_port``): Kafka consumer lag per stream
  (from the job's checkpoint, so it counts while the job is stopped) and the
  rate of records written to each ``<stream>.dlq``.

:func:`measure_rates` scrapes each endpoint twice, ``interval_s`` apart, for
the counters' rates (once only when nothing answers); :func:`compute_rates`
turns two scrapes into a :class:`RatesReport`, a pure function tested with
sample ``/metrics`` text; :func:`format_rates` lays it out as aligned text, one
line per stream. A component that does not answer is reported ``not running``
and its columns show ``-``.

Needs ``httpx`` and ``prometheus_client``'s text parser; no Kafka, no JVM.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from pulsecast.config import Settings
from pulsecast.security.errors import CertificateError
from pulsecast.security.tls import http_verify

__all__ = [
    "COMPONENTS",
    "RatesReport",
    "StreamRates",
    "compute_rates",
    "format_rates",
    "format_services",
    "measure_rates",
    "metrics_urls",
    "parse_metrics",
]

#: The components whose ``/metrics`` status reads, in display order.
COMPONENTS = ("ingest", "stream", "monitor")
_TITLES = {"ingest": "ingest", "stream": "stream job", "monitor": "monitor"}

#: One series: its labels and value.
Sample = tuple[dict[str, str], float]
#: A parsed ``/metrics`` page: sample name (``_total``, ``_sum``... included) → series.
Samples = dict[str, list[Sample]]
#: Fetches one URL's text, or None when nothing answers.
Fetch = Callable[[str], str | None]

_NONE = "-"
_MISSING = "not running"


def parse_metrics(text: str) -> Samples:
    """Every sample of a ``/metrics`` page, by sample name.

    Args:
        text: Prometheus's text exposition format.

    Returns:
        Sample name → ``(labels, value)`` of each of its series.

    Raises:
        ValueError: The text is not in the exposition format.
    """
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return samples


def _sum(samples: Samples | None, name: str, **match: str) -> float | None:
    """Sum of the series of ``name`` whose labels include ``match``; None when there is none."""
    if samples is None:
        return None
    found = [
        value
        for labels, value in samples.get(name, [])
        if all(labels.get(k) == v for k, v in match.items())
    ]
    return sum(found) if found else None


def _rate(
    first: Samples | None, second: Samples | None, interval_s: float, name: str, **match: str
) -> float | None:
    """Per-second increase of a counter between two scrapes (a reset counts from zero)."""
    after = _sum(second, name, **match)
    if after is None:
        return None
    before = _sum(first, name, **match)
    if before is None or interval_s <= 0:
        return None
    increase = after - before if after >= before else after
    return increase / interval_s


@dataclass(frozen=True)
class StreamRates:
    """One stream's figures; None where no running component knows it.

    Attributes:
        stream: The stream.
        events_in_per_s: Events the HTTP ingest accepted per second.
        rows_per_s: Rows per second the job's latest micro-batch processed.
        batch_s: Mean duration of the job's micro-batches that ended between
            the two scrapes (with one, the latest batch's), else of all its batches.
        lag_records: Records of ``<stream>.events`` the job has not committed.
        dlq_per_s: Records per second sent to ``<stream>.dlq``.
        models: Registry version of each model the job serves (``forecaster``, ``detector``).
    """

    stream: str
    events_in_per_s: float | None = None
    rows_per_s: float | None = None
    batch_s: float | None = None
    lag_records: int | None = None
    dlq_per_s: float | None = None
    models: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RatesReport:
    """What ``pulsecast status`` shows below the servers.

    Attributes:
        running: Component (see :data:`COMPONENTS`) → whether its ``/metrics`` answered.
        urls: Component → the ``/metrics`` URL asked.
        interval_s: Seconds between the two scrapes the rates come from.
        streams: One entry per configured stream.
    """

    running: dict[str, bool]
    urls: dict[str, str]
    interval_s: float
    streams: list[StreamRates]

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON output."""
        return {
            "components": {
                name: {"running": self.running.get(name, False), "url": url}
                for name, url in self.urls.items()
            },
            "interval_s": self.interval_s,
            "streams": [asdict(s) for s in self.streams],
        }


def _batch_s(first: Samples | None, second: Samples | None, query: str) -> float | None:
    """Mean batch duration over the scrapes' interval, else over the job's life."""
    name = "pulsecast_stream_batch_duration_seconds"
    total, count = (
        _sum(second, f"{name}_sum", query=query),
        _sum(second, f"{name}_count", query=query),
    )
    if total is None or not count:
        return None
    before = _sum(first, f"{name}_sum", query=query), _sum(first, f"{name}_count", query=query)
    if before[0] is not None and before[1] is not None and count > before[1]:
        return (total - before[0]) / (count - before[1])
    return total / count


def _models(job: Samples | None, stream: str) -> dict[str, int]:
    if job is None:
        return {}
    return {
        labels["model"]: int(value)
        for labels, value in job.get("pulsecast_model_version", [])
        if labels.get("stream") == stream and "model" in labels
    }


def _lag(monitor: Samples | None, job: Samples | None, stream: str) -> int | None:
    """The monitor's lag (from the checkpoint), else what the job's latest batch left unread."""
    lag = _sum(monitor, "pulsecast_kafka_consumer_lag_records", consumer=f"pulsecast-{stream}")
    if lag is None:
        lag = _sum(job, "pulsecast_stream_source_lag_records", query=f"pulsecast-{stream}")
    return None if lag is None else int(lag)


def _dlq(
    first: Mapping[str, Samples | None],
    second: Mapping[str, Samples | None],
    interval_s: float,
    stream: str,
) -> float | None:
    """Dead letters per second: written to the DLQ topic (monitor), else the job's and ingest's."""
    topic = _rate(
        first.get("monitor"),
        second.get("monitor"),
        interval_s,
        "pulsecast_kafka_log_end_offset_total",
        topic=f"{stream}.dlq",
    )
    if topic is not None or second.get("monitor") is not None:
        return topic
    parts = [
        _rate(
            first.get("stream"),
            second.get("stream"),
            interval_s,
            "pulsecast_stream_dead_letters_total",
            stream=stream,
        ),
        _rate(
            first.get("ingest"),
            second.get("ingest"),
            interval_s,
            "pulsecast_ingest_events_total",
            stream=stream,
            status="rejected",
        ),
    ]
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


def compute_rates(
    streams: Iterable[str],
    first: Mapping[str, Samples | None],
    second: Mapping[str, Samples | None],
    *,
    interval_s: float,
    urls: Mapping[str, str] | None = None,
) -> RatesReport:
    """The figures of ``status`` from two scrapes of each component.

    Args:
        streams: The configured streams.
        first: Component → its first scrape (None: it did not answer).
        second: Component → its second scrape, ``interval_s`` later.
        interval_s: Seconds between the scrapes.
        urls: Component → its ``/metrics`` URL (for the report).

    Returns:
        The report; a component is running when its second scrape answered.
    """
    ingest, job, monitor = (second.get(name) for name in COMPONENTS)
    rows = []
    for stream in streams:
        query = f"pulsecast-{stream}"
        rows.append(
            StreamRates(
                stream=stream,
                events_in_per_s=_rate(
                    first.get("ingest"),
                    ingest,
                    interval_s,
                    "pulsecast_ingest_events_total",
                    stream=stream,
                    status="accepted",
                ),
                rows_per_s=_sum(job, "pulsecast_stream_processed_rows_per_second", query=query),
                batch_s=_batch_s(first.get("stream"), job, query),
                lag_records=_lag(monitor, job, stream),
                dlq_per_s=_dlq(first, second, interval_s, stream),
                models=_models(job, stream),
            )
        )
    return RatesReport(
        running={name: second.get(name) is not None for name in COMPONENTS},
        urls=dict(urls or {}),
        interval_s=interval_s,
        streams=rows,
    )


def metrics_urls(settings: Settings) -> dict[str, str]:
    """Component → the ``/metrics`` URL it serves with ``settings`` (those that serve one)."""
    mon = settings.monitoring
    urls = {}
    if settings.ingest.enabled:
        urls["ingest"] = f"{settings.ingest.url}/metrics"
    if mon.job_metrics_port:
        urls["stream"] = f"http://{mon.host}:{mon.job_metrics_port}/metrics"
    urls["monitor"] = f"{mon.monitor_url}/metrics"
    return urls


def _fetch(url: str, *, verify: ssl.SSLContext | bool = True) -> str | None:
    try:
        reply = httpx.get(url, timeout=2.0, verify=verify)
    except httpx.HTTPError:
        return None
    return reply.text if reply.status_code == 200 else None


def _scrape(urls: Mapping[str, str], fetch: Fetch) -> dict[str, Samples | None]:
    scraped: dict[str, Samples | None] = {}
    for name, url in urls.items():
        text = fetch(url)
        try:
            scraped[name] = None if text is None else parse_metrics(text)
        except ValueError:
            scraped[name] = None  # something else answers on the port
    return scraped


def measure_rates(
    settings: Settings, *, interval_s: float = 1.0, fetch: Fetch | None = None
) -> RatesReport:
    """Scrape every component twice, ``interval_s`` apart, and compute the report.

    Args:
        settings: The platform's settings (the components' addresses, the streams).
        interval_s: Seconds between the two scrapes (no wait when nothing answers).
        fetch: Reads one URL (default: an HTTP GET with a 2 s timeout, trusting
            the local CA when ``security.enabled``: the ingest serves HTTPS then).

    Returns:
        The report.
    """
    if fetch is None:
        try:
            verify = http_verify(settings)
        except CertificateError:
            verify = True  # no trust bundle: an HTTPS endpoint counts as not running
        fetch = functools.partial(_fetch, verify=verify)
    get = fetch
    urls = metrics_urls(settings)
    first = _scrape(urls, get)
    if any(samples is not None for samples in first.values()):
        started = time.monotonic()
        time.sleep(interval_s)
        second = _scrape(urls, get)
        waited = time.monotonic() - started
    else:
        second, waited = first, 0.0
    return compute_rates(settings.streams, first, second, interval_s=waited, urls=urls)


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return _NONE
    if value >= 100 or value == int(value):
        return f"{value:,.0f}{unit}"
    return f"{value:,.1f}{unit}"


def _seconds(value: float | None) -> str:
    return _NONE if value is None else f"{value:.2f} s"


def format_rates(report: RatesReport) -> list[str]:
    """The report as aligned text: a line of components, a header, one line per stream."""
    states = ", ".join(
        f"{_TITLES[name]} {'running' if report.running.get(name) else _MISSING}"
        for name in COMPONENTS
        if name in report.urls
    )
    lines = [f"rates and lag ({states})"]
    header = ("stream", "events/s in", "rows/s", "batch", "kafka lag", "dlq/s", "model")
    table = [header]
    for s in report.streams:
        models = ", ".join(f"{kind} v{version}" for kind, version in sorted(s.models.items()))
        table.append(
            (
                s.stream,
                _number(s.events_in_per_s),
                _number(s.rows_per_s),
                _seconds(s.batch_s),
                _NONE if s.lag_records is None else f"{s.lag_records:,}",
                _number(s.dlq_per_s),
                models or _NONE,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:-1], strict=True)]
        cells.append(row[-1])
        lines.append("  ".join(cells).rstrip())
    return lines


def format_services(statuses: Iterable[Any]) -> list[str]:
    """One aligned line per server: name, state, address, version, pid and detail.

    Args:
        statuses: :class:`~pulsecast.services.base.ServiceStatus` objects (any
            object with ``name``, ``running``, ``address``, ``version``, ``pid``
            and ``detail``).
    """
    table = [
        (
            s.name,
            "running" if s.running else "stopped",
            s.address or "",
            s.version or "",
            f"pid {s.pid}" if s.pid else "",
            s.detail or "",
        )
        for s in statuses
    ]
    if not table:
        return []
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    return [
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True)), row[5]]
        ).rstrip()
        for row in table
    ]

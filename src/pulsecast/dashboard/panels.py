"""The data behind each panel of the live dashboard, as JSON-ready dictionaries.

Every panel reads the lake through the named analyses of
:mod:`pulsecast.analytics` on one :class:`~pulsecast.analytics.DuckDBEngine`
kept open for the life of the server (its tables stay open; each query reads
only the new Delta commits), and draws with :mod:`pulsecast.analytics.charts`.
A panel answers ``{"state": "ok" | "empty" | "error", "message": ..., ...}``:
``empty`` says what to run to get data, ``error`` what failed. Nothing here
raises for a missing table or a failed query, so one broken panel never blanks
the page. Needs ``plotly``; the model view needs the registry's MLflow.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from pulsecast.analytics import DuckDBEngine, MissingTableError, QueryError, charts, run_analysis
from pulsecast.config import Settings

if TYPE_CHECKING:
    import plotly.graph_objects as go
    import pyarrow as pa

__all__ = ["RANGES", "DashboardData", "PanelResult"]

log = logging.getLogger(__name__)

PanelResult = dict[str, Any]

#: The time ranges the page offers: the analyses' ``since`` value → label.
RANGES: dict[str, str] = {
    "15m": "last 15 minutes",
    "1h": "last hour",
    "6h": "last 6 hours",
    "24h": "last 24 hours",
    "7d": "last 7 days",
    "min": "everything",
}

_RUN_JOB = "run `pulsecast stream run` (and send events: `pulsecast produce simulator`)"
_AVERAGE_S = 300  # the overview's rates are averaged over the last five minutes
_MODELS_TTL_S = 30.0  # the registry changes rarely: ask it at most this often
_LAG_TTL_S = 15.0


def _figure_json(figure: go.Figure) -> dict[str, Any]:
    """A figure as the ``{"data", "layout"}`` dictionary Plotly.react takes."""
    spec: dict[str, Any] = json.loads(figure.to_json())
    return spec


def _iso(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dictionaries of JSON values (times as ISO text)."""
    return [{k: _iso(v) for k, v in row.items()} for row in table.to_pylist()]


def _empty(title: str, message: str) -> PanelResult:
    return {
        "state": "empty",
        "message": message,
        "figure": _figure_json(charts.empty_figure(title, message)),
    }


def _error(message: str) -> PanelResult:
    return {"state": "error", "message": message}


class DashboardData:
    """The panels' data over one lake (see the module's description).

    Args:
        settings: The platform's settings: the lake, the streams, the registry.
        stream: The stream shown when a request names none.
        now: A fixed "now" for the analyses' ages (tests); default: the clock.
    """

    def __init__(
        self, settings: Settings, *, stream: str | None = None, now: datetime | None = None
    ) -> None:
        self.settings = settings
        self.stream = stream or settings.dashboard.stream
        if self.stream not in settings.streams:
            known = ", ".join(sorted(settings.streams))
            msg = f"stream {self.stream!r} is not configured; streams: {known}"
            raise ValueError(msg)
        self._now = now
        self._engine = DuckDBEngine(settings)
        self._lock = threading.Lock()  # one DuckDB connection: one query at a time
        self._cache: dict[tuple[str, str], tuple[float, PanelResult]] = {}
        self._registry: Any = None
        self._probes: Any = None

    # -- plumbing ----------------------------------------------------------------------------

    def now(self) -> datetime:
        """What ages (``since=1h``) are relative to."""
        return self._now or datetime.now(UTC)

    def close(self) -> None:
        """Close the DuckDB engine and the Kafka consumer of the lag probe."""
        with self._lock:
            self._engine.close()
            if self._probes is not None:
                self._probes.close()
                self._probes = None

    def _query(self, name: str, params: Mapping[str, object]) -> pa.Table:
        with self._lock:
            result = run_analysis(
                self.settings, name, dict(params), engine=self._engine, now=self.now()
            )
        return result.table

    def _panel(self, build: Callable[[], PanelResult]) -> PanelResult:
        """``build()``, with a missing table as an empty state and a failure as an error."""
        started = time.perf_counter()
        try:
            panel = build()
        except MissingTableError as exc:
            panel = {"state": "empty", "message": f"no data yet: {exc}"}
        except QueryError as exc:
            panel = _error(str(exc))
        except Exception as exc:
            log.exception("dashboard panel failed")
            panel = _error(f"{type(exc).__name__}: {exc}")
        panel["query_ms"] = round(1000 * (time.perf_counter() - started), 1)
        return panel

    def _cached(
        self, key: tuple[str, str], ttl_s: float, build: Callable[[], PanelResult]
    ) -> PanelResult:
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < ttl_s:
            return hit[1]
        panel = self._panel(build)
        self._cache[key] = (time.monotonic(), panel)
        return panel

    def _stream(self, stream: str | None) -> str:
        return stream or self.stream

    def _chart(
        self,
        analysis: str,
        params: Mapping[str, object],
        *,
        title: str,
        empty: str,
        draw: Callable[[pa.Table], go.Figure],
        rows_as: str = "rows",
    ) -> PanelResult:
        """A panel of one analysis drawn by one chart, with its rows under ``rows_as``."""
        rows = self._query(analysis, params)
        if rows.num_rows == 0:
            panel = _empty(title, empty)
        else:
            panel = {"state": "ok", "message": "", "figure": _figure_json(draw(rows))}
        panel[rows_as] = _rows(rows)
        return panel

    # -- panels ------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        """What the page needs to draw itself: streams, ranges, refresh interval."""
        return {
            "stream": self.stream,
            "streams": sorted(self.settings.streams),
            "ranges": RANGES,
            "refresh_s": self.settings.dashboard.refresh_s,
        }

    def overview(self, *, since: str = "1h", stream: str | None = None) -> PanelResult:
        """Events/s in and landed, freshness, rejected rate, active entities, and a chart."""
        name = self._stream(stream)

        def build() -> PanelResult:
            rows = self._query("throughput", {"stream": name, "since": since})
            if rows.num_rows == 0:
                return _empty("Events per second", f"no events in this range: {_RUN_JOB}")
            minutes = rows["minute"].to_pylist()
            received = rows["received"].to_pylist()
            landed = rows["landed"].to_pylist()
            entities = rows["entities"].to_pylist()
            recent = self.now() - timedelta(seconds=_AVERAGE_S)
            kpis: dict[str, Any] = {
                "in_eps": sum(r for m, r in zip(minutes, received, strict=True) if m >= recent)
                / _AVERAGE_S,
                "processed_eps": sum(c for m, c in zip(minutes, landed, strict=True) if m >= recent)
                / _AVERAGE_S,
                "received": sum(received),
                "landed": sum(landed),
                "entities": next((e for e in reversed(entities) if e), 0),
                "last_minute": _iso(minutes[-1]),
            }
            kpis.update(self._quality_kpis(name, since))
            kpis.update(self._freshness_kpis(name, since))
            figure = _throughput_figure(minutes, received, landed)
            return {"state": "ok", "message": "", "kpis": kpis, "figure": _figure_json(figure)}

        return self._panel(build)

    def _quality_kpis(self, stream: str, since: str) -> dict[str, Any]:
        try:
            quality = self._query("data_quality", {"stream": stream, "since": since})
        except QueryError as exc:
            log.info("no data quality for the overview: %s", exc)
            return {"rejected_rate": None, "late_rate": None}
        received = sum(quality["received"].to_pylist())
        accepted = sum(quality["accepted"].to_pylist())
        return {
            "rejected_rate": sum(quality["rejected"].to_pylist()) / received if received else None,
            "late_rate": sum(quality["late"].to_pylist()) / accepted if accepted else None,
        }

    def _freshness_kpis(self, stream: str, since: str) -> dict[str, Any]:
        try:
            fresh = self._query("freshness", {"stream": stream, "since": since})
        except QueryError as exc:
            log.info("no freshness for the overview: %s", exc)
            fresh = None
        if fresh is None or fresh.num_rows == 0:
            return {"lag_p50_s": None, "lag_p95_s": None, "pipeline_p95_s": None}
        last = fresh.slice(fresh.num_rows - 1).to_pylist()[0]
        return {k: _number(last[k]) for k in ("lag_p50_s", "lag_p95_s", "pipeline_p95_s")}

    def series(self, *, since: str = "24h", stream: str | None = None) -> PanelResult:
        """The scored series (entity, metric) to pick from, with windows and flags."""
        name = self._stream(stream)

        def build() -> PanelResult:
            rows = self._query("scored_series", {"stream": name, "since": since})
            if rows.num_rows == 0:
                return {"state": "empty", "message": f"no scores yet: {_RUN_JOB}", "series": []}
            return {"state": "ok", "message": "", "series": _rows(rows)}

        return self._panel(build)

    def entity(
        self, *, key: str, metric: str, since: str = "24h", stream: str | None = None
    ) -> PanelResult:
        """One entity's series: values, anomaly markers, live forecasts with an error band."""
        name = self._stream(stream)

        def build() -> PanelResult:
            if not key or not metric:
                return _empty("Entity", f"no scores yet: {_RUN_JOB}")
            params = {"stream": name, "since": since, "key": key, "metric": metric}
            rows = self._query("recent_scores", params)
            if rows.num_rows == 0:
                return _empty(
                    f"{key}: {metric}",
                    f"no scores of {key} {metric} in this range: pick a longer range",
                )
            rows = rows.sort_by([("window_start", "ascending")])
            mae = self._mae(name, since, key, metric)
            figure = _entity_figure(rows, key=key, metric=metric, mae=mae)
            starts = rows["window_start"].to_pylist()
            return {
                "state": "ok",
                "message": "",
                "points": rows.num_rows,
                "flags": sum(bool(f) for f in rows["flagged"].to_pylist()),
                "last_window": _iso(starts[-1]),
                "mae": mae,
                "figure": _figure_json(figure),
            }

        return self._panel(build)

    def _mae(self, stream: str, since: str, key: str, metric: str) -> float | None:
        params = {"stream": stream, "since": since, "key": key, "metric": metric}
        try:
            errors = self._query("forecast_error", params)
        except QueryError as exc:
            log.info("no forecast error for the band: %s", exc)
            return None
        counts, maes = errors["forecasts"].to_pylist(), errors["mae"].to_pylist()
        total = sum(counts)
        if not total:
            return None
        return float(sum(c * m for c, m in zip(counts, maes, strict=True)) / total)

    def alerts(self, *, since: str = "24h", stream: str | None = None) -> PanelResult:
        """The newest flags of the live detector, and Alertmanager's recorded alerts."""
        name = self._stream(stream)

        def build() -> PanelResult:
            params = {"stream": name, "since": since, "min_score": 0.5, "limit": 50}
            rows = self._query("recent_scores", params)
            alerts = [
                {k: row[k] for k in ("window_start", "key", "metric", "value", "score", "forecast")}
                for row in _rows(rows)
            ]
            if not alerts:
                return {
                    "state": "empty",
                    "message": "no anomalies flagged in this range",
                    "alerts": [],
                    "alertmanager": self._alertmanager(),
                }
            return {
                "state": "ok",
                "message": "",
                "alerts": alerts,
                "alertmanager": self._alertmanager(),
            }

        return self._panel(build)

    def _alertmanager(self) -> list[dict[str, Any]]:
        from pulsecast.monitoring import read_alerts

        try:
            recorded = read_alerts(self.settings, limit=20)
        except (OSError, ValueError) as exc:
            log.warning("cannot read the recorded alerts: %s", exc)
            return []
        return [
            {
                "received_at": a.received_at,
                "status": a.status,
                "alertname": a.alertname,
                "severity": a.severity,
                "summary": a.annotations.get("summary", ""),
            }
            for a in reversed(recorded)
        ]

    def models(self, *, since: str = "24h", stream: str | None = None) -> PanelResult:
        """Champion versions, the registry's versions and the live forecast error."""
        name = self._stream(stream)
        registry = self._cached(("registry", name), _MODELS_TTL_S, lambda: self._versions(name))

        def build() -> PanelResult:
            return self._chart(
                "forecast_error",
                {"stream": name, "since": since},
                title="Live forecast error (MAE)",
                empty="no live forecast checked yet: train and promote a forecaster "
                "(`pulsecast train`), keep `pulsecast stream run` going",
                draw=charts.forecast_error_bars,
                rows_as="errors",
            )

        panel = self._panel(build)
        panel["registry"] = registry
        return panel

    def _versions(self, stream: str) -> PanelResult:
        from pulsecast.ml.registry import MODEL_KINDS, ModelRegistry

        if self._registry is None:
            self._registry = ModelRegistry(self.settings)
        versions = self._registry.versions(stream)
        champions = {
            kind: next((v.version for v in versions if v.kind == kind and v.champion), None)
            for kind in MODEL_KINDS
        }
        listed = [
            {
                "kind": v.kind,
                "version": v.version,
                "champion": v.champion,
                "created": v.created.isoformat(),
                "holdout_mae": _number(v.holdout_mae),
                "trigger": v.tags.get("trigger", ""),
            }
            for v in versions[:20]
        ]
        if not listed:
            return {
                "state": "empty",
                "message": "no model in the registry yet: `pulsecast train`",
                "champions": champions,
                "versions": [],
            }
        return {"state": "ok", "message": "", "champions": champions, "versions": listed}

    def quality(self, *, since: str = "24h", stream: str | None = None) -> PanelResult:
        """Records accepted, late and rejected (per reason) per hour, and the lag to the lake."""
        params = {"stream": self._stream(stream), "since": since}

        def reasons() -> pa.Table:
            return self._query("rejections", params)

        parts = [
            self._panel(partial(self._chart, analysis, params, title=title, empty=empty, draw=draw))
            for analysis, title, empty, draw in (
                (
                    "data_quality",
                    "Data quality",
                    "no records",
                    lambda rows: charts.data_quality_bars(rows, reasons()),
                ),
                ("freshness", "Freshness", "nothing landed", _freshness_figure),
            )
        ]
        for part in parts:
            if part["state"] == "empty" and not part["message"].startswith("no data yet"):
                part["message"] = f"{part['message']} in this range: {_RUN_JOB}"
        panel, panel["freshness"] = parts[0], parts[1]
        return panel

    def lag(self, *, stream: str | None = None) -> PanelResult:
        """Kafka records not yet committed by the stream's query (from its checkpoint)."""
        name = self._stream(stream)
        return self._cached(("lag", name), _LAG_TTL_S, lambda: self._lag(name))

    def _lag(self, stream: str) -> PanelResult:
        from pulsecast.monitoring.probes import Probes

        if self._probes is None:
            self._probes = Probes(self.settings)
        wanted = f"pulsecast-{stream}"
        total: float | None = None
        for family in self._probes.collect():
            if family.name != "pulsecast_kafka_consumer_lag_records":
                continue
            for sample in family.samples:
                if sample.labels.get("consumer") == wanted:
                    total = (total or 0.0) + sample.value
        if total is None:
            return {"state": "empty", "message": "Kafka or the job's checkpoint is not reachable"}
        return {"state": "ok", "message": "", "lag_records": int(total)}


def _freshness_figure(table: pa.Table) -> go.Figure:
    """``freshness`` per hour; an hour on each side of a lone hour (else its axis is 1 ms wide)."""
    figure = charts.freshness_lines(table)
    hours = table["hour"].to_pylist()
    if len(hours) == 1:
        figure.update_xaxes(range=[hours[0] - timedelta(hours=1), hours[0] + timedelta(hours=1)])
    return figure


def _throughput_figure(minutes: list[Any], received: list[int], landed: list[int]) -> go.Figure:
    import plotly.graph_objects as go

    figure = charts.empty_figure("Events per second, per minute", "")
    figure.layout.annotations = ()
    figure.update_xaxes(visible=True)
    figure.update_yaxes(visible=True, title={"text": "events/s"}, rangemode="tozero")
    figure.add_trace(
        go.Scatter(x=minutes, y=[r / 60 for r in received], name="in (Kafka)", mode="lines+markers")
    )
    figure.add_trace(
        go.Scatter(
            x=minutes, y=[c / 60 for c in landed], name="processed (lake)", mode="lines+markers"
        )
    )
    return figure


def _entity_figure(rows: pa.Table, *, key: str, metric: str, mae: float | None) -> go.Figure:
    import plotly.graph_objects as go

    figure = charts.empty_figure(f"{key}: {metric}", "")
    figure.layout.annotations = ()
    figure.update_xaxes(visible=True, title={"text": "window start (UTC)"})
    figure.update_yaxes(visible=True, title={"text": metric})
    starts = rows["window_start"].to_pylist()
    values = rows["value"].to_pylist()
    scores = rows["score"].to_pylist()
    figure.add_trace(
        go.Scatter(
            x=starts,
            y=values,
            name="value",
            mode="lines+markers",
            customdata=scores,
            hovertemplate="%{x}: %{y:.4g} (score %{customdata:.2f})<extra></extra>",
            line={"color": "#3b6ea5"},
            marker={"size": 4},
        )
    )
    # A forecast made at window t is the mean of the horizon after t's end: drawn at the
    # middle of that horizon, so that it lines up with the values it forecasts.
    ahead = [
        (end + timedelta(minutes=h / 2), f)
        for end, f, h in zip(
            rows["window_end"].to_pylist(),
            rows["forecast"].to_pylist(),
            rows["horizon_min"].to_pylist(),
            strict=True,
        )
        if f is not None and h is not None
    ]
    if ahead:
        times = [t for t, _ in ahead]
        forecasts = [f for _, f in ahead]
        if mae is not None:
            figure.add_trace(
                go.Scatter(
                    x=times + times[::-1],
                    y=[f + mae for f in forecasts] + [f - mae for f in forecasts[::-1]],
                    name=f"forecast ± live MAE ({mae:.3g})",
                    fill="toself",
                    fillcolor="rgba(230, 162, 60, 0.2)",
                    line={"width": 0},
                    hoverinfo="skip",
                )
            )
        figure.add_trace(
            go.Scatter(
                x=times,
                y=forecasts,
                name="forecast",
                mode="lines",
                line={"color": "#e6a23c", "dash": "dash"},
            )
        )
    flagged = [i for i, f in enumerate(rows["flagged"].to_pylist()) if f]
    figure.add_trace(
        go.Scatter(
            x=[starts[i] for i in flagged],
            y=[values[i] for i in flagged],
            customdata=[scores[i] for i in flagged],
            name="anomaly",
            mode="markers",
            marker={"color": "#c0392b", "size": 11, "symbol": "x"},
            hovertemplate="anomaly %{x}: %{y:.4g} (score %{customdata:.2f})<extra></extra>",
        )
    )
    return figure

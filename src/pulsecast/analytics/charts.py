"""Plotly figures of the named analyses' results, for reports (and anything else that draws them).

Each function takes the Arrow table a named analysis returned (see
:mod:`pulsecast.analytics.named`) and returns a ``plotly`` figure; the data
goes to Plotly column by column, never row by row. :func:`empty_figure` is the
figure of a panel without data: it says why and what to run. Needs ``plotly``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "WEEKDAYS",
    "anomalies_table",
    "data_quality_bars",
    "empty_figure",
    "forecast_error_bars",
    "forecast_lines",
    "freshness_lines",
    "main_metric",
    "traffic_lines",
    "trend_bars",
    "weekday_heatmap",
]

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
    "legend": {"orientation": "h", "y": -0.2},
    "font": {"family": "Helvetica, Arial, sans-serif", "size": 13},
}


def _figure(title: str) -> go.Figure:
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.update_layout(title={"text": title}, **_LAYOUT)
    return figure


def _where(table: pa.Table, column: str, value: object) -> pa.Table:
    return table.filter(pc.equal(table[column], pa.scalar(value, table.schema.field(column).type)))


def _distinct(table: pa.Table, column: str) -> list[Any]:
    return sorted(pc.unique(table[column]).to_pylist(), key=lambda v: (v is None, v))


def main_metric(table: pa.Table) -> str | None:
    """The metric with the most readings in an ``entity_traffic`` result (ties: by name)."""
    if table.num_rows == 0:
        return None
    totals = table.group_by("metric").aggregate([("readings", "sum")])
    ranked = sorted(
        zip(totals["metric"].to_pylist(), totals["readings_sum"].to_pylist(), strict=True),
        key=lambda mt: (-mt[1], mt[0]),
    )
    return str(ranked[0][0])


def empty_figure(title: str, message: str) -> go.Figure:
    """A panel without data: the title and, in its middle, why and what to run."""
    figure = _figure(title)
    figure.add_annotation(
        text=message.replace("\n", "<br>"),
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font={"size": 15, "color": "#555"},
    )
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


def traffic_lines(table: pa.Table, metric: str, *, column: str = "readings") -> go.Figure:
    """``entity_traffic``: one line per entity of ``column`` per hour, for one metric."""
    import plotly.graph_objects as go

    rows = _where(table, "metric", metric)
    label = "readings per hour" if column == "readings" else f"hourly mean of {metric}"
    figure = _figure(f"{label.capitalize()} per entity ({metric})")
    for key in _distinct(rows, "key"):
        one = _where(rows, "key", key)
        figure.add_trace(
            go.Scatter(
                x=one["hour"].to_pylist(),
                y=one[column].to_pylist(),
                name=str(key),
                mode="lines+markers",
            )
        )
    figure.update_yaxes(title={"text": label})
    return figure


def trend_bars(table: pa.Table, metric: str) -> go.Figure:
    """``entity_trend``: change from the first hour to the last per entity, in percent."""
    import plotly.graph_objects as go

    rows = _where(table, "metric", metric)
    rows = rows.sort_by([("change_pct", "descending"), ("key", "ascending")])
    figure = _figure(f"Change of {metric} from first to last hour, per entity")
    figure.add_trace(
        go.Bar(
            x=rows["key"].to_pylist(),
            y=rows["change_pct"].to_pylist(),
            customdata=list(
                zip(
                    rows["slope_per_hour"].to_pylist(),
                    rows["first_hour_mean"].to_pylist(),
                    rows["last_hour_mean"].to_pylist(),
                    strict=True,
                )
            ),
            hovertemplate="%{x}: %{y:.2f} %<br>slope %{customdata[0]:.4g}/h"
            "<br>first hour %{customdata[1]:.4g}, last %{customdata[2]:.4g}<extra></extra>",
            marker={"color": "#3b6ea5"},
        )
    )
    figure.update_yaxes(title={"text": "change, %"})
    return figure


def weekday_heatmap(table: pa.Table, metric: str) -> go.Figure:
    """``heatmap``: readings by day of the week (rows) and hour of the day (columns)."""
    import plotly.graph_objects as go

    rows = _where(table, "metric", metric)
    grid: list[list[int | None]] = [[None] * 24 for _ in WEEKDAYS]
    for day, hour, readings in zip(
        rows["weekday"].to_pylist(),
        rows["hour"].to_pylist(),
        rows["readings"].to_pylist(),
        strict=True,
    ):
        grid[day][hour] = readings
    figure = _figure(f"Readings of {metric} by weekday and hour (UTC)")
    figure.add_trace(
        go.Heatmap(
            z=grid,
            x=list(range(24)),
            y=list(WEEKDAYS),
            colorscale="Blues",
            zmin=0,  # plotly.js scales from the data unless both ends are given
            zmax=max([v for row in grid for v in row if v is not None], default=1),
            hovertemplate="%{y} %{x}:00: %{z} readings<extra></extra>",
        )
    )
    figure.update_xaxes(title={"text": "hour of day"}, dtick=2)
    figure.update_yaxes(autorange="reversed")
    return figure


def anomalies_table(table: pa.Table) -> go.Figure:
    """``top_anomalies`` as a table, highest score first."""
    import plotly.graph_objects as go

    starts = [t.strftime("%Y-%m-%d %H:%M") for t in table["window_start"].to_pylist()]
    figure = _figure("Top anomaly scores")
    figure.add_trace(
        go.Table(
            header={
                "values": ["entity", "series", "window start (UTC)", "value", "score"],
                "fill_color": "#e8eef5",
                "align": "left",
            },
            cells={
                "values": [
                    table["key"].to_pylist(),
                    table["metric"].to_pylist(),
                    starts,
                    [f"{v:.4g}" for v in table["value"].to_pylist()],
                    [f"{v:.3f}" for v in table["score"].to_pylist()],
                ],
                "align": "left",
            },
        )
    )
    return figure


def forecast_lines(table: pa.Table) -> go.Figure:
    """``forecast_vs_actual`` for the entity and metric with the most checked forecasts."""
    import plotly.graph_objects as go

    counts = table.group_by(["key", "metric"]).aggregate([("forecast", "count")])
    best = sorted(
        zip(
            counts["key"].to_pylist(),
            counts["metric"].to_pylist(),
            counts["forecast_count"].to_pylist(),
            strict=True,
        ),
        key=lambda r: (-r[2], r[0], r[1]),
    )[0]
    rows = _where(_where(table, "key", best[0]), "metric", best[1])
    figure = _figure(f"Forecast vs actual: {best[0]}, {best[1]}")
    x = rows["window_start"].to_pylist()
    figure.add_trace(go.Scatter(x=x, y=rows["actual"].to_pylist(), name="actual", mode="lines"))
    figure.add_trace(
        go.Scatter(
            x=x,
            y=rows["forecast"].to_pylist(),
            name="forecast",
            mode="lines",
            line={"dash": "dash"},
        )
    )
    figure.update_xaxes(title={"text": "forecast made at (UTC)"})
    return figure


def forecast_error_bars(table: pa.Table) -> go.Figure:
    """``forecast_error``: mean absolute error per entity and metric, one bar group per model."""
    import plotly.graph_objects as go

    figure = _figure("Live forecast error (MAE) per entity and metric")
    for version in _distinct(table, "model_version"):
        if version is None:
            rows = table.filter(pc.is_null(table["model_version"]))
        else:
            rows = _where(table, "model_version", version)
        keys, metrics = rows["key"].to_pylist(), rows["metric"].to_pylist()
        labels = [f"{k} {m}" for k, m in zip(keys, metrics, strict=True)]
        figure.add_trace(go.Bar(x=labels, y=rows["mae"].to_pylist(), name=f"model v{version}"))
    figure.update_yaxes(title={"text": "mean absolute error"})
    return figure


#: Colours of the rejection reasons' bars, in the order reasons are first met (then reused).
_REJECTED_COLORS = ("#c0392b", "#8e44ad", "#d35400", "#7f8c8d", "#e74c3c", "#6c3483")


def data_quality_bars(table: pa.Table, reasons: pa.Table | None = None) -> go.Figure:
    """``data_quality``: per hour, records accepted on time, accepted late and rejected.

    With ``reasons`` (the ``rejections`` analysis over the same range), the
    rejected records are split into one bar per reason.
    """
    import plotly.graph_objects as go

    hours = table["hour"].to_pylist()
    on_time = pc.subtract(table["accepted"], table["late"]).to_pylist()
    figure = _figure("Records per hour of arrival: accepted, late, rejected")
    bars: list[tuple[str, list[Any], list[Any], str]] = [
        ("accepted on time", hours, on_time, "#3b6ea5"),
        ("accepted late", hours, table["late"].to_pylist(), "#e6a23c"),
    ]
    if reasons is None or reasons.num_rows == 0:
        bars.append(("rejected", hours, table["rejected"].to_pylist(), "#c0392b"))
    else:
        names = list(dict.fromkeys(reasons["reason"].to_pylist()))
        for i, reason in enumerate(names):
            rows = reasons.filter(pc.equal(reasons["reason"], reason))
            color = _REJECTED_COLORS[i % len(_REJECTED_COLORS)]
            bars.append(
                (
                    f"rejected: {reason}",
                    rows["hour"].to_pylist(),
                    rows["records"].to_pylist(),
                    color,
                )
            )
    for name, x, values, color in bars:
        figure.add_trace(go.Bar(x=x, y=values, name=name, marker={"color": color}))
    figure.update_layout(barmode="stack")
    figure.update_yaxes(title={"text": "records"})
    return figure


def freshness_lines(table: pa.Table) -> go.Figure:
    """``freshness``: lag from event time to the lake per hour (median, p95, worst)."""
    import plotly.graph_objects as go

    hours = table["hour"].to_pylist()
    figure = _figure("Lag from event time to the lake, per hour written")
    for column, name in (
        ("lag_p50_s", "median"),
        ("lag_p95_s", "p95"),
        ("lag_max_s", "worst"),
        ("pipeline_p95_s", "p95 from ingest (the platform's part)"),
    ):
        figure.add_trace(
            go.Scatter(x=hours, y=table[column].to_pylist(), name=name, mode="lines+markers")
        )
    figure.update_yaxes(title={"text": "seconds"}, rangemode="tozero")
    return figure

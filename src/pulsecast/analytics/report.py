"""Static reports: the named analyses of one stream as an HTML page and PNG charts.

``pulsecast report --out DIR`` runs the analyses of :data:`SECTIONS` over one
stream and time range (one engine, tables opened once) and writes:

- ``DIR/report.html``: one self-contained page (plotly.js inlined, no network
  needed to open it), each section with its chart, what it shows, and the
  command that reruns its analysis;
- ``DIR/<section>.png``: the same charts as images, rendered by Kaleido with
  the machine's Chromium (no download; mathjax off, plotly.js from the
  ``plotly`` package).

A section without data (a table the streaming job has not created yet, or no
rows in the range) is still there, saying so and what to run; a section whose
query fails shows the error. Needs ``plotly`` and, for PNGs, ``kaleido`` and
Chromium (``apt-get install chromium``).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pulsecast.analytics import charts
from pulsecast.analytics.errors import MissingTableError, ParamError, QueryError, ReportError
from pulsecast.analytics.named import (
    TIMESTAMP_MAX,
    TIMESTAMP_MIN,
    bind,
    get_analysis,
    run_analysis,
)
from pulsecast.analytics.sql import Engine, open_engine
from pulsecast.config import Settings

if TYPE_CHECKING:
    import plotly.graph_objects as go
    import pyarrow as pa

__all__ = ["SECTIONS", "Panel", "Report", "Section", "write_report"]

log = logging.getLogger(__name__)

_PNG_SIZE = {"width": 1100, "height": 500}

_STREAM_JOB = (
    "Send events (pulsecast produce simulator) and run the streaming job "
    "(pulsecast stream run), or widen --since."
)
_FORECASTS = (
    "Live forecasts need a promoted forecaster (pulsecast train, pulsecast models promote) "
    "and the streaming job with ml.live_forecasts on; a forecast shows here once its "
    "horizon has passed."
)


@dataclass(frozen=True)
class Section:
    """One section of the report.

    Attributes:
        id: Its anchor and PNG file name.
        title: Its heading.
        analysis: The named analysis behind it.
        hint: What to do when it has no data in the range.
        hint_missing: What to add when a table it reads does not exist yet
            (after what creates the table).
    """

    id: str
    title: str
    analysis: str
    hint: str
    hint_missing: str = "Then send events (pulsecast produce simulator)."


SECTIONS = (
    Section("traffic", "Traffic per entity", "entity_traffic", _STREAM_JOB),
    Section("trend", "Trend per entity", "entity_trend", _STREAM_JOB),
    Section("heatmap", "Weekday and hour heatmap", "heatmap", _STREAM_JOB),
    Section(
        "anomalies",
        "Top anomalies",
        "top_anomalies",
        "No window scored 0.5 or more in this range: nothing was flagged.",
    ),
    Section("forecast", "Forecast vs actual", "forecast_vs_actual", _FORECASTS, _FORECASTS),
    Section(
        "forecast_error", "Forecast error per entity", "forecast_error", _FORECASTS, _FORECASTS
    ),
    Section("data_quality", "Data quality", "data_quality", _STREAM_JOB),
    Section("freshness", "Freshness: event time to lake", "freshness", _STREAM_JOB),
)


@dataclass
class Panel:
    """What one section showed.

    Attributes:
        section: The section.
        status: ``ok``, ``empty`` (no data: ``message`` says what to run) or
            ``error`` (``message`` is the error).
        rows: Rows the analysis returned.
        message: Why there is no chart of data.
        command: The ``pulsecast sql --run`` command that reruns the analysis.
    """

    section: Section
    status: str
    rows: int = 0
    message: str = ""
    command: str = ""
    figure: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class Report:
    """The files a report wrote, and what each section showed."""

    html: Path
    pngs: list[Path]
    panels: list[Panel]


def _command(analysis: str, params: dict[str, str]) -> str:
    args = " ".join(f"--param {k}={v}" for k, v in params.items() if v)
    return f"pulsecast sql --run {analysis} {args}".rstrip()


def _panels(settings: Settings, engine: Any, params: dict[str, str], now: datetime) -> list[Panel]:
    results: dict[str, pa.Table] = {}
    panels: list[Panel] = []
    for section in SECTIONS:
        analysis = get_analysis(section.analysis)
        wanted = {p.name: params[p.name] for p in analysis.params if p.name in params}
        panel = Panel(section, "ok", command=_command(section.analysis, wanted))
        try:
            table = run_analysis(settings, section.analysis, wanted, engine=engine, now=now).table
        except MissingTableError as exc:
            panel.status = "empty"
            panel.message = f"No data yet: {exc}. {section.hint_missing}"
        except QueryError as exc:
            panel.status, panel.message = "error", f"The analysis failed: {exc}"
        else:
            results[section.analysis] = table
            panel.rows = table.num_rows
            if table.num_rows == 0:
                panel.status, panel.message = "empty", f"No data in this range. {section.hint}"
        panels.append(panel)
    metric = charts.main_metric(results["entity_traffic"]) if "entity_traffic" in results else None
    draw: dict[str, Callable[[pa.Table], go.Figure]] = {
        "entity_traffic": lambda t: charts.traffic_lines(t, metric or ""),
        "entity_trend": lambda t: charts.trend_bars(t, metric or ""),
        "heatmap": lambda t: charts.weekday_heatmap(t, metric or ""),
        "top_anomalies": charts.anomalies_table,
        "forecast_vs_actual": charts.forecast_lines,
        "forecast_error": charts.forecast_error_bars,
        "data_quality": charts.data_quality_bars,
        "freshness": charts.freshness_lines,
    }
    for panel in panels:
        if panel.status == "ok":
            panel.figure = draw[panel.section.analysis](results[panel.section.analysis])
        else:
            panel.figure = charts.empty_figure(panel.section.title, _wrap(panel.message))
    return panels


def _wrap(text: str, width: int = 90) -> str:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + len(word) < width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return "\n".join(lines)


_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 0; color: #222; background: #f6f7f9; }
header { background: #1f3b5a; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header p { margin: 0; opacity: 0.85; }
nav { padding: 10px 32px; background: #fff; border-bottom: 1px solid #dde; }
nav a { margin-right: 16px; color: #1f3b5a; text-decoration: none; }
main { padding: 8px 32px 32px 32px; max-width: 1200px; }
section { background: #fff; border: 1px solid #dde; border-radius: 6px; margin: 18px 0;
          padding: 12px 20px; }
section h2 { font-size: 18px; margin: 6px 0; }
p.about { color: #444; margin: 4px 0 8px 0; }
p.note { background: #fff7e0; border-left: 4px solid #e6a23c; padding: 8px 12px; }
p.error { background: #fdecea; border-left: 4px solid #c0392b; padding: 8px 12px; }
code { background: #eef1f5; padding: 1px 4px; border-radius: 3px; font-size: 12px; }
"""


def _period(since: datetime, until: datetime) -> str:
    end = "now" if until >= TIMESTAMP_MAX else f"{until:%Y-%m-%d %H:%M}"
    start = "the start" if since <= TIMESTAMP_MIN else f"{since:%Y-%m-%d %H:%M}"
    return f"from {start} to {end} (UTC)"


def _html(panels: list[Panel], *, stream: str, period: str, now: datetime) -> str:
    import plotly.offline

    config = {"displaylogo": False, "responsive": True}
    blocks = []
    for panel in panels:
        section = panel.section
        about = get_analysis(section.analysis).description.split("\n\n")[0]
        note = ""
        if panel.status != "ok":
            kind = "error" if panel.status == "error" else "note"
            note = f'<p class="{kind}">{html.escape(panel.message)}</p>'
        chart = panel.figure.to_html(full_html=False, include_plotlyjs=False, config=config)
        blocks.append(
            f'<section id="{section.id}"><h2>{html.escape(section.title)}</h2>'
            f'<p class="about">{html.escape(about)}</p>{note}{chart}'
            f"<p>Rerun: <code>{html.escape(panel.command)}</code></p></section>"
        )
    nav = "".join(f'<a href="#{p.section.id}">{html.escape(p.section.title)}</a>' for p in panels)
    title = f"pulsecast report: {stream}"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style>"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script></head>'
        f"<body><header><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(period)} · generated {now:%Y-%m-%d %H:%M:%S} UTC</p></header>"
        f"<nav>{nav}</nav><main>{''.join(blocks)}</main></body></html>\n"
    )


def _pngs(panels: list[Panel], out: Path) -> list[Path]:
    """Every panel's figure as ``out/<section>.png``, in one Chromium session."""
    try:
        import kaleido
        from choreographer.errors import ChromeNotFoundError
    except ImportError as exc:
        msg = f"PNG charts need kaleido: {exc}"
        raise ReportError(msg) from exc
    paths = [out / f"{p.section.id}.png" for p in panels]
    jobs = [
        {"fig": p.figure, "path": str(path), "opts": {"format": "png", **_PNG_SIZE}}
        for p, path in zip(panels, paths, strict=True)
    ]
    try:
        kaleido.write_fig_from_object_sync(jobs, kopts={"mathjax": False, "timeout": 120})
    except ChromeNotFoundError as exc:
        msg = (
            "PNG charts need Chromium (apt-get install chromium, or scripts/system-deps.sh); "
            "--no-png writes the HTML only"
        )
        raise ReportError(msg) from exc
    except Exception as exc:  # Kaleido's errors (browser crash, timeout) have no common base
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = f"Kaleido could not render the PNG charts: {reason}"
        raise ReportError(msg) from exc
    missing = [p for p in paths if not p.is_file()]
    if missing:
        msg = f"Kaleido did not write {', '.join(p.name for p in missing)}"
        raise ReportError(msg)
    return paths


def write_report(
    settings: Settings,
    out: Path,
    *,
    stream: str = "telemetry",
    since: str = "7d",
    until: str = "max",
    engine: Engine = "duckdb",
    png: bool = True,
    now: datetime | None = None,
) -> Report:
    """Run the report's analyses and write ``out/report.html`` and, with ``png``, the charts.

    Args:
        settings: The platform's settings.
        out: The folder to write into (created if missing; files in it are replaced).
        stream: The stream to report on.
        since: Start of the range (a timestamp parameter: ISO, ``7d``, ``min``...).
        until: End of the range.
        engine: ``duckdb`` or ``spark``.
        png: Write the PNG charts too.
        now: What ages in ``since``/``until`` are relative to (default: the clock).

    Raises:
        ParamError: ``stream``, ``since`` or ``until`` is not valid.
        ReportError: ``out`` cannot be written, or the PNGs cannot be rendered
            (the HTML is written first).
    """
    moment = now or datetime.now(UTC)
    traffic = get_analysis("entity_traffic")
    tumbling = [w.name for w in settings.stream.windows if w.slide_s in (None, w.size_s)]
    params = {"stream": stream, "since": since, "until": until}
    if tumbling:
        params["window"] = tumbling[0]
    try:  # a bad stream or time fails here, once, named as the caller's option
        bound = bind(traffic, settings, params, now=moment)
    except ParamError as exc:
        msg = f"--{exc.param}: {str(exc).split(': ', 1)[1]}"
        raise ParamError(msg, analysis=exc.analysis, param=exc.param) from None
    period = _period(bound["since"], bound["until"])  # type: ignore[arg-type]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create {out}: {exc.strerror or exc}"
        raise ReportError(msg) from exc
    opened = open_engine(settings, engine)
    try:
        panels = _panels(settings, opened, params, moment)
    finally:
        opened.close()
    page = out / "report.html"
    try:
        page.write_text(_html(panels, stream=stream, period=period, now=moment), encoding="utf-8")
    except OSError as exc:
        msg = f"cannot write {page}: {exc.strerror or exc}"
        raise ReportError(msg) from exc
    log.info("report: wrote %s", page)
    pngs = _pngs(panels, out) if png else []
    return Report(page, pngs, panels)

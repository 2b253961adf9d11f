"""The ``pulsecast`` command line: a thin front end, one module per verb.

Settings are built once here (``--config`` or ``pulsecast.toml``, then
``PULSECAST_*`` variables) and passed down. Any :class:`PulsecastError`
becomes one line on stderr and exit code 1; ``--help`` documents every verb.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from pulsecast import __version__
from pulsecast.config import Settings, load_settings
from pulsecast.deploy.cli import deploy_app
from pulsecast.errors import PulsecastError
from pulsecast.logging import configure_from_settings
from pulsecast.security.cli import audit_app, security_app
from pulsecast.security.mode import ENV_SWITCH, marker


class _Group(TyperGroup):
    """Turns any PulsecastError into one line on stderr and exit code 1."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except PulsecastError as exc:
            typer.echo(f"error: {exc}", err=True)
            ctx.exit(1)


app = typer.Typer(
    name="pulsecast",
    cls=_Group,
    help="Real-time event processing and predictive analytics on Kafka, Spark and PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
produce_app = typer.Typer(help="Send events into a stream.", no_args_is_help=True)
bench_app = typer.Typer(
    help="Measure the platform (results as JSON with --json).", no_args_is_help=True
)
stream_app = typer.Typer(
    help="The streaming job (Spark Structured Streaming).", no_args_is_help=True
)
app.add_typer(produce_app, name="produce")
app.add_typer(stream_app, name="stream")
app.add_typer(bench_app, name="bench")
lake_app = typer.Typer(
    help="Lake maintenance: compaction, Z-order, vacuum (Delta, on Spark).", no_args_is_help=True
)
app.add_typer(lake_app, name="lake")
app.add_typer(deploy_app, name="deploy")
app.add_typer(security_app, name="security")
app.add_typer(audit_app, name="audit")


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.find_root().obj
    return settings


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _version(value: bool) -> None:
    if value:
        print(f"pulsecast {__version__}")
        raise typer.Exit


@app.callback()
def main_callback(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML settings file (default: ./pulsecast.toml)."),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="Override log.level (DEBUG, INFO, WARNING, ERROR).")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Real-time event processing and predictive analytics."""
    settings = load_settings(config)
    if log_level is not None:
        settings = settings.model_copy(
            update={"log": settings.log.model_copy(update={"level": log_level.upper()})}
        )
    if not settings.security.enabled and marker(settings).exists():
        settings = _secure(settings)  # the local stack was started with up --secure
    # Commands say what they do on stderr; servers and the job log at log.level (_serving).
    configure_from_settings(settings, level=None if log_level else "WARNING")
    ctx.obj = settings


def _secure(settings: Settings) -> Settings:
    """``settings`` with security on, for this command and the servers it starts."""
    os.environ[ENV_SWITCH] = "true"
    secure = load_settings(settings.config_file)
    return secure.model_copy(update={"log": settings.log})


def _serving(settings: Settings) -> None:
    """Log at ``log.level`` from here on: a long-running component's entry point."""
    configure_from_settings(settings)


@app.command()
def setup(ctx: typer.Context) -> None:
    """Check Java and resolve the JVM artifacts of jvm/pom.xml (idempotent)."""
    from pulsecast.services.java import PROFILES, find_java, java_version, resolve

    settings = _settings(ctx)
    java = find_java(settings)
    _say(f"java: {java} ({java_version(java)})")
    for profile in PROFILES:
        _say(f"resolving JVM artifacts: {profile}...")
        folder = resolve(settings, profile)
        _say(f"  {profile}: {len(list(folder.glob('*.jar')))} jars in {folder}")
    print("setup complete")


def _print_status(statuses: list[Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"services": [s.as_dict() for s in statuses]}, indent=2))
        return
    for s in statuses:
        state = "running" if s.running else "stopped"
        pid = f"pid {s.pid}" if s.pid else ""
        print(f"{s.name:<9} {state:<8} {s.address or '':<28} {s.version or '':<8} {pid}")
        if s.data_dir:
            print(f"{'':<9} data: {s.data_dir}")
        if s.log_file:
            print(f"{'':<9} log:  {s.log_file}")
        if s.detail:
            print(f"{'':<9} {s.detail}")


_SECURE_HELP = (
    "Secure mode (security.enabled): TLS, SASL and ACLs on Kafka, TLS and per-role passwords "
    "on PostgreSQL, HTTPS; later commands on this stack stay secure until `down`."
)


def _names(text: str | None) -> list[str]:
    """A comma-separated ``--with`` list."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


@app.command()
def up(
    ctx: typer.Context,
    with_: Annotated[
        str | None,
        typer.Option(
            "--with", help="Optional servers, comma-separated: hdfs, spark, prometheus, dashboard."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    secure: Annotated[bool, typer.Option("--secure", help=_SECURE_HELP)] = False,
) -> None:
    """Start the local stack: Kafka (KRaft), PostgreSQL and the HTTP ingest."""
    from pulsecast.services.stack import Stack

    settings = _secure(_settings(ctx)) if secure else _settings(ctx)
    statuses = Stack(settings, with_=_names(with_)).up(progress=_say)
    _print_status(statuses, as_json)


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop every server of the local stack (idempotent)."""
    from pulsecast.services.stack import Stack

    stopped = Stack(_settings(ctx)).down(progress=_say)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One screen: each server's health, then per stream its rates, lag and model.

    Rates come from the /metrics of the ingest, the streaming job and the
    monitor (sampled twice, a second apart); --json adds the data dir and log
    file of each server.
    """
    from pulsecast.monitoring.status import format_rates, format_services, measure_rates
    from pulsecast.services.stack import Stack

    settings = _settings(ctx)
    statuses = Stack(settings).status()
    rates = measure_rates(settings)
    if as_json:
        services = [s.as_dict() for s in statuses]
        print(json.dumps({"services": services, "rates": rates.as_dict()}, indent=2))
        return
    print("\n".join([*format_services(statuses), "", *format_rates(rates)]))


@app.command()
def logs(
    ctx: typer.Context,
    service: Annotated[
        str | None,
        typer.Argument(help="Whose log: kafka, postgres, ingest, pulsecast...; none lists them."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C stops).")
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="Lines of history to print.")
    ] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON: the file list, or one object per line.")
    ] = False,
    max_seconds: Annotated[
        float | None, typer.Option(help="With --follow, stop after S seconds.")
    ] = None,
) -> None:
    """List the log files under <data_dir>/logs, or print (and follow) one service's log."""
    import contextlib
    import time

    from pulsecast.monitoring import logs as logfiles

    folder = logfiles.logs_dir(_settings(ctx).data_dir)
    if service is None:
        found = logfiles.list_logs(folder)
        if as_json:
            print(json.dumps({"logs": [f.as_dict() for f in found]}, indent=2))
            return
        if not found:
            _say(f"no log files yet in {folder}")
        for f in found:
            print(
                f"{f.service:<14} {f.size_bytes:>12,} B  {f.modified:%Y-%m-%d %H:%M:%S}Z  {f.path}"
            )
        return
    path = logfiles.log_path(folder, service)
    name = service

    def show(line: str) -> str:
        return logfiles.as_json_line(name, line) if as_json else line

    if not follow:
        try:
            history = logfiles.tail(path, lines)
        except FileNotFoundError:
            msg = f"no {service} log yet: {path} does not exist"
            raise PulsecastError(msg) from None
        for line in history:
            print(show(line))
        return
    if not path.exists():
        _say(f"waiting for {path}...")
    deadline = None if max_seconds is None else time.monotonic() + max_seconds

    def stop() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    with contextlib.suppress(KeyboardInterrupt):
        for line in logfiles.follow(path, stop=stop, lines=lines):
            print(show(line), flush=True)


@app.command()
def serve(ctx: typer.Context) -> None:
    """Run the HTTP ingest endpoint in the foreground."""
    from pulsecast.sources.http import serve as run

    settings = _settings(ctx)
    _serving(settings)
    run(settings)


def _progress(summary: Any) -> None:
    _say(
        f"  {summary.sent:,} sent, {summary.accepted:,} accepted, "
        f"{summary.rejected:,} rejected, {summary.rate_eps:,.0f} events/s"
    )


def _print_summary(summary: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.as_dict()))
        return
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary.reasons.items()))
    print(
        f"{summary.stream}: {summary.sent:,} sent, {summary.accepted:,} accepted, "
        f"{summary.rejected:,} rejected{f' ({reasons})' if reasons else ''} "
        f"in {summary.seconds:.1f} s ({summary.rate_eps:,.0f} events/s)"
    )


@produce_app.command("simulator")
def produce_simulator(
    ctx: typer.Context,
    rate: Annotated[
        float | None, typer.Option(help="Events per second; 0 = as fast as possible.")
    ] = None,
    count: Annotated[int | None, typer.Option(help="Stop after N events.")] = None,
    seconds: Annotated[float | None, typer.Option(help="Stop after S seconds.")] = None,
    stream: Annotated[str, typer.Option(help="Target stream (telemetry schema).")] = "telemetry",
    entities: Annotated[int | None, typer.Option(help="Machines in the fleet.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    invalid_fraction: Annotated[
        float | None, typer.Option(help="Share of deliberately invalid events.")
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="Ground-truth labels file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Produce a simulated fleet's telemetry, with injected anomalies and their labels."""
    from pulsecast.sources.produce import run_simulator

    settings = _settings(ctx)
    overrides = {
        k: v
        for k, v in {
            "rate_eps": rate,
            "entities": entities,
            "seed": seed,
            "invalid_fraction": invalid_fraction,
            "labels_file": labels,
        }.items()
        if v is not None
    }
    sim = settings.simulator.model_validate({**settings.simulator.model_dump(), **overrides})
    if count is None and seconds is None:
        count = 10_000
    summary, labels_path = run_simulator(
        settings, sim, stream=stream, count=count, seconds=seconds, progress=_progress
    )
    _print_summary(summary, as_json)
    if not as_json:
        print(f"labels: {labels_path}")


@produce_app.command("file")
def produce_file(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="CSV / JSON Lines files or folders.")],
    stream: Annotated[str, typer.Option(help="Target stream.")] = "series",
    speed: Annotated[
        str, typer.Option(help="Event-time pace: 'max', 'realtime' or a factor (60 = 1 min/s).")
    ] = "max",
    rate: Annotated[float, typer.Option(help="Events per second instead of --speed.")] = 0.0,
    count: Annotated[int | None, typer.Option(help="Stop after N events.")] = None,
    time_field: Annotated[str | None, typer.Option(help="Column holding event time.")] = None,
    key_field: Annotated[
        str | None, typer.Option(help="Column holding the key; default: the file's name.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Replay files (NAB layout `timestamp,value` included), preserving event time."""
    from pulsecast.sources.produce import parse_speed, run_replay

    summary = run_replay(
        _settings(ctx),
        paths,
        stream=stream,
        speed=parse_speed(speed),
        rate_eps=rate,
        count=count,
        time_field=time_field,
        key_field=key_field,
        progress=_progress,
    )
    _print_summary(summary, as_json)


@app.command()
def consume(
    ctx: typer.Context,
    stream: Annotated[str, typer.Option(help="Stream to read.")] = "telemetry",
    count: Annotated[int, typer.Option(help="Stop after N events.")] = 10,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest event.")
    ] = False,
    dlq: Annotated[bool, typer.Option("--dlq", help="Read the dead-letter topic.")] = False,
    timeout: Annotated[float, typer.Option(help="Give up after S seconds.")] = 10.0,
) -> None:
    """Print a stream's events (or dead letters with their reasons) as JSON lines."""
    from pulsecast.bus.consumer import EventConsumer
    from pulsecast.bus.topics import topic_name
    from pulsecast.events.schema import SchemaRegistry

    settings = _settings(ctx)
    SchemaRegistry(settings.streams)[stream]  # unknown stream: one clear line
    topic = topic_name(stream, "dlq" if dlq else "events")
    seen = 0
    with EventConsumer(settings, [topic], from_beginning=from_beginning) as consumer:
        for record in consumer.read(max_count=count, timeout_s=timeout):
            seen += 1
            if dlq:
                out = {
                    "partition": record.partition,
                    "offset": record.offset,
                    "key": record.key,
                    "headers": record.headers,
                    "value": record.value.decode(errors="replace"),
                }
                print(json.dumps(out))
            else:
                print(record.value.decode(errors="replace"))
    _say(f"{seen} events from {topic}")


@app.command()
def demo(
    ctx: typer.Context,
    minutes: Annotated[float, typer.Option(help="How long to produce events.")] = 0.5,
    rate: Annotated[float, typer.Option(help="Events per second.")] = 2000.0,
    stream_job: Annotated[
        bool, typer.Option("--stream-job/--no-stream-job", help="Run the Spark streaming job.")
    ] = True,
    history_days: Annotated[
        float,
        typer.Option(
            help="Days of simulated history to backfill and train the models on first "
            "(an empty stream only); 0 for none.",
            min=0,
        ),
    ] = 1.0,
    entities: Annotated[
        int, typer.Option(help="Machines simulated (history and live).", min=1)
    ] = 10,
    with_: Annotated[
        str,
        typer.Option(
            "--with",
            help="Optional servers to start too, comma-separated; '' for none.",
        ),
    ] = "dashboard,prometheus",
    secure: Annotated[bool, typer.Option("--secure", help=_SECURE_HELP)] = False,
) -> None:
    """Bring the stack up, stream simulated telemetry through Spark into the lake and warehouse.

    First backfills simulated history and trains the models on it; the job then
    scores history and live events, and the demo prints its alerts against the
    simulator's labelled anomalies. The live dashboard (its URL is printed first)
    and Prometheus, scraping the job, keep running afterwards.
    """
    from pulsecast.demo import run_demo

    result = run_demo(
        _secure(_settings(ctx)) if secure else _settings(ctx),
        minutes=minutes,
        rate_eps=rate,
        stream_job=stream_job,
        history_days=history_days,
        entities=entities,
        with_=_names(with_),
        say=_say,
    )
    for line in result.lines():
        print(line)
    if not result.ok:
        raise typer.Exit(1)


@stream_app.command("run")
def stream_run(
    ctx: typer.Context,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Stop once every stream is quiet and processed.")
    ] = False,
    max_seconds: Annotated[float | None, typer.Option(help="Stop after S seconds.")] = None,
    stream: Annotated[
        list[str] | None, typer.Option(help="Stream to process (repeatable); default all.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the totals as JSON.")] = False,
) -> None:
    """Process events into bronze, silver, gold and the warehouse until stopped."""
    from pulsecast.stream.job import StreamJob
    from pulsecast.stream.session import spark_session

    settings = _settings(ctx)
    _serving(settings)
    _say(f"starting Spark ({settings.spark.master})...")
    spark = spark_session(settings, app_name="pulsecast-stream")
    job = StreamJob(spark, settings, streams=stream or None)

    def show(stats: dict[str, Any]) -> None:
        for name, s in stats.items():
            _say(
                f"  {name}: {s.records:,} records, {s.valid:,} valid, "
                f"{sum(s.rejected.values()):,} rejected, last batch {s.last_batch_s:.1f} s"
            )

    _say(f"streaming {', '.join(job.streams)} (Ctrl-C to stop)...")
    totals = job.run(until_idle=until_idle, max_seconds=max_seconds, progress=show)
    if as_json:
        print(json.dumps({name: s.as_dict() for name, s in totals.items()}))
    else:
        for name, s in totals.items():
            rejected = ", ".join(f"{k} {v}" for k, v in sorted(s.rejected.items())) or "none"
            print(
                f"{name}: {s.records:,} records in {s.batches} batches, {s.valid:,} valid, "
                f"rejected: {rejected}, {s.gold_rows:,} gold rows written"
            )


@app.command()
def sql(
    ctx: typer.Context,
    query: Annotated[
        str | None,
        typer.Argument(
            help="SQL over bronze_<s>, silver_<s>, gold_<s>_<w>, gold_<s>_scores, lake_files "
            "(or use --list / --run)."
        ),
    ] = None,
    list_: Annotated[
        bool,
        typer.Option("--list", help="List the named analyses with their params and defaults."),
    ] = False,
    run: Annotated[
        str | None,
        typer.Option("--run", metavar="NAME", help="Run a named analysis (see --list)."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="NAME=VALUE",
            help="A parameter of the analysis run with --run (repeat for several).",
        ),
    ] = None,
    engine: Annotated[str, typer.Option(help="duckdb (no JVM) or spark.")] = "duckdb",
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Run the query and show, per lake table, the partitions and files read "
            "of those there are (pruning and data skipping), and the plan; "
            "--format json for JSON.",
        ),
    ] = False,
) -> None:
    """Query the lake with SQL (DuckDB by default, Spark SQL with --engine spark).

    Give a QUERY, or run a named analysis with --run NAME [--param NAME=VALUE ...]
    (--list shows them).
    """
    from pulsecast.analytics.named import analyses, get_analysis
    from pulsecast.analytics.named import render as render_sql
    from pulsecast.analytics.output import render, render_analyses, render_explanation
    from pulsecast.analytics.sql import open_engine, run_sql

    if engine not in ("duckdb", "spark"):
        msg = f"--engine must be duckdb or spark, got {engine!r}"
        raise PulsecastError(msg)
    if fmt not in ("table", "json", "csv"):
        msg = f"--format must be table, json or csv, got {fmt!r}"
        raise PulsecastError(msg)
    if sum([query is not None, list_, run is not None]) != 1:
        msg = "give one of: a QUERY, --list, or --run NAME"
        raise PulsecastError(msg)
    if param and run is None:
        msg = "--param goes with --run NAME"
        raise PulsecastError(msg)
    if list_:
        print(render_analyses(list(analyses().values()), fmt))
        return
    settings = _settings(ctx)
    if run is not None:
        values: dict[str, str] = {}
        for item in param or []:
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                msg = f"--param must be NAME=VALUE, got {item!r}"
                raise PulsecastError(msg)
            values[name.strip()] = value
        query = render_sql(get_analysis(run), settings, values)
    assert query is not None  # noqa: S101 (checked above)
    if explain:
        from pulsecast.analytics.explain import explain as run_explain

        if fmt == "csv":
            msg = "--explain prints text or, with --format json, JSON; not csv"
            raise PulsecastError(msg)
        report = run_explain(settings, query, engine=engine)  # type: ignore[arg-type]
        print(render_explanation(report, fmt))
        return
    if run is not None:  # only the tables the analysis reads are opened
        opened = open_engine(settings, engine)  # type: ignore[arg-type]
        try:
            result = opened.query(query)
        finally:
            opened.close()
    else:
        result = run_sql(settings, query, engine=engine)  # type: ignore[arg-type]
    print(render(result, fmt))


@app.command()
def report(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Folder to write report.html and PNGs to.")],
    stream: Annotated[str, typer.Option(help="Stream to report on.")] = "telemetry",
    since: Annotated[
        str,
        typer.Option(help="Start: ISO date/time (UTC), an age (24h, 7d, 2w), or min."),
    ] = "7d",
    until: Annotated[str, typer.Option(help="End: ISO date/time (UTC), now, or max.")] = "max",
    engine: Annotated[str, typer.Option(help="duckdb (no JVM) or spark.")] = "duckdb",
    png: Annotated[
        bool, typer.Option("--png/--no-png", help="Also write PNG charts (needs Chromium).")
    ] = True,
) -> None:
    """Write a static report: one HTML page and PNG charts of the named analyses."""
    from pulsecast.analytics.report import write_report

    if engine not in ("duckdb", "spark"):
        msg = f"--engine must be duckdb or spark, got {engine!r}"
        raise PulsecastError(msg)
    _say(f"report on {stream}: running {engine} analyses...")
    written = write_report(
        _settings(ctx),
        out,
        stream=stream,
        since=since,
        until=until,
        engine=engine,  # type: ignore[arg-type]
        png=png,
    )
    for panel in written.panels:
        state = f"{panel.rows:,} rows" if panel.status == "ok" else panel.status
        print(f"  {panel.section.id:<16} {state}")
    print(f"wrote {written.html}")
    if written.pngs:
        print(f"wrote {len(written.pngs)} PNG charts in {out}")


@app.command()
def dashboard(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="Port (default: dashboard.port, 8050).")] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: dashboard.host, 127.0.0.1).")
    ] = None,
    stream: Annotated[
        str | None, typer.Option(help="Stream shown first (default: dashboard.stream).")
    ] = None,
) -> None:
    """Serve the live web dashboard (Plotly charts over the lake, refreshed in place)."""
    from pulsecast.dashboard import serve as serve_dashboard

    settings = _settings(ctx)
    update: dict[str, Any] = {}
    if port is not None:
        update["port"] = port
    if host is not None:
        update["host"] = host
    if update:
        section = settings.dashboard.model_copy(update=update)
        settings = settings.model_copy(update={"dashboard": section})
    chosen = stream or settings.dashboard.stream
    if chosen not in settings.streams:
        known = ", ".join(sorted(settings.streams))
        msg = f"--stream {chosen!r} is not configured; streams: {known}"
        raise PulsecastError(msg)
    _say(f"pulsecast dashboard on {settings.dashboard.url} (stream {chosen}); Ctrl-C stops it")
    _serving(settings)
    serve_dashboard(settings, stream=chosen)


@app.command()
def detect(
    ctx: typer.Context,
    paths: Annotated[
        list[Path], typer.Argument(help="CSV files (timestamp,value) or folders of them.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for the results (same relative paths).")],
    labels: Annotated[
        Path | None,
        typer.Option(help="NAB combined_windows.json: files it names get a label column."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Replay the online anomaly detector over CSV files (NAB layout in and out)."""
    from pulsecast.ml.detector import DetectorParams
    from pulsecast.ml.offline import detect_files

    report = detect_files(
        paths,
        out,
        labels=labels,
        params=DetectorParams.from_settings(_settings(ctx).ml.detector),
        progress=lambda rel, rows: _say(f"{rel}: {rows} rows"),
    )
    summary = {
        "files": report.files,
        "rows": report.rows,
        "flagged": report.flagged,
        "labelled": report.labelled,
        "seconds": round(report.seconds, 3),
        "rows_per_s": round(report.rows_per_s),
        "out": str(out),
    }
    if as_json:
        print(json.dumps(summary))
    else:
        print(
            f"scored {report.files} files, {report.rows} rows ({summary['rows_per_s']} rows/s), "
            f"{report.flagged} flagged; results in {out}"
        )


def _lake_spark(settings: Settings) -> Any:
    """The SparkSession for ``lake`` commands, its JVM printing to stderr.

    Delta prints progress (``Deleted 3 files...``) on the JVM's stdout, which
    would mix with this command's output (``--json``). The JVM inherits the
    file descriptors it is started with: fd 1 points at stderr just for the launch.
    """
    from pulsecast.stream.session import spark_session

    _say(f"starting Spark ({settings.spark.master})...")
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        return spark_session(settings, app_name="pulsecast-lake")
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        msg = f"{option} must be a date such as 2026-05-01, got {value!r}"
        raise PulsecastError(msg) from None


@lake_app.command("optimize")
def lake_optimize(
    ctx: typer.Context,
    stream: Annotated[
        list[str] | None, typer.Option(help="Stream to optimize (repeatable); default all.")
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option(
            help="bronze, silver, gold or panes (the job's state); repeatable; default all."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only partitions dated on or after DATE (YYYY-MM-DD)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Only partitions dated on or before DATE (YYYY-MM-DD)."),
    ] = None,
    zorder: Annotated[
        bool,
        typer.Option("--zorder/--no-zorder", help="Z-order silver and the scores by key."),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Compact small files into large ones; Z-order silver and the scores by key (data skipping)."""
    from pulsecast.analytics.output import human_bytes
    from pulsecast.lake.maintenance import maintained_tables, optimize

    settings = _settings(ctx)
    first, last = _parse_date(since, "--since"), _parse_date(until, "--until")
    maintained_tables(settings, streams=stream, zones=table)  # bad names: fail before Spark
    if last is None or last >= datetime.now(UTC).date():
        _say(
            "note: this includes today's partitions (UTC): if the streaming job is running, "
            "a micro-batch reading them can fail on a write conflict; use --until yesterday"
        )
    spark = _lake_spark(settings)
    results = optimize(
        spark,
        settings,
        streams=stream or None,
        zones=table or None,
        since=first,
        until=last,
        zorder=zorder,
        progress=_say,
    )
    if as_json:
        print(json.dumps({"optimized": [r.as_dict() for r in results]}))
        return
    if not results:
        print(f"no lake tables under {settings.lake_uri} yet")
        return
    header = ("table", "z-order", "files", "removed", "added", "bytes removed", "bytes added", "s")
    rows = [
        (
            r.table,
            ",".join(r.zorder) or "-",
            f"{r.files_before:,} -> {r.files_after:,}",
            f"{r.files_removed:,}",
            f"{r.files_added:,}",
            human_bytes(r.bytes_removed),
            human_bytes(r.bytes_added),
            f"{r.seconds:.1f}",
        )
        for r in results
    ]
    _print_table(header, rows)


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@lake_app.command("vacuum")
def lake_vacuum(
    ctx: typer.Context,
    retain_hours: Annotated[
        float | None,
        typer.Option(
            help="Keep files unused for less than H hours; default lake.vacuum_retain_hours."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the files that would go; delete nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Allow a retention below the tables' delta.deletedFileRetentionDuration.",
        ),
    ] = False,
    stream: Annotated[
        list[str] | None, typer.Option(help="Stream to vacuum (repeatable); default all.")
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option(
            help="bronze, silver, gold or panes (the job's state); repeatable; default all."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Delete the files lake tables stopped using more than the retention ago."""
    from pulsecast.analytics.output import human_bytes
    from pulsecast.lake.maintenance import maintained_tables, vacuum

    settings = _settings(ctx)
    maintained_tables(settings, streams=stream, zones=table)  # bad names: fail before Spark
    spark = _lake_spark(settings)
    results = vacuum(
        spark,
        settings,
        streams=stream or None,
        zones=table or None,
        retain_hours=retain_hours,
        dry_run=dry_run,
        force=force,
        progress=_say,
    )
    if as_json:
        print(json.dumps({"vacuumed": [r.as_dict() for r in results], "dry_run": dry_run}))
        return
    if not results:
        print(f"no lake tables under {settings.lake_uri} yet")
        return
    verb = "would delete" if dry_run else "deleted"
    rows = [
        (
            r.table,
            f"{r.retain_hours:g} h",
            "?" if r.files is None else f"{r.files:,}",
            "?" if r.bytes is None else human_bytes(r.bytes),
            f"{r.seconds:.1f}",
        )
        for r in results
    ]
    _print_table(("table", "retention", f"files {verb}", "bytes", "s"), rows)
    for r in results:
        for path in r.paths:
            print(f"  {r.table}: {path}")
    below = [r.table for r in results if r.below_minimum]
    if dry_run and below and not force:
        _say(
            "note: that retention is below the safe minimum of "
            + ", ".join(below)
            + "; deleting needs --force"
        )


@bench_app.command("ingest")
def bench_ingest(
    ctx: typer.Context,
    events: Annotated[int, typer.Option(help="Events for the producer and the reference.")] = (
        1_000_000
    ),
    http_events: Annotated[int, typer.Option(help="Events sent over HTTP.")] = 300_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Python producer and HTTP ingest vs Kafka's ProducerPerformance, one broker."""
    from pulsecast.bench.ingest import run_ingest_benchmark

    result = run_ingest_benchmark(_settings(ctx), events=events, http_events=http_events, say=_say)
    if as_json:
        print(json.dumps(result))
        return
    print(f"record size     {result['record_bytes']} bytes (mean JSON event)")
    print(f"reference       {result['reference_eps']:>12,.0f} events/s (ProducerPerformance)")
    print(
        f"python producer {result['producer_eps']:>12,.0f} events/s "
        f"({result['producer_ratio']:.2f} of reference)"
    )
    print(
        f"http ingest     {result['http_eps']:>12,.0f} events/s "
        f"({result['http_ratio']:.2f} of reference, batches of {result['http_batch']})"
    )


@bench_app.command("detect")
def bench_detect(
    ctx: typer.Context,
    entities: Annotated[int, typer.Option(help="Simulated machines.")] = 20,
    days: Annotated[float, typer.Option(help="Days of event time simulated.")] = 3.0,
    warmup_days: Annotated[float, typer.Option(help="First days not scored (learning).")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Live anomaly detection vs the simulator's ground truth: precision, recall, delay."""
    from pulsecast.bench.detect import run_detect_benchmark

    r = run_detect_benchmark(
        _settings(ctx), entities=entities, days=days, warmup_days=warmup_days, say=_say
    )
    if as_json:
        print(json.dumps(r))
        return
    delay = "-" if r["median_delay_s"] is None else f"{r['median_delay_s'] / 60:.1f} min"
    kinds = ", ".join(f"{k} {v:.2f}" for k, v in r["recall_by_kind"].items())
    print(f"anomalies      {r['detected']} of {r['labels']} detected (recall {r['recall']:.2f})")
    print(
        f"alerts         {r['true_alerts']} of {r['alerts']} true (precision {r['precision']:.2f})"
    )
    print(f"f1             {r['f1']:.2f}")
    print(f"median delay   {delay} (event time, anomaly start to its window's end)")
    print(f"recall by kind {kinds}")


@bench_app.command("e2e")
def bench_e2e(
    ctx: typer.Context,
    rate: Annotated[float, typer.Option(help="Events/s offered in the sustained phase.")] = 60_000,
    seconds: Annotated[float, typer.Option(help="Length of the sustained phase.")] = 60,
    latency_rate: Annotated[float, typer.Option(help="Events/s of the latency phase.")] = 10_000,
    latency_seconds: Annotated[float, typer.Option(help="Length of the latency phase.")] = 30,
    scoring: Annotated[
        bool | None,
        typer.Option(
            "--scoring/--no-scoring",
            help="Run live anomaly scoring in the job (default: ml.detector.enabled).",
        ),
    ] = None,
    forecasts: Annotated[
        bool,
        typer.Option(
            "--forecasts",
            help="Forecast live too (implies --scoring): first backfill a few hours of "
            "history, train and promote a forecaster for the run's stream (untimed).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The streaming job under load: throughput, batch times, latency, vs Spark pass-through."""
    from pulsecast.bench.e2e import resolve_scoring, run_e2e_benchmark

    settings = _settings(ctx)
    try:
        scoring = resolve_scoring(
            scoring, forecasts=forecasts, default=settings.ml.detector.enabled
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    r = run_e2e_benchmark(
        settings,
        rate=rate,
        seconds=seconds,
        latency_rate=latency_rate,
        latency_seconds=latency_seconds,
        scoring=scoring,
        forecasts=forecasts,
        say=_say,
    )
    if as_json:
        print(json.dumps(r))
        return
    stable = "stable" if r["lag_stable"] else f"growing {r['lag_growth_eps']:,.0f}/s"
    lines = [
        f"sustained      {r['sustained_eps']:>10,.0f} events/s "
        f"(offered {r['offered_eps']:,.0f}, lag {stable})",
        f"micro-batches  p50 {r['batch_p50_s']} s, p95 {r['batch_p95_s']} s "
        f"({r['batches']} started while the load ran)",
        f"to gold        p50 {r['latency_p50_s']:.2f} s, p95 {r['latency_p95_s']:.2f} s "
        f"(at {r['latency_rate_eps']:,.0f} events/s)",
        f"to warehouse   p50 {r['warehouse_latency_p50_s']:.2f} s, "
        f"p95 {r['warehouse_latency_p95_s']:.2f} s",
        f"job capacity   {r['job_eps']:>10,.0f} events/s "
        f"(from the earliest offset, {r['events']:,} events"
        + (
            ""
            if r.get("job_steady_eps") is None
            else f"; {r['job_steady_eps']:,.0f} after its first batch"
        )
        + ")",
        f"  no scoring   {r['stream_eps']:>10,.0f} events/s "
        "(the same, the stream processing alone: no live scoring query)",
        f"pass-through   {r['passthrough_eps']:>10,.0f} events/s (Spark, Kafka -> Parquet)",
    ]
    if r["forecasts"]:
        lines.append(
            f"forecasts      {r['forecasts_sustained']:>10,} while measuring the sustained load "
            f"(version {r['forecast_model_version']}; {r['forecasts_made']:,} in the live run, "
            f"{r['forecasts_capacity']:,} in the capacity run)"
        )
    print("\n".join(lines))
    print(f"ratio          {r['ratio']:>10.2f} ({r['stream_ratio']:.2f} without live scoring)")


@bench_app.command("security")
def bench_security(
    ctx: typer.Context,
    events: Annotated[
        int, typer.Option(min=1_000, help="Events per producer run, each side.")
    ] = 500_000,
    http_events: Annotated[
        int, typer.Option(min=1_000, help="Events per HTTP(S) ingest run, each side.")
    ] = 200_000,
    e2e_events: Annotated[
        int,
        typer.Option(min=1_000, help="Backlog the streaming job processes per run, each side."),
    ] = 300_000,
    warmup_events: Annotated[
        int, typer.Option(min=0, help="Backlog of each side's untimed warm-up job run (0: none).")
    ] = 30_000,
    repeats: Annotated[
        int, typer.Option(min=1, help="Runs per figure and side, alternated; figures are medians.")
    ] = 3,
    target: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="The ratio secure/plain to reach.")
    ] = 0.7,
    work_dir: Annotated[
        Path | None,
        typer.Option(help="Where the two stacks keep their state (removed); default a temp dir."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The cost of secure mode: ingest and end-to-end throughput, secure vs plain.

    Starts a plain and a secure stack (Kafka, PostgreSQL) of its own on free
    ports in a temporary folder, never the running one, measures the Python
    producer, the HTTP ingest (HTTP vs HTTPS) and the streaming job over the
    same backlog on each, alternating the sides, and reports secure/plain per
    figure against the target. Everything it started is stopped at the end.
    """
    from pulsecast.bench.security import check_sizes, report_lines, run_security_benchmark

    sizes = {"events": events, "http_events": http_events, "e2e_events": e2e_events}
    try:
        check_sizes(
            **sizes,
            http_batch=500,
            warmup_events=warmup_events,
            repeats=repeats,
            target=target,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    result = run_security_benchmark(
        _settings(ctx),
        **sizes,
        warmup_events=warmup_events,
        repeats=repeats,
        target=target,
        work_dir=work_dir,
        say=_say,
    )
    if as_json:
        print(json.dumps(result))
        return
    print("\n".join(report_lines(result)))


@bench_app.command("query")
def bench_query(
    ctx: typer.Context,
    events: Annotated[int, typer.Option(min=1, help="Events in the lake (silver).")] = 10_000_000,
    repeat: Annotated[
        int, typer.Option(min=1, help="Timed runs per query and engine (after a warm-up run).")
    ] = 10,
    lake_dir: Annotated[
        Path | None,
        typer.Option(
            help="The benchmark's lake (reused when it holds enough events); "
            "default <data_dir>/bench/query-lake."
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="duckdb, spark, both (the two), or duckdb-arrow: DuckDB reading every "
            "table as an Arrow dataset, for comparison; several separated by commas "
            "take turns on each query."
        ),
    ] = "both",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Dashboard queries and named analyses on a bulk-written lake: p50/p95, DuckDB vs Spark SQL."""
    from pulsecast.bench.query import DEFAULT_ENGINES, ENGINES, run_query_benchmark

    asked = DEFAULT_ENGINES if engine == "both" else tuple(e.strip() for e in engine.split(","))
    unknown = [e for e in asked if e not in ENGINES]
    if unknown:
        msg = f"--engine: unknown {', '.join(unknown)}; give {', '.join(ENGINES)} or both"
        raise PulsecastError(msg)
    results = run_query_benchmark(
        _settings(ctx),
        events=events,
        repeat=repeat,
        lake_dir=lake_dir,
        engines=asked,
        say=_say,
    )
    if as_json:
        print(json.dumps(results))
        return
    engines = [e for e in ENGINES if e in asked]
    rows = []
    for name, by_engine in results.items():
        cells = [name]
        for e in engines:
            figures = by_engine[e]
            if "error" in figures:
                cells += ["error", ""]
            else:
                cells += [f"{figures['p50_ms']:,.1f}", f"{figures['p95_ms']:,.1f}"]
        rows.append(cells)
    _print_table(["query", *[f"{e} {q} ms" for e in engines for q in ("p50", "p95")]], rows)
    for name, by_engine in results.items():
        for e in engines:
            if "error" in by_engine[e]:
                print(f"{name} on {e}: {by_engine[e]['error']}")


models_app = typer.Typer(
    help="The model registry (MLflow): versions, champion/challenger promotion, rollback.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")

_MODEL_CHOICES = ("forecaster", "detector", "all")


def _model_kinds(model: str) -> list[str]:
    if model not in _MODEL_CHOICES:
        msg = f"--model must be forecaster, detector or all, got {model!r}"
        raise PulsecastError(msg)
    return ["forecaster", "detector"] if model == "all" else [model]


def _print_train_report(report: Any) -> None:
    for note in report.notes:
        print(f"note: {note}")
    for m in report.models:
        state = "promoted to champion" if m.promoted else "not promoted"
        print(f"{report.stream} {m.kind} version {m.version}: {state} ({m.decision})")
        data = m.data
        print(
            f"  history {data['data.first_window']} .. {data['data.last_window']} "
            f"({int(data['data.gold_rows']):,} windows, {data['data.entities']} entities); "
            f"holdout from {data['data.holdout_from']}"
        )
        metrics = m.metrics
        if m.kind == "detector":
            print(
                f"  holdout: MAE {metrics['holdout_mae']:.4f} (hourly median vs window mean), "
                f"{metrics['holdout_coverage_3sd']:.1%} of windows within mean ± 3 sd, "
                f"{int(metrics['holdout_rows']):,} windows; "
                f"{int(metrics['profile_rows']):,} profile rows"
            )
            continue
        print(
            f"  forecast of the next {m.params['horizon_min']} min mean, "
            f"trained on {int(metrics['train_rows']):,} rows, "
            f"scored on {int(metrics['holdout_rows']):,} holdout rows in {m.seconds:.0f} s"
        )
        season = f"seasonal naive ({m.params['season_min']} min)"
        rows = [
            (label, f"{metrics[f'{key}_mae']:.4f}", f"{metrics[f'{key}_smape']:.3f}")
            for label, key in (
                ("model (GBT)", "holdout"),
                ("last value", "last_value"),
                (season, "seasonal"),
            )
        ]
        _print_table(("  forecast", "MAE", "sMAPE %"), [(f"  {r[0]}", *r[1:]) for r in rows])
        per = [
            (
                f"  {p['metric']}",
                f"{p['model_mae']:.4f}",
                f"{p['last_value_mae']:.4f}",
                f"{p['seasonal_mae']:.4f}",
                f"{p['model_smape']:.3f}",
                f"{p['last_value_smape']:.3f}",
                f"{p['seasonal_smape']:.3f}",
            )
            for p in m.per_metric
        ]
        if per:
            header = ("  metric", "MAE", "last", "seasonal", "sMAPE %", "last", "seasonal")
            _print_table(header, per)
        verdict = "beats" if m.beats_baselines else "does NOT beat"
        print(f"  the model {verdict} both baselines on MAE and sMAPE")
        if "champion_mae" in metrics:
            print(
                f"  on the same holdout rows: MAE {metrics['vs_champion_mae']:.4f}, champion "
                f"version {m.data.get('compared_with_version')} {metrics['champion_mae']:.4f}"
            )


@app.command()
def train(
    ctx: typer.Context,
    stream: Annotated[str, typer.Option(help="Stream whose gold history to learn from.")] = (
        "telemetry"
    ),
    model: Annotated[str, typer.Option(help="forecaster, detector or all.")] = "all",
    horizon_min: Annotated[
        int | None, typer.Option(help="Forecast the mean of the next H minutes (ml.horizon_min).")
    ] = None,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote/--no-promote",
            help="Make each new version champion if it beats the champion on the holdout.",
        ),
    ] = True,
    backfill_days: Annotated[
        float | None,
        typer.Option(
            help="First write N days of simulated history into the stream's lake tables "
            "(through the stream job's transforms; skipped if the stream has events).",
        ),
    ] = None,
    entities: Annotated[
        int | None, typer.Option(help="Machines of the backfill (simulator.entities).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Train the forecaster and the detector profile on history, register, promote."""
    from pulsecast.events.schema import SchemaRegistry
    from pulsecast.ml.train import train as run_train

    settings = _settings(ctx)
    kinds = _model_kinds(model)
    SchemaRegistry(settings.streams)[stream]  # unknown stream: fail before Spark
    if backfill_days is not None and backfill_days <= 0:
        msg = f"--backfill-days must be positive, got {backfill_days}"
        raise PulsecastError(msg)
    spark = _lake_spark(settings)  # the JVM's own output goes to stderr (--json)
    backfill = None
    if backfill_days is not None:
        from pulsecast.stream.backfill import backfill_simulated

        _say(f"backfilling {backfill_days:g} days of simulated history into {stream}...")
        backfill = backfill_simulated(
            spark, settings, stream, days=backfill_days, entities=entities, progress=_say
        )
        if backfill.skipped:
            _say(f"  backfill skipped: {backfill.skipped}")
        else:
            _say(
                f"  {backfill.events:,} events of {backfill.entities} machines in "
                f"{backfill.seconds:.0f} s; labels: {backfill.labels}"
            )
    report = run_train(
        spark,
        settings,
        stream,
        kinds=kinds,
        horizon_min=horizon_min,
        promote=promote,
        progress=_say,
    )
    if as_json:
        out = report.as_dict()
        if backfill is not None:
            out["backfill"] = backfill.as_dict()
        print(json.dumps(out))
        return
    _print_train_report(report)


@models_app.command("list")
def models_list(
    ctx: typer.Context,
    stream: Annotated[str, typer.Option(help="Stream whose models to list.")] = "telemetry",
    model: Annotated[str, typer.Option(help="forecaster, detector or all.")] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """List model versions with their holdout metrics, data range and champion."""
    from pulsecast.ml.registry import ModelRegistry

    settings = _settings(ctx)
    kinds = _model_kinds(model)
    registry = ModelRegistry(settings)
    versions = [v for k in kinds for v in registry.versions(stream, k)]
    if as_json:
        print(json.dumps({"stream": stream, "versions": [v.as_dict() for v in versions]}))
        return
    if not versions:
        print(f"no models of {stream} yet: train one with `pulsecast train --stream {stream}`")
        return

    def metric(v: Any, name: str, fmt: str) -> str:
        value = v.metrics.get(name)
        return "-" if value is None else format(value, fmt)

    rows = [
        (
            v.name,
            str(v.version),
            "champion" if v.champion else "",
            v.created.strftime("%Y-%m-%d %H:%M"),
            v.params.get("horizon_min", "-"),
            metric(v, "holdout_mae", ".4f"),
            metric(v, "holdout_smape", ".3f"),
            metric(v, "last_value_mae", ".4f"),
            metric(v, "seasonal_mae", ".4f"),
            f"{v.tags.get('data.first_window', '?')[:16]} .. "
            f"{v.tags.get('data.last_window', '?')[:16]}",
            v.tags.get("git_commit", v.tags.get("pulsecast_version", "?"))[:10],
        )
        for v in versions
    ]
    header = (
        "model",
        "version",
        "alias",
        "created (UTC)",
        "horizon",
        "MAE",
        "sMAPE %",
        "last MAE",
        "seas. MAE",
        "history",
        "code",
    )
    _print_table(header, rows)


@models_app.command("promote")
def models_promote(
    ctx: typer.Context,
    version: Annotated[int, typer.Argument(help="The version to make champion.")],
    stream: Annotated[str, typer.Option(help="The model's stream.")] = "telemetry",
    model: Annotated[str, typer.Option(help="forecaster or detector.")] = "forecaster",
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if it does not beat the champion.")
    ] = False,
) -> None:
    """Make VERSION the champion if it beats the current champion on the holdout."""
    from pulsecast.ml.registry import ModelRegistry, model_name

    if model not in ("forecaster", "detector"):
        msg = f"--model must be forecaster or detector, got {model!r}"
        raise PulsecastError(msg)
    decision = ModelRegistry(_settings(ctx)).promote(stream, model, version, force=force)
    name = model_name(stream, model)
    if decision.promote:
        print(f"{name} version {version} is the champion: {decision.reason}")
    else:
        print(f"{name} version {version}: {decision.reason}")


@models_app.command("rollback")
def models_rollback(
    ctx: typer.Context,
    stream: Annotated[str, typer.Option(help="The model's stream.")] = "telemetry",
    model: Annotated[str, typer.Option(help="forecaster or detector.")] = "forecaster",
) -> None:
    """Make the previous champion the champion again."""
    from pulsecast.ml.registry import ModelRegistry, model_name

    if model not in ("forecaster", "detector"):
        msg = f"--model must be forecaster or detector, got {model!r}"
        raise PulsecastError(msg)
    demoted, restored = ModelRegistry(_settings(ctx)).rollback(stream, model)
    print(
        f"{model_name(stream, model)}: version {restored} is the champion again "
        f"(version {demoted} demoted)"
    )


def main() -> None:
    """Entry point of the ``pulsecast`` console script."""
    app()

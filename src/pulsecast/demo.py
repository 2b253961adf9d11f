"""`pulsecast demo`: the platform's main job on the embedded stack.

Brings the local stack up, starts the streaming job (Spark), streams simulated
fleet telemetry (with a small share of deliberately invalid events) through
the validating producer while the job turns it into bronze, silver and gold
Delta tables and warehouse rows, then waits for the job to catch up and close
its windows, reads the stream and its dead-letter topic back from Kafka, and
checks that every accepted event arrived and every rejected one was
dead-lettered.

It also starts the optional servers it is given (``pulsecast demo`` asks for
the dashboard and Prometheus): the live dashboard's URL is printed as soon as
the stack is up, Prometheus scrapes the streaming job while it runs, and both
keep running after the demo (``pulsecast down`` stops them).

With ``history_days`` (the default), before any live event it also gives the
platform something to learn from and something to find: days of simulated
fleet history, with the simulator's labelled anomalies, are backfilled into
the lake (:mod:`pulsecast.stream.backfill`), and the forecaster and the
detector profile are trained on it and promoted (when the stream has no
champion yet). The streaming job's scoring query then scores that history and
the live minutes as one stream, forecasting with the champion; at the end the
demo compares the alerts it raised with the labels (precision, recall, F1 and
the median detection delay, after a warm-up of a quarter of the history).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pulsecast.bus.admin import TopicAdmin
from pulsecast.bus.consumer import end_offsets, read_since
from pulsecast.bus.topics import topic_name
from pulsecast.config import Settings
from pulsecast.events.envelope import DLQ_HEADER_SOURCE
from pulsecast.services.stack import Stack
from pulsecast.sources.produce import run_simulator
from pulsecast.sources.runner import ProduceSummary

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pulsecast.ml.groundtruth import DetectionQuality
    from pulsecast.stream.backfill import BackfillResult
    from pulsecast.stream.job import JobStats

__all__ = ["DemoResult", "run_demo"]

STREAM = "telemetry"


@dataclass
class DemoResult:
    """What the demo did and whether it all added up."""

    produced: ProduceSummary
    events_read: int
    dead_letters_read: int
    labels: str
    services: list[str] = field(default_factory=list)
    processed: JobStats | None = None
    tables: dict[str, int] = field(default_factory=dict)
    warehouse_rows: int = 0
    ml: list[str] = field(default_factory=list)
    watch: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every accepted event is on the stream, every rejected one in the DLQ."""
        return (
            self.events_read == self.produced.accepted
            and self.dead_letters_read == self.produced.rejected
        )

    def lines(self) -> list[str]:
        """A short human summary."""
        p = self.produced
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(p.reasons.items())) or "none"
        return [
            "",
            "pulsecast demo",
            f"  services        {', '.join(self.services)}",
            f"  events sent     {p.sent:,} in {p.seconds:.1f} s ({p.rate_eps:,.0f} events/s)",
            f"  accepted        {p.accepted:,}",
            f"  rejected        {p.rejected:,} (reasons: {reasons})",
            f"  read back       {self.events_read:,} from {topic_name(STREAM)}, "
            f"{self.dead_letters_read:,} from {topic_name(STREAM, 'dlq')}",
            f"  labels          {self.labels}",
            *self._stream_lines(),
            *self.ml,
            *self.watch,
            f"  result          {'OK: nothing lost' if self.ok else 'MISMATCH'}",
        ]

    def _stream_lines(self) -> list[str]:
        if self.processed is None:
            return []
        s = self.processed
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(s.rejected.items())) or "none"
        tables = ", ".join(f"{name} {rows:,}" for name, rows in self.tables.items())
        return [
            f"  stream job      {s.records:,} records in {s.batches} batches: {s.valid:,} valid, "
            f"rejected: {rejected}",
            f"  lake rows       {tables}",
            f"  warehouse rows  {self.warehouse_rows:,} in pulsecast.gold_aggregates",
            '  try             pulsecast sql "SELECT * FROM gold_telemetry_1m LIMIT 5"',
        ]


def _ends(settings: Settings, topic: str) -> dict[int, int]:
    return end_offsets(settings, topic, TopicAdmin(settings).partitions(topic))


#: How to log in to a dashboard that asks for a login (secure mode).
_LOGIN_HINT = (
    "an API key with the read role; `pulsecast security apikey create demo-reader --role read` "
    "prints one"
)


def run_demo(
    settings: Settings,
    *,
    minutes: float = 0.5,
    rate_eps: float = 2000.0,
    stream_job: bool = True,
    history_days: float = 1.0,
    entities: int | None = None,
    with_: Sequence[str] = (),
    say: Callable[[str], None] = lambda _t: None,
) -> DemoResult:
    """Run the demo; see the module's description.

    Args:
        settings: The platform's settings.
        minutes: How long to produce live events.
        rate_eps: Live events per second.
        stream_job: Run the Spark streaming job (without it, only Kafka is exercised).
        history_days: Days of simulated history to backfill and train on; 0 for none.
        entities: Machines simulated; default ``simulator.entities``.
        with_: Optional servers to start too (``dashboard``, ``prometheus``...).
        say: Called with a line of progress.
    """
    statuses = Stack(settings, with_=list(with_)).up(progress=say)
    if "dashboard" in with_:
        say(f"watch it live: the dashboard is at {settings.dashboard.url}")
        if settings.dashboard.auth:
            say(f"  it asks for a login: {_LOGIN_HINT}")
    if entities:
        settings = settings.model_copy(
            update={"simulator": settings.simulator.model_copy(update={"entities": entities})}
        )
    job = None
    models: Models | None = None
    if stream_job:
        from pulsecast.stream.job import StreamJob
        from pulsecast.stream.session import spark_session

        spark = spark_session(settings, app_name="pulsecast-demo")
        if history_days > 0:
            models = _history_and_models(spark, settings, history_days, say)
        say(f"starting the streaming job on Spark ({settings.spark.master})...")
        job = StreamJob(spark, settings, streams=[STREAM])
        job.start()
    events_topic, dlq_topic = topic_name(STREAM), topic_name(STREAM, "dlq")
    before_events, before_dlq = _ends(settings, events_topic), _ends(settings, dlq_topic)
    sim = settings.simulator.model_copy(
        update={
            "rate_eps": rate_eps,
            "invalid_fraction": max(settings.simulator.invalid_fraction, 0.002),
        }
    )
    say(f"producing simulated telemetry for {minutes:g} min at {rate_eps:,.0f} events/s...")
    summary, labels = run_simulator(
        settings,
        sim,
        stream=STREAM,
        seconds=minutes * 60,
        progress=lambda s: say(f"  {s.sent:,} sent, {s.rejected:,} rejected"),
    )
    say("reading the stream and its dead-letter topic back...")
    events = read_since(settings, events_topic, before_events)
    # The producer's dead letters: the streaming job, already running, may dead-letter
    # records (late ones) into the same topic meanwhile (source "stream").
    dead = [
        r
        for r in read_since(settings, dlq_topic, before_dlq)
        if r.headers.get(DLQ_HEADER_SOURCE) != "stream"
    ]
    result = DemoResult(
        produced=summary,
        events_read=len(events),
        dead_letters_read=len(dead),
        labels=str(labels),
        services=[f"{s.name} ({s.address})" for s in statuses if s.running],
    )
    if job is not None:
        say("waiting for the streaming job to catch up and close its windows...")
        result.processed = job.wait(until_idle=True, max_seconds=600)[STREAM]
        result.tables = _table_rows(settings)
        result.warehouse_rows = _warehouse_rows(settings)
        if models is not None:
            result.ml = models.lines(settings, result.processed, labels)
    result.watch = _watch_lines(settings, with_)
    return result


def _watch_lines(settings: Settings, with_: Sequence[str]) -> list[str]:
    """Where to look now: the dashboard, and what Prometheus scraped from the job."""
    lines = []
    if "dashboard" in with_:
        lines.append(
            f"  dashboard       {settings.dashboard.url} (live; `pulsecast down` stops it)"
        )
        if settings.dashboard.auth:
            lines.append(f"  login           {_LOGIN_HINT}")
    if "prometheus" in with_:
        lines.append(
            f"  prometheus      {settings.monitoring.prometheus_url}: {_scraped(settings)}"
        )
    return lines


def _scraped(settings: Settings) -> str:
    """What Prometheus last scraped of the streaming job's record counter."""
    import httpx

    query = f'max(max_over_time(pulsecast_stream_records_total{{stream="{STREAM}"}}[1h]))'
    url = f"{settings.monitoring.prometheus_url}/api/v1/query"
    try:
        answer = httpx.get(url, params={"query": query}, timeout=5).json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"could not be queried ({exc})"
    found = answer.get("data", {}).get("result", [])
    if not found:
        return "has no sample of the streaming job yet"
    records = float(found[0]["value"][1])
    return f"scraped the streaming job: {records:,.0f} records at its last scrape"


@dataclass
class Models:
    """The history the demo backfilled and the models it trained on it."""

    history: BackfillResult
    trained: list[str]

    def lines(self, settings: Settings, processed: JobStats, live_labels: Path) -> list[str]:
        """Models, live scoring, and the alerts against the simulator's labels."""
        h = self.history
        if h.skipped:
            history = f"kept ({h.skipped})"
        else:
            history = (
                f"{h.events:,} events of {h.entities} machines over "
                f"{(h.end - h.start).total_seconds() / 3600:g} h "
                f"(to {h.end:%Y-%m-%d %H:%M} UTC), backfilled in {h.seconds:.0f} s"
            )
        version = f"version {processed.model_version}" if processed.model_version else "none"
        lines = [
            f"  history         {history}",
            *(f"  trained         {line}" for line in self.trained),
            f"  live scoring    {processed.scored:,} windows scored, "
            f"{processed.flagged:,} flagged; {processed.forecasts:,} forecasts by the "
            f"forecaster {version}",
        ]
        if h.labels is None:
            return [*lines, "  ground truth    none: the history was not simulated by this run"]
        quality = _quality(settings, [h.labels, live_labels], h.start + (h.end - h.start) / 4)
        delay = quality.median_delay_s
        return [
            *lines,
            f"  vs ground truth {quality.detected} of {quality.labels} labelled anomalies "
            f"detected (recall {quality.recall:.2f}); {quality.true_alerts} of "
            f"{quality.alerts} alerts true (precision {quality.precision:.2f}); "
            f"F1 {quality.f1:.2f}; median delay "
            f"{'-' if delay is None else f'{delay:.0f} s'}",
            '  try             pulsecast sql "SELECT * FROM gold_telemetry_scores '
            'WHERE flagged ORDER BY score DESC LIMIT 10"',
        ]


def _history_and_models(
    spark: SparkSession, settings: Settings, days: float, say: Callable[[str], None]
) -> Models:
    """Backfill history into an empty stream, then train and promote the missing models."""
    from pulsecast.ml.registry import ModelRegistry
    from pulsecast.ml.train import train
    from pulsecast.stream.backfill import backfill_simulated

    say(f"backfilling {days:g} days of simulated history into {STREAM}...")
    history = backfill_simulated(spark, settings, STREAM, days=days, progress=say)
    if history.skipped:
        say(f"  {history.skipped}: kept")
    registry = ModelRegistry(settings)
    kinds = [k for k in ("forecaster", "detector") if registry.champion(STREAM, k) is None]
    trained = []
    if kinds:
        say(f"training the {' and the '.join(kinds)} on the history...")
        report = train(spark, settings, STREAM, kinds=kinds, progress=lambda t: say(f"  {t}"))
        for model in report.models:
            state = "champion" if model.promoted else f"not promoted ({model.decision})"
            mae = model.metrics["holdout_mae"]
            extra = ""
            if model.kind == "forecaster":
                extra = (
                    f"; baselines: last value {model.metrics['last_value_mae']:.3f}, "
                    f"seasonal {model.metrics['seasonal_mae']:.3f}"
                )
            trained.append(
                f"{model.kind} version {model.version}, {state}: holdout MAE {mae:.3f}{extra}"
            )
    else:
        trained.append("nothing: the forecaster and the detector have champions")
    return Models(history, trained)


def _quality(
    settings: Settings, label_files: list[Path], scored_from: datetime
) -> DetectionQuality:
    """The stream's alerts (flagged scores in the lake) against the labels."""
    from pulsecast.ml.groundtruth import lake_alerts, match_alerts, read_labels

    alerts = lake_alerts(settings, STREAM)
    labels = [label for path in label_files if path.exists() for label in read_labels(path)]
    return match_alerts(labels, alerts, scored_from=scored_from)


def _table_rows(settings: Settings) -> dict[str, int]:
    from pulsecast.analytics.sql import lake_tables, run_sql

    names = [n for n in lake_tables(settings) if n.endswith(STREAM) or f"_{STREAM}_" in n]
    counts = {}
    for name in names:
        counts[name] = int(run_sql(settings, f"SELECT count(*) FROM {name}").rows[0][0])  # noqa: S608
    return counts


def _warehouse_rows(settings: Settings) -> int:
    from pulsecast.warehouse.schema import GOLD_TABLE, Warehouse

    with Warehouse(settings).connect() as conn:
        query = f"SELECT count(*) FROM {GOLD_TABLE} WHERE stream = %s"  # noqa: S608 (constant)
        row = conn.execute(query, (STREAM,)).fetchone()
    return int(row[0]) if row else 0

"""`pulsecast demo`: the platform's main job on the embedded stack.

Brings the local stack up, starts the streaming job (Spark), streams simulated
fleet telemetry (with a small share of deliberately invalid events) through
the validating producer while the job turns it into bronze, silver and gold
Delta tables and warehouse rows, then waits for the job to catch up and close
its windows, reads the stream and its dead-letter topic back from Kafka, and
checks that every accepted event arrived and every rejected one was
dead-lettered. Later stages (models, dashboard) extend it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pulsecast.bus.admin import TopicAdmin
from pulsecast.bus.consumer import end_offsets, read_since
from pulsecast.bus.topics import topic_name
from pulsecast.config import Settings
from pulsecast.services.stack import Stack
from pulsecast.sources.produce import run_simulator
from pulsecast.sources.runner import ProduceSummary

if TYPE_CHECKING:
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


def run_demo(
    settings: Settings,
    *,
    minutes: float = 0.5,
    rate_eps: float = 2000.0,
    stream_job: bool = True,
    say: Callable[[str], None] = lambda _t: None,
) -> DemoResult:
    """Run the demo; see the module's description."""
    statuses = Stack(settings).up(progress=say)
    job = None
    if stream_job:
        from pulsecast.stream.job import StreamJob
        from pulsecast.stream.session import spark_session

        say(f"starting the streaming job on Spark ({settings.spark.master})...")
        job = StreamJob(
            spark_session(settings, app_name="pulsecast-demo"), settings, streams=[STREAM]
        )
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
    dead = read_since(settings, dlq_topic, before_dlq)
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
    return result


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

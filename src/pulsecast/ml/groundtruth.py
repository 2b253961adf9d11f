"""Detections against the simulator's ground truth: precision, recall, F1, delay.

The simulator writes one label per injected anomaly (entity, metric, kind,
first and last affected reading; ``pulsecast.sources.simulator``). The live
pipeline raises alerts per entity, series and window
(``pulsecast.stream.scoring``). An alert **matches** a label when:

- it is about the same entity;
- its series belongs to the label's metric: the metric's mean (``cpu_util``)
  or its standard deviation (``cpu_util.log_stddev``); for a dropout (metric
  ``*``), any series of the entity;
- its window overlaps the anomaly, or starts at most ``tolerance`` after it
  ended. A drift is often only caught late, and a dropout only when data
  returns.

Recall is the share of labels matched by at least one alert. Precision is the
share of alerts that match at least one label. The delay of a detected label
is the end of its first matching alert's window minus the anomaly's start,
measured in event time: the earliest moment the window's score could exist.
Only labels that start, and alerts whose window ends, at or after
``scored_from`` count: before that the detectors are warming up.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pulsecast.config import Settings

__all__ = ["Alert", "DetectionQuality", "Label", "lake_alerts", "match_alerts", "read_labels"]


@dataclass(frozen=True)
class Label:
    """One injected anomaly (a line of the simulator's labels file)."""

    entity: str
    metric: str
    kind: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Alert:
    """One flagged window of one series."""

    entity: str
    series: str
    window_start: datetime
    window_end: datetime


@dataclass(frozen=True)
class DetectionQuality:
    """How the alerts compare with the labels.

    Attributes:
        labels: Labels counted.
        detected: Labels matched by at least one alert.
        alerts: Alerts counted.
        true_alerts: Alerts that match a label.
        median_delay_s: Median delay of the detected labels, seconds (None if none).
        recall_by_kind: Recall per anomaly kind.
    """

    labels: int
    detected: int
    alerts: int
    true_alerts: int
    median_delay_s: float | None
    recall_by_kind: dict[str, float] = field(default_factory=dict)

    @property
    def precision(self) -> float:
        """Share of alerts that match a label (1 when there are no alerts)."""
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        """Share of labels detected (1 when there are no labels)."""
        return self.detected / self.labels if self.labels else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, object]:
        """Plain values for JSON output."""
        return {
            "labels": self.labels,
            "detected": self.detected,
            "alerts": self.alerts,
            "true_alerts": self.true_alerts,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "median_delay_s": self.median_delay_s,
            "recall_by_kind": {k: round(v, 4) for k, v in sorted(self.recall_by_kind.items())},
        }


def read_labels(path: Path) -> list[Label]:
    """The simulator's labels file (JSON Lines).

    Raises:
        ValueError: A line is not a label; the message names the file and line.
    """
    labels = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            start, end = (datetime.fromisoformat(raw[k]) for k in ("start", "end"))
            if start.tzinfo is None or end.tzinfo is None:
                msg = "start and end need a time zone"
                raise ValueError(msg)
            labels.append(Label(raw["entity_id"], raw["metric"], raw["kind"], start, end))
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"{path}:{number}: not a simulator label: {exc}"
            raise ValueError(msg) from exc
    return labels


def _related(label: Label, alert: Alert) -> bool:
    if label.entity != alert.entity:
        return False
    if label.metric == "*":
        return True
    return alert.series == label.metric or alert.series.startswith(label.metric + ".")


def match_alerts(
    labels: Sequence[Label],
    alerts: Iterable[Alert],
    *,
    tolerance: timedelta = timedelta(minutes=5),
    scored_from: datetime | None = None,
) -> DetectionQuality:
    """Compare alerts with labels (see the module's description for the rules).

    Args:
        labels: The ground truth.
        alerts: The alerts raised.
        tolerance: How long after an anomaly ends an alert still counts for it.
        scored_from: Ignore labels starting, and alerts ending, before this time.

    Returns:
        Counts, precision, recall, F1 and the median delay.
    """
    counted = [lb for lb in labels if scored_from is None or lb.start >= scored_from]
    raised = [a for a in alerts if scored_from is None or a.window_end >= scored_from]
    by_entity: dict[str, list[Label]] = {}
    for label in labels:  # every label can explain an alert, even one before scored_from
        by_entity.setdefault(label.entity, []).append(label)
    first_end: dict[int, datetime] = {}
    true_alerts = 0
    for alert in raised:
        hit = False
        for label in by_entity.get(alert.entity, []):
            if not _related(label, alert):
                continue
            if alert.window_end > label.start and alert.window_start <= label.end + tolerance:
                hit = True
                key = id(label)
                if key not in first_end or alert.window_end < first_end[key]:
                    first_end[key] = alert.window_end
        true_alerts += hit
    delays = [
        max((first_end[id(lb)] - lb.start).total_seconds(), 0.0)
        for lb in counted
        if id(lb) in first_end
    ]
    kinds = Counter(lb.kind for lb in counted)
    found = Counter(lb.kind for lb in counted if id(lb) in first_end)
    return DetectionQuality(
        labels=len(counted),
        detected=len(delays),
        alerts=len(raised),
        true_alerts=true_alerts,
        median_delay_s=statistics.median(delays) if delays else None,
        recall_by_kind={kind: found[kind] / n for kind, n in kinds.items()},
    )


def lake_alerts(settings: Settings, stream: str) -> list[Alert]:
    """The alerts a stream's live scoring raised: its flagged rows in ``gold_<stream>_scores``."""
    from pulsecast.analytics.sql import run_sql

    rows = run_sql(
        settings,
        f"SELECT key, metric, window_start, window_end FROM gold_{stream}_scores "  # noqa: S608
        "WHERE flagged",
    ).rows
    return [Alert(str(k), str(m), _utc(start), _utc(end)) for k, m, start, end in rows]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

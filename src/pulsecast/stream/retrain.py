"""Retraining by the streaming job: on a schedule, and when the live forecast error drifts.

Each stream whose scoring forecasts live has a :class:`Retrainer`. The job
asks it at every poll whether a retraining is due:

- **drift** (``ml.retrain_on_drift``): the scoring sink's
  :class:`~pulsecast.ml.live_error.DriftMonitor` says the champion's live
  error has stayed above ``ml.drift_ratio`` times its holdout error for a
  whole ``ml.drift_window_min`` of event time;
- **schedule** (``ml.retrain_interval_min``, 0 = off): that long has passed
  since the latest of: the job's start, its last retraining of the stream,
  the training of the champion in use.

Then it trains the forecaster on the gold history (:func:`pulsecast.ml.train.train`)
in a background thread of the job's own Spark application, registers the
version with the trigger as its ``trigger`` tag, and promotes it if it beats
the champion on the same holdout (champion/challenger). The scoring sink loads
a new champion at its next look at the registry; nothing restarts. At most one
retraining per stream runs at a time, and two start at least
``ml.retrain_cooldown_min`` apart, so a drift that retraining does not cure
(or a history too short to train on) does not retrain over and over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pulsecast.config import Settings
from pulsecast.stream.scoring import ScoreWriter

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pulsecast.ml.train import TrainReport

__all__ = ["RetrainOutcome", "Retrainer"]

log = logging.getLogger(__name__)

Train = Callable[..., "TrainReport"]


@dataclass(frozen=True)
class RetrainOutcome:
    """One retraining by the job.

    Attributes:
        trigger: Why it ran.
        version: The version registered (None if training failed).
        promoted: Whether it became the champion.
        detail: The promotion decision, or the error.
        seconds: How long it took.
    """

    trigger: str
    version: int | None
    promoted: bool
    detail: str
    seconds: float


class Retrainer:
    """When and how the job retrains one stream's forecaster (see the module's description).

    Args:
        spark: The job's session.
        settings: The platform's settings (``ml`` section).
        stream: The stream.
        scorer: The stream's scoring sink (its forecaster and drift monitor).
        train: The training function (:func:`pulsecast.ml.train.train`).
    """

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        stream: str,
        scorer: ScoreWriter,
        train: Train | None = None,
    ) -> None:
        if train is None:
            from pulsecast.ml.train import train as train_models

            train = train_models
        self.spark = spark
        self.settings = settings
        self.stream = stream
        self.scorer = scorer
        self._train = train
        self.started_at = datetime.now(UTC)
        self.outcomes: list[RetrainOutcome] = []
        self._thread: threading.Thread | None = None
        self._last_start = -float("inf")
        self._last_attempt_at: datetime | None = None

    @property
    def running(self) -> bool:
        """Whether a retraining is in progress."""
        return self._thread is not None and self._thread.is_alive()

    def due(self, now: datetime | None = None) -> str | None:
        """Why a retraining should start now, or None."""
        ml = self.settings.ml
        if self.running or self.scorer.forecaster is None:
            return None
        if time.monotonic() - self._last_start < ml.retrain_cooldown_min * 60:
            return None
        drift = self.scorer.stats.drift
        if ml.retrain_on_drift and drift is not None and drift.drifting:
            return f"drift of version {drift.model_version}: {drift.reason}"
        if ml.retrain_interval_min > 0:
            champion = self.scorer.forecaster.champion
            marks = {"the job started": self.started_at}
            if champion is not None:
                marks[f"version {champion.version} was trained"] = champion.trained_at
            if self._last_attempt_at is not None:
                marks["the last retraining"] = self._last_attempt_at
            what, since = max(marks.items(), key=lambda mark: mark[1])
            if (now or datetime.now(UTC)) - since >= timedelta(minutes=ml.retrain_interval_min):
                return f"schedule: {ml.retrain_interval_min:g} min since {what}"
        return None

    def poll(self) -> bool:
        """Start a retraining in the background if one is due; whether one started."""
        trigger = self.due()
        if trigger is None:
            return False
        self._last_start = time.monotonic()
        self._last_attempt_at = datetime.now(UTC)
        log.info("retraining the %s forecaster (%s)", self.stream, trigger)
        self._thread = threading.Thread(
            target=self._run, args=(trigger,), name=f"pulsecast-retrain-{self.stream}", daemon=True
        )
        self._thread.start()
        return True

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until a retraining in progress ends (or ``timeout_s`` passes)."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self, trigger: str) -> None:
        started = time.monotonic()
        kind = trigger.split(" ", 1)[0].rstrip(":")  # drift or schedule
        outcome: RetrainOutcome
        try:
            report = self._train(
                self.spark,
                self.settings,
                self.stream,
                kinds=("forecaster",),
                promote=True,
                trigger=kind,
            )
            model = report.models[0]
            outcome = RetrainOutcome(
                trigger, model.version, model.promoted, model.decision, time.monotonic() - started
            )
            log.info(
                "retrained the %s forecaster (%s): version %s, %s: %s",
                self.stream,
                kind,
                model.version,
                "promoted" if model.promoted else "not promoted",
                model.decision,
            )
        except Exception as exc:  # the job goes on with the model it has
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            outcome = RetrainOutcome(trigger, None, False, detail, time.monotonic() - started)
            log.warning("retraining the %s forecaster failed (%s): %s", self.stream, kind, detail)
        self.outcomes.append(outcome)

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON output."""
        return {
            "running": self.running,
            "retrainings": [o.__dict__ for o in self.outcomes],
        }

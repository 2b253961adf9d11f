"""When the streaming job retrains: on drift, on its schedule, never twice at once or too often.

The training function is a stand-in that records its calls (training itself is
tested on real Spark in tests/integration/test_ml_train.py and, started by the
job, in tests/integration/test_live_forecasts.py).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pulsecast.config import Settings
from pulsecast.ml.live_error import DriftStatus
from pulsecast.ml.train import ModelReport, TrainReport
from pulsecast.stream.forecasting import Champion
from pulsecast.stream.retrain import Retrainer
from pulsecast.stream.scoring import ScoreWriter
from pulsecast.testing import settings_for

TRAINED = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Trainings:
    """Records each call; a call blocks until released when ``hold`` is set."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.fail = fail

    def __call__(self, spark: object, settings: Settings, stream: str, **options: Any) -> Any:
        self.calls.append({"stream": stream, **options})
        self.hold.wait(10)
        if self.fail:
            msg = "no gold table at file:///lake: run the stream job"
            raise RuntimeError(msg)
        model = ModelReport("forecaster", 7, True, "it beats the champion", 7, {}, [], {}, {}, 1.0)
        return TrainReport(stream, models=[model])


def retrainer(tmp_path: Path, trainings: Trainings, **ml: Any) -> Retrainer:
    settings = settings_for(tmp_path, ml=ml)
    scorer = ScoreWriter(settings, "telemetry", None)
    return Retrainer(None, settings, "telemetry", scorer, train=trainings)  # type: ignore[arg-type]


def crown(job: Retrainer, version: int = 3, trained_at: datetime = TRAINED) -> None:
    assert job.scorer.forecaster is not None
    job.scorer.forecaster.champion = Champion(
        model=None,  # type: ignore[arg-type]
        version=version,
        holdout_mae={"t": 1.0},
        trained_at=trained_at,
    )


def drifting(version: int = 3) -> DriftStatus:
    return DriftStatus(version, {"t": 5.0}, {"t": 1.0}, 40, 1740, True, "live MAE of t is 5.0x")


def test_drift_retrains_once_and_the_outcome_is_recorded(tmp_path: Path) -> None:
    trainings = Trainings()
    job = retrainer(tmp_path, trainings, retrain_interval_min=0)
    crown(job)
    assert job.due() is None
    job.scorer.stats.drift = drifting()
    assert job.due() == "drift of version 3: live MAE of t is 5.0x"
    assert job.poll()
    job.wait(10)
    assert trainings.calls == [
        {
            "stream": "telemetry",
            "kinds": ("forecaster",),
            "promote": True,
            "trigger": "drift",
        }
    ]
    (outcome,) = job.outcomes
    assert (outcome.version, outcome.promoted, outcome.detail) == (7, True, "it beats the champion")
    # Still drifting (the new champion is not loaded yet): the cooldown holds it back.
    assert job.due() is None and not job.poll()


def test_the_schedule_counts_from_the_latest_training_or_the_start(tmp_path: Path) -> None:
    job = retrainer(tmp_path, Trainings(), retrain_interval_min=60, retrain_cooldown_min=0)
    start = job.started_at
    assert job.due(start + timedelta(minutes=59)) is None
    assert job.due(start + timedelta(minutes=60)) == "schedule: 60 min since the job started"
    crown(job, trained_at=start + timedelta(minutes=30))
    assert job.due(start + timedelta(minutes=60)) is None
    assert job.due(start + timedelta(minutes=90)) == (
        "schedule: 60 min since version 3 was trained"
    )
    job.started_at -= timedelta(minutes=120)  # a retraining now, not yet loaded by scoring
    crown(job, trained_at=job.started_at)
    assert job.poll()
    job.wait(10)
    assert job.outcomes
    later = datetime.now(UTC)
    assert job.due(later + timedelta(minutes=59)) is None
    assert job.due(later + timedelta(minutes=61)) == ("schedule: 60 min since the last retraining")


def test_no_retraining_while_one_runs_or_when_switched_off(tmp_path: Path) -> None:
    trainings = Trainings()
    trainings.hold.clear()
    job = retrainer(tmp_path, trainings, retrain_interval_min=0, retrain_cooldown_min=0)
    crown(job)
    job.scorer.stats.drift = drifting()
    assert job.poll()
    assert job.running and job.due() is None
    trainings.hold.set()
    job.wait(10)
    assert job.due() is not None  # no cooldown set
    off = retrainer(tmp_path, Trainings(), retrain_interval_min=0, retrain_on_drift=False)
    crown(off)
    off.scorer.stats.drift = drifting()
    assert off.due() is None
    no_forecasts = retrainer(tmp_path, Trainings(), live_forecasts=False)
    assert no_forecasts.due(datetime.now(UTC) + timedelta(days=30)) is None


def test_a_failed_retraining_is_recorded_and_the_job_goes_on(tmp_path: Path) -> None:
    job = retrainer(tmp_path, Trainings(fail=True), retrain_interval_min=0)
    crown(job)
    job.scorer.stats.drift = drifting()
    assert job.poll()
    job.wait(10)
    (outcome,) = job.outcomes
    assert outcome.version is None and not outcome.promoted
    assert outcome.detail == "no gold table at file:///lake: run the stream job"

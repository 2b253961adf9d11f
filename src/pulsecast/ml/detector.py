"""The online anomaly detector: causal, per series, a few numbers of state.

One :class:`NoveltyDetector` watches one series (an entity's metric). For each
new observation it asks how far the value lies outside what the series has
done before, in two contexts:

* **all of its history**: the range ``[lo, hi]`` of the values seen so far,
  which forgets slowly (both ends relax towards the recent level by
  ``range_decay`` per observation, a half-life of about 7,000 observations by
  default), so one old incident does not blind the detector for good;
* **its time of day**: the range of the values seen in the same slot of the
  day (``slot_s`` long; 4 h by default), once that slot has seen
  ``min_slot_obs`` values, weighted by ``slot_weight``. This catches a daily
  pattern that breaks (a missing peak, a flat day, a jump at an unusual hour)
  with values that are ordinary for the series as a whole.

The excess beyond the range, in units of the whole range's width, is the
*novelty*; the anomaly score is ``novelty / (novelty + flag_novelty)``, in
[0, 1), so a novelty of ``flag_novelty`` (0.2) scores 0.5 and raises the flag. After
a flag the detector rests for ``rest_points`` observations (scores 0): an
incident is one alert, not one per point.

The score at an observation uses only the observations before it (the state
is updated after scoring), so a future value can never change a past score.
The state is a handful of floats (:class:`DetectorState`), serialised with
msgspec, so the streaming job keeps it in Spark's per-key state and
``pulsecast detect`` replays the very same code over files.

The parameters were chosen on the NAB development subset
(``benchmarks/nab.py``; docs/ml.md gives the scores and the variants tried).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from pulsecast.config import DetectorSettings

__all__ = ["DetectorParams", "DetectorState", "NoveltyDetector", "score_series"]

_DAY_S = 86_400
_RELATIVE_NOISE = 1e-9
_ABSOLUTE_NOISE = 1e-12


@dataclass(frozen=True)
class DetectorParams:
    """How the detector judges novelty; the defaults are the tuned ones.

    Attributes:
        slot_s: Length of a time-of-day slot, seconds; must divide a day.
        min_slot_obs: Observations a slot needs before its own range is used.
        slot_weight: Weight of the time-of-day novelty against the whole range's.
        warmup_points: Observations before the first score (scores 0 until then).
        range_decay: Per observation, the share by which each end of the whole
            range moves towards the recent level (0 never forgets).
        level_alpha: Smoothing of the recent level the range relaxes towards.
        rest_points: Observations scored 0 after a flag.
        flag_novelty: Novelty (excess over the range, in range widths) that
            scores 0.5 and raises the flag.
    """

    slot_s: int = 14_400
    min_slot_obs: int = 48
    slot_weight: float = 0.5
    warmup_points: int = 50
    range_decay: float = 1e-4
    level_alpha: float = 0.01
    rest_points: int = 20
    flag_novelty: float = 0.2

    def __post_init__(self) -> None:
        if self.slot_s <= 0 or _DAY_S % self.slot_s:
            msg = f"slot_s must divide a day (86400 s) evenly, got {self.slot_s}"
            raise ValueError(msg)
        if self.flag_novelty <= 0:
            msg = f"flag_novelty must be positive, got {self.flag_novelty}"
            raise ValueError(msg)
        if not 0 <= self.range_decay < 1 or not 0 < self.level_alpha <= 1:
            msg = (
                "range_decay must be in [0, 1) and level_alpha in (0, 1], got "
                f"{self.range_decay} and {self.level_alpha}"
            )
            raise ValueError(msg)
        if min(self.min_slot_obs, self.warmup_points, self.rest_points) < 0:
            msg = "min_slot_obs, warmup_points and rest_points must not be negative"
            raise ValueError(msg)

    @classmethod
    def from_settings(cls, detector: DetectorSettings) -> DetectorParams:
        """The parameters of the ``ml.detector`` settings section."""
        return cls(
            slot_s=detector.slot_s,
            min_slot_obs=detector.min_slot_obs,
            slot_weight=detector.slot_weight,
            warmup_points=detector.warmup_points,
            range_decay=detector.range_decay,
            rest_points=detector.rest_points,
            flag_novelty=detector.flag_novelty,
        )

    @property
    def slots(self) -> int:
        """Time-of-day slots in a day."""
        return _DAY_S // self.slot_s


class DetectorState(msgspec.Struct, array_like=True):
    """Everything the detector remembers about one series.

    Attributes:
        seen: Observations seen.
        lo: Low end of the whole range.
        hi: High end of the whole range.
        level: Recent level (exponentially smoothed value).
        slot_lo: Per time-of-day slot, the lowest value seen.
        slot_hi: Per slot, the highest value seen.
        slot_seen: Per slot, observations seen.
        resting: Observations still to be scored 0 after the last flag.
        last_time_s: Event time of the last observation (epoch seconds).
    """

    seen: int = 0
    lo: float = 0.0
    hi: float = 0.0
    level: float = 0.0
    slot_lo: list[float] = msgspec.field(default_factory=list)
    slot_hi: list[float] = msgspec.field(default_factory=list)
    slot_seen: list[int] = msgspec.field(default_factory=list)
    resting: int = 0
    last_time_s: float = -math.inf

    def to_bytes(self) -> bytes:
        """The state, serialised (msgpack)."""
        return msgspec.msgpack.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> DetectorState:
        """A state serialised by :meth:`to_bytes`."""
        return msgspec.msgpack.decode(data, type=cls)


@dataclass
class NoveltyDetector:
    """The detector for one series; feed it observations in event-time order.

    Args:
        params: The detector's parameters.
        state: A state to resume from (a new series if omitted).
    """

    params: DetectorParams = field(default_factory=DetectorParams)
    state: DetectorState = field(default_factory=DetectorState)

    def __post_init__(self) -> None:
        slots = self.params.slots
        if not self.state.slot_seen:
            self.state.slot_lo = [0.0] * slots
            self.state.slot_hi = [0.0] * slots
            self.state.slot_seen = [0] * slots
        elif len(self.state.slot_seen) != slots:
            msg = (
                f"the state has {len(self.state.slot_seen)} time-of-day slots, "
                f"the parameters {slots}"
            )
            raise ValueError(msg)

    def score(self, time_s: float, value: float) -> float:
        """The anomaly score of one observation, then learn from it.

        Args:
            time_s: Event time, epoch seconds (local time of day for the slots).
            value: The observation. NaN and infinities are skipped (score 0, nothing learnt).

        Returns:
            The score in [0, 1); 0.5 and above is a flag.
        """
        p, s = self.params, self.state
        if not math.isfinite(value):
            return 0.0
        slot = int(time_s % _DAY_S) // p.slot_s
        if s.seen == 0:
            s.lo = s.hi = s.level = value
        novelty = self._novelty(slot, value)
        if s.resting > 0:
            s.resting -= 1
            novelty = 0.0
        elif novelty >= p.flag_novelty:
            s.resting = p.rest_points
        self._learn(slot, value)
        s.last_time_s = time_s
        return novelty / (novelty + p.flag_novelty)

    def _novelty(self, slot: int, value: float) -> float:
        p, s = self.params, self.state
        if s.seen < p.warmup_points:
            return 0.0
        width = s.hi - s.lo
        beyond = max(value - s.hi, s.lo - value, 0.0)
        # Differences within floating-point noise (a constant's computed stddev
        # is 0 or 4e-16) are no difference.
        noise = _RELATIVE_NOISE * max(abs(s.lo), abs(s.hi), abs(value)) + _ABSOLUTE_NOISE
        if beyond <= noise:
            beyond = 0.0
        if width <= noise:  # a constant series so far: any change is news
            return 1.0 if beyond > 0 else 0.0
        novelty = beyond / width
        if s.slot_seen[slot] >= p.min_slot_obs:
            beyond = max(value - s.slot_hi[slot], s.slot_lo[slot] - value, 0.0)
            novelty = max(novelty, p.slot_weight * beyond / width)
        return novelty

    def _learn(self, slot: int, value: float) -> None:
        p, s = self.params, self.state
        if s.slot_seen[slot] == 0:
            s.slot_lo[slot] = s.slot_hi[slot] = value
        else:
            s.slot_lo[slot] = min(s.slot_lo[slot], value)
            s.slot_hi[slot] = max(s.slot_hi[slot], value)
        s.slot_seen[slot] += 1
        s.lo = min(s.lo, value)
        s.hi = max(s.hi, value)
        s.level += p.level_alpha * (value - s.level)
        if p.range_decay:
            s.hi -= p.range_decay * (s.hi - s.level)
            s.lo += p.range_decay * (s.level - s.lo)
        s.seen += 1

    def score_many(self, times_s: Iterable[float], values: Iterable[float]) -> list[float]:
        """Scores of observations in event-time order (see :meth:`score`)."""
        return [self.score(t, v) for t, v in zip(times_s, values, strict=True)]


def score_series(
    times_s: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    params: DetectorParams | None = None,
) -> np.ndarray:
    """Scores of a whole series, from a new detector (the offline replay).

    Args:
        times_s: Event times, epoch seconds, ascending.
        values: The observations.
        params: The detector's parameters (the defaults if omitted).

    Returns:
        float64 scores, one per observation.
    """
    detector = NoveltyDetector(params or DetectorParams())
    times = np.asarray(times_s, dtype=np.float64).tolist()
    vals = np.asarray(values, dtype=np.float64).tolist()
    return np.asarray(detector.score_many(times, vals), dtype=np.float64)

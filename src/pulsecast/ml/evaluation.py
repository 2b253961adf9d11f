"""Numenta Anomaly Benchmark (NAB) scoring: the corpus, the scorer and its threshold sweep.

This is where ``ml`` measures an online detector on real data: given one anomaly score per
row of every NAB series, it scores the detections the way NAB v1.1 does, picks one threshold
per cost profile over the whole corpus, and normalises the total so that the detector that
never fires scores 0 and a perfect one 100. It is pure numpy (no Spark, no pandas) and fast
enough to call in a tuning loop: a sweep over NAB's 292k rows takes some 50-100 ms on two
cores (what does not depend on the scores is computed once per series and cached).

The rules, as the NAB paper (Lavin & Ahmad 2015; Ahmad et al. 2017) describes them and as
NAB's code applies them (``nab/sweeper.py``, ``nab/optimizer.py``, ``nab/runner.py``,
``config/profiles.json`` in numenta/NAB):

- The first ``min(floor(0.15 * rows), 750)`` rows of a file are a probationary period: no
  row there is scored, neither as a detection nor as a miss.
- A row is a detection when its anomaly score is at least the threshold.
- Positions count rows, not time. Row ``i`` of a window of rows ``[l, r]`` (inclusive, width
  ``w = r - l + 1``) sits at ``y = -(r - i + 1) / w``: -1 on the window's first row, ``-1/w``
  on its last. The scaled sigmoid is ``sigma(y) = 2 / (1 + exp(5 y)) - 1``, and -1 for
  ``y > 3``.
- The earliest detection in a window earns ``A_TP * sigma(y) / sigma(-1)`` (exactly ``A_TP``
  on the window's first row); later detections in the same window earn nothing. A window
  with no detection on a scored row costs ``A_FN``; a window entirely inside the
  probationary period counts for nothing.
- A detection outside every window adds ``A_FP * sigma((i - r) / (w - 1))``, measured from
  the closest preceding window ``[l, r]``: close to 0 just after it (a late detection is
  mildly penalised), the full ``-A_FP`` three window lengths on, and ``-A_FP`` when no
  window precedes it.
- One threshold per profile for the whole corpus: every distinct score of a scored row is a
  candidate, plus "never fire"; the highest total wins (ties go to the higher threshold).
- Normalised score ``100 * (raw - null) / (perfect - null)``, where ``null = -A_FN * windows``
  (the detector that never fires) and ``perfect`` is the score of a detector that fires on
  the first scored row of every window and nowhere else (``A_TP * windows`` whenever no window
  starts inside the probationary period, as NAB computes it).
"""

from __future__ import annotations

import json
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "PROBATION_FRACTION",
    "PROBATION_MAX_ROWS",
    "PROFILES",
    "CostProfile",
    "FileScore",
    "NabSeries",
    "ProfileResult",
    "Window",
    "load_nab_corpus",
    "load_windows",
    "nab_score",
    "probation_rows",
    "read_nab_csv",
    "read_nab_results",
    "score_files",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
DateArray = npt.NDArray[np.datetime64]
Window = tuple[np.datetime64, np.datetime64]
"""An anomaly window: first and last timestamp, inclusive."""

PROBATION_FRACTION = 0.15
"""Share of each file's rows that is never scored (NAB's ``probationaryPercent``)."""
PROBATION_MAX_ROWS = 750
"""Cap on the probationary period in rows (NAB: ``0.15 * 5000``)."""
_NEVER_FIRE = 1.1
"""The threshold NAB reports for "no detection at all" (above every score in [0, 1])."""


@dataclass(frozen=True)
class CostProfile:
    """NAB's weights for one application profile.

    Attributes:
        name: Profile name, as in NAB's ``config/profiles.json``.
        tp: Reward for detecting a window on its first row (``A_TP``).
        fp: Cost of a detection far from any window (``A_FP``).
        fn: Cost of a window left undetected (``A_FN``).
    """

    name: str
    tp: float
    fp: float
    fn: float

    def __post_init__(self) -> None:
        if min(self.tp, self.fp, self.fn) < 0 or self.tp == 0:
            msg = (
                f"cost profile {self.name!r}: weights must be >= 0 and tp > 0, "
                f"got tp={self.tp}, fp={self.fp}, fn={self.fn}"
            )
            raise ValueError(msg)


PROFILES: dict[str, CostProfile] = {
    p.name: p
    for p in (
        CostProfile("standard", tp=1.0, fp=0.11, fn=1.0),
        CostProfile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
        CostProfile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
    )
}
"""NAB's three profiles (``config/profiles.json``; NAB's ``tnWeight`` is unused)."""


def probation_rows(rows: int) -> int:
    """Length of a file's probationary period: ``min(floor(0.15 * rows), 750)``.

    Args:
        rows: Rows in the file.

    Returns:
        How many leading rows are never scored.

    >>> probation_rows(4032), probation_rows(15902)
    (604, 750)
    """
    return min(math.floor(PROBATION_FRACTION * rows), PROBATION_MAX_ROWS)


@dataclass(frozen=True, eq=False)
class NabSeries:
    """One labelled NAB file.

    Attributes:
        name: Path relative to the corpus' ``data/`` folder, e.g.
            ``"realTweets/Twitter_volume_AAPL.csv"``.
        timestamps: ``datetime64[s]``, one per row, non-decreasing (stored as a
            read-only copy).
        values: ``float64``, one per row (stored as a read-only copy).
        windows: Anomaly windows ``(start, end)``, inclusive, in time order, not
            overlapping; each covers at least one row.

    Raises:
        ValueError: If the arrays or windows do not fit together (checked on construction).
    """

    name: str
    timestamps: DateArray
    values: FloatArray
    windows: tuple[Window, ...]

    def __post_init__(self) -> None:
        # Keep read-only copies: scoring caches what it derives from a series.
        ts = np.array(self.timestamps, dtype="datetime64[s]")
        values = np.array(self.values, dtype=np.float64)
        if ts.ndim != 1 or values.shape != ts.shape:
            msg = (
                f"{self.name}: expected one value per timestamp in 1-D arrays, "
                f"got shapes {ts.shape} and {values.shape}"
            )
            raise ValueError(msg)
        if ts.size > 1 and bool(np.any(ts[1:] < ts[:-1])):
            msg = f"{self.name}: timestamps are not in time order"
            raise ValueError(msg)
        ts.flags.writeable = values.flags.writeable = False
        object.__setattr__(self, "timestamps", ts)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "windows", tuple((w[0], w[1]) for w in self.windows))
        self._bounds()  # validates the windows

    def _bounds(self) -> tuple[IntArray, IntArray]:
        """First and last row of each window (inclusive), as NAB finds them.

        A window opens on the first row at or after its start and closes on the first row
        stamped with its end (the last row before it when no row carries that stamp).
        """
        if not self.windows:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty
        starts = np.array([w[0] for w in self.windows], dtype="datetime64[s]")
        ends = np.array([w[1] for w in self.windows], dtype="datetime64[s]")
        if bool(np.any(ends < starts)) or bool(np.any(starts[1:] <= ends[:-1])):
            msg = f"{self.name}: windows must be (start, end) pairs in time order, not overlapping"
            raise ValueError(msg)
        ts = self.timestamps
        lefts = np.searchsorted(ts, starts, side="left").astype(np.int64)
        rights = np.searchsorted(ts, ends, side="left").astype(np.int64)
        on_row = rights < ts.size
        on_row[on_row] = ts[rights[on_row]] == ends[on_row]
        rights = np.where(on_row, rights, rights - 1)
        if bool(np.any(rights < lefts)):
            bad = int(np.argmax(rights < lefts))
            msg = f"{self.name}: window {starts[bad]} .. {ends[bad]} covers no row"
            raise ValueError(msg)
        return lefts, rights

    def labels(self) -> npt.NDArray[np.int8]:
        """Per-row ground truth: 1 inside a window, else 0 (``int8``)."""
        out = np.zeros(self.timestamps.size, dtype=np.int8)
        for left, right in zip(*self._bounds(), strict=True):
            out[left : right + 1] = 1
        return out


@dataclass(frozen=True)
class ProfileResult:
    """A detector's NAB result for one profile, at the profile's best corpus threshold.

    Attributes:
        profile: Profile name.
        threshold: The threshold chosen (rows scoring at least this are detections;
            1.1, or just above the top score, when never firing is best).
        score: Normalised score: 0 = never fires, 100 = perfect.
        raw: Total of the weighted rewards and costs (NAB's "Score" column total).
        tp: Windows detected.
        fp: Detections outside every window (scored rows).
        fn: Windows missed.
    """

    profile: str
    threshold: float
    score: float
    raw: float
    tp: int
    fp: int
    fn: int


@dataclass(frozen=True)
class FileScore:
    """One file's share of a profile's result, at a given threshold.

    Attributes:
        name: The series' name.
        profile: Profile name.
        threshold: The threshold applied.
        raw: This file's weighted rewards and costs (NAB's per-file "Score").
        tp: Windows detected.
        fp: Detections outside every window (scored rows).
        fn: Windows missed.
    """

    name: str
    profile: str
    threshold: float
    raw: float
    tp: int
    fp: int
    fn: int


# --- reading ------------------------------------------------------------------------------


def _read_columns(path: Path, columns: Sequence[str]) -> tuple[DateArray, list[FloatArray]]:
    """Read a ``timestamp,...`` CSV: the timestamps and the named numeric columns."""
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        msg = f"{path}: empty file, expected a header with {', '.join(['timestamp', *columns])}"
        raise ValueError(msg)
    header = [name.strip() for name in lines[0].split(",")]
    missing = [c for c in ("timestamp", *columns) if c not in header]
    if missing:
        msg = f"{path}:1: header {lines[0]!r} lacks column(s) {', '.join(missing)}"
        raise ValueError(msg)
    wanted = [header.index(c) for c in ("timestamp", *columns)]
    width = len(header)
    fields: list[list[str]] = [[] for _ in wanted]
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split(",")
        if len(parts) != width:
            msg = f"{path}:{number}: expected {width} comma-separated fields, got {line!r}"
            raise ValueError(msg)
        for out, index in zip(fields, wanted, strict=True):
            out.append(parts[index].strip())
    stamps = fields[0]
    try:
        timestamps: DateArray = np.array(stamps, dtype="datetime64[s]")
        parsed = not bool(np.any(np.isnat(timestamps)))
    except ValueError:
        parsed = False
    if not parsed:  # find the culprit, one line at a time
        for number, stamp in enumerate(stamps, start=2):
            try:
                bad = bool(np.isnat(np.datetime64(stamp, "s")))
            except ValueError:
                bad = True
            if bad:
                msg = f"{path}:{number}: bad timestamp {stamp!r}, expected YYYY-MM-DD HH:MM:SS"
                raise ValueError(msg)
        timestamps = np.array([np.datetime64(stamp, "s") for stamp in stamps])
    if timestamps.size > 1:
        back = np.flatnonzero(timestamps[1:] < timestamps[:-1])
        if back.size:
            number = int(back[0]) + 3
            msg = f"{path}:{number}: timestamp {stamps[number - 2]!r} goes back in time"
            raise ValueError(msg)
    arrays: list[FloatArray] = []
    for column, texts in zip(columns, fields[1:], strict=True):
        try:
            array = np.array(texts, dtype=np.float64)
        except ValueError:  # find the culprit, one line at a time
            numbers = []
            for number, text in enumerate(texts, start=2):
                try:
                    numbers.append(float(text))
                except ValueError:
                    msg = f"{path}:{number}: bad {column} {text!r}, expected a number"
                    raise ValueError(msg) from None
            array = np.array(numbers)
        bad_rows = np.flatnonzero(~np.isfinite(array))
        if bad_rows.size:
            number = int(bad_rows[0]) + 2
            msg = f"{path}:{number}: {column} {texts[number - 2]!r} is not finite"
            raise ValueError(msg)
        arrays.append(array)
    return timestamps, arrays


def read_nab_csv(path: Path) -> tuple[DateArray, FloatArray]:
    """Read one NAB data file (``timestamp,value``; further columns are ignored).

    Args:
        path: The CSV file.

    Returns:
        The timestamps (``datetime64[s]``) and the values (``float64``).

    Raises:
        ValueError: On a missing column, a malformed row, a bad timestamp or number, or a
            timestamp going back in time; the message names the file and line.
        OSError: If the file cannot be read.
    """
    timestamps, (values,) = _read_columns(path, ["value"])
    return timestamps, values


def read_nab_results(path: Path) -> tuple[DateArray, FloatArray]:
    """Read one detector results file in NAB's layout (``timestamp,value,anomaly_score,...``).

    Args:
        path: The CSV file.

    Returns:
        The timestamps (``datetime64[s]``) and the anomaly scores (``float64``).

    Raises:
        ValueError: As :func:`read_nab_csv`, for the ``anomaly_score`` column.
        OSError: If the file cannot be read.
    """
    timestamps, (scores,) = _read_columns(path, ["anomaly_score"])
    return timestamps, scores


def load_windows(path: Path) -> dict[str, tuple[Window, ...]]:
    """Read NAB's ``combined_windows.json``.

    Args:
        path: The JSON file: a relative data path -> a list of ``[start, end]`` timestamps.

    Returns:
        The windows of each file, as ``datetime64[s]`` pairs in the file's order.

    Raises:
        ValueError: If the JSON does not have that shape; the message names the file and key.
        OSError: If the file cannot be read.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        msg = f"{path}:{exc.lineno}: not valid JSON: {exc.msg}"
        raise ValueError(msg) from exc
    if not isinstance(raw, dict):
        msg = f"{path}: expected an object of file -> windows, got {type(raw).__name__}"
        raise ValueError(msg)
    out: dict[str, tuple[Window, ...]] = {}
    for name, windows in raw.items():
        if not isinstance(windows, list):
            msg = f"{path}: {name!r}: expected a list of [start, end] pairs"
            raise ValueError(msg)
        pairs: list[Window] = []
        for window in windows:
            if not (isinstance(window, list) and len(window) == 2):
                msg = f"{path}: {name!r}: expected a [start, end] pair, got {window!r}"
                raise ValueError(msg)
            try:
                start, end = (np.datetime64(str(t), "s") for t in window)
            except ValueError as exc:
                msg = f"{path}: {name!r}: bad timestamp in {window!r}"
                raise ValueError(msg) from exc
            pairs.append((start, end))
        out[name] = tuple(pairs)
    return out


def load_nab_corpus(root: Path) -> list[NabSeries]:
    """Load every labelled file of a NAB corpus.

    Args:
        root: A folder holding ``data/<category>/<file>.csv`` and
            ``labels/combined_windows.json``; every file named in the labels is loaded.

    Returns:
        The series, sorted by name.

    Raises:
        ValueError: On a malformed file or labels that do not fit their file.
        OSError: If a labelled file is missing or unreadable.
    """
    windows = load_windows(root / "labels" / "combined_windows.json")
    series = []
    for name in sorted(windows):
        timestamps, values = read_nab_csv(root / "data" / name)
        series.append(NabSeries(name, timestamps, values, windows[name]))
    return series


# --- scoring ------------------------------------------------------------------------------


def _scaled_sigmoid(y: FloatArray) -> FloatArray:
    """NAB's ``2 * sigmoid(-5 y) - 1``, and -1 beyond three window lengths."""
    inner = 2.0 * (1.0 / (1.0 + np.exp(5.0 * np.minimum(y, 3.0)))) - 1.0
    return np.where(y > 3.0, -1.0, inner)


_MAX_TP = float(_scaled_sigmoid(np.array([-1.0]))[0])


@dataclass(frozen=True)
class _Layout:
    """What scoring needs of one series, independent of the scores and the profile."""

    window_rows: IntArray  # scored rows inside a window, ascending
    window_of: IntArray  # the window (index within the series) of each of window_rows
    tp_unit: FloatArray  # reward per A_TP if the window's earliest detection is that row
    fp_rows: IntArray  # scored rows outside every window, ascending
    fp_unit: FloatArray  # cost per A_FP (negative) of a detection on that row
    windows: int  # windows with at least one scored row
    perfect_unit: float  # sum of tp_unit over each window's first scored row


_LAYOUTS: weakref.WeakKeyDictionary[NabSeries, _Layout] = weakref.WeakKeyDictionary()


def _layout(series: NabSeries) -> _Layout:
    """The series' layout, computed once per series (a series cannot change)."""
    layout = _LAYOUTS.get(series)
    if layout is None:
        layout = _LAYOUTS[series] = _compute_layout(series)
    return layout


def _compute_layout(series: NabSeries) -> _Layout:
    n = series.timestamps.size
    first = probation_rows(n)
    lefts, rights = series._bounds()
    widths = rights - lefts + 1
    window_of_row = np.full(n, -1, dtype=np.int64)
    for k, (left, right) in enumerate(zip(lefts, rights, strict=True)):
        window_of_row[left : right + 1] = k
    rows = np.arange(first, n, dtype=np.int64)
    inside = window_of_row[first:] >= 0

    window_rows = rows[inside]
    window_of = window_of_row[window_rows]
    right = rights[window_of]
    tp_unit = _scaled_sigmoid(-(right - window_rows + 1) / widths[window_of]) / _MAX_TP

    fp_rows = rows[~inside]
    before = np.searchsorted(rights, fp_rows, side="left") - 1  # closest preceding window
    fp_unit = np.full(fp_rows.size, -1.0)
    after = before >= 0
    prev = before[after]
    # A one-row window has no length to measure by: anything after it counts in full.
    span = (widths[prev] - 1).astype(np.float64)
    distance = (fp_rows[after] - rights[prev]).astype(np.float64)
    relative = np.divide(distance, span, out=np.full(prev.size, np.inf), where=span > 0)
    fp_unit[after] = _scaled_sigmoid(relative)

    scored = rights >= first
    earliest = np.maximum(lefts[scored], first)
    perfect_y = -(rights[scored] - earliest + 1) / widths[scored]
    perfect_unit = float(np.sum(_scaled_sigmoid(perfect_y) / _MAX_TP))
    return _Layout(
        window_rows, window_of, tp_unit, fp_rows, fp_unit, int(scored.sum()), perfect_unit
    )


def _checked_scores(series: NabSeries, scores: Mapping[str, npt.ArrayLike]) -> FloatArray:
    if series.name not in scores:
        msg = f"no anomaly scores for {series.name}"
        raise ValueError(msg)
    values = np.asarray(scores[series.name], dtype=np.float64)
    if values.shape != series.timestamps.shape:
        msg = f"{series.name}: {values.size} anomaly scores for {series.timestamps.size} rows"
        raise ValueError(msg)
    if bool(np.any(np.isnan(values))):
        row = int(np.argmax(np.isnan(values)))
        msg = f"{series.name}: anomaly score is NaN on row {row}"
        raise ValueError(msg)
    return values


@dataclass(frozen=True)
class _Sweep:
    """The corpus' totals at every candidate threshold, highest threshold first."""

    thresholds: FloatArray
    tp_gain: FloatArray  # sum of tp_unit over detected windows
    detected: IntArray  # windows detected
    fp_cost: FloatArray  # sum of fp_unit over detections outside windows
    fp_count: IntArray  # detections outside windows
    windows: int
    perfect_unit: float


def _sweep(series: Sequence[NabSeries], scores: Mapping[str, npt.ArrayLike]) -> _Sweep:
    names = [s.name for s in series]
    if len(set(names)) != len(names):
        msg = "series names must be unique"
        raise ValueError(msg)
    win_score: list[FloatArray] = []
    win_group: list[IntArray] = []
    win_unit: list[FloatArray] = []
    fp_score: list[FloatArray] = []
    fp_unit: list[FloatArray] = []
    windows, perfect_unit, group_base = 0, 0.0, 0
    for s in series:
        values = _checked_scores(s, scores)
        layout = _layout(s)
        win_score.append(values[layout.window_rows])
        win_group.append(layout.window_of + group_base)
        win_unit.append(layout.tp_unit)
        fp_score.append(values[layout.fp_rows])
        fp_unit.append(layout.fp_unit)
        windows += layout.windows
        perfect_unit += layout.perfect_unit
        group_base += len(s.windows)

    # Each window's reward at a threshold is that of its earliest detection, i.e. of the
    # earliest row among those scoring at least the threshold. Walk every window's rows
    # from the highest score down and note what each row adds to that running best.
    w_score = np.concatenate(win_score) if win_score else np.empty(0)
    w_group = np.concatenate(win_group) if win_group else np.empty(0, dtype=np.int64)
    w_unit = np.concatenate(win_unit) if win_unit else np.empty(0)
    order = np.lexsort((-w_score, w_group))
    group = w_group[order]
    # Rows are laid out by (window, row), so the running minimum of the position is the
    # earliest row detected so far; the offset keeps each window's minimum to itself.
    offset = (group_base - group) * (w_score.size + 1)
    earliest = np.minimum.accumulate(order + offset) - offset
    best = w_unit[earliest]
    opens = np.ones(group.size, dtype=bool)
    opens[1:] = group[1:] != group[:-1]
    tp_step = best.copy()
    tp_step[1:][~opens[1:]] = best[1:][~opens[1:]] - best[:-1][~opens[1:]]

    f_score = np.concatenate(fp_score) if fp_score else np.empty(0)
    f_unit = np.concatenate(fp_unit) if fp_unit else np.empty(0)
    # Rank every scored row by score, highest first; rows with equal scores form one
    # candidate threshold. Sum each row's contribution into its threshold's slot, then
    # accumulate: the totals at a threshold count every row scoring at least that.
    all_score = np.concatenate([w_score[order], f_score])
    by_score = np.argsort(-all_score)
    ranked = all_score[by_score]
    fresh = np.ones(ranked.size, dtype=bool)
    fresh[1:] = ranked[1:] != ranked[:-1]
    slot = np.empty(ranked.size, dtype=np.int64)
    slot[by_score] = np.cumsum(fresh) - 1
    slots = int(fresh.sum())
    in_window, outside = slot[: group.size], slot[group.size :]

    def totals(where: IntArray, weights: FloatArray | None = None) -> FloatArray:
        sums = np.bincount(where, weights=weights, minlength=slots)
        return np.concatenate([[0.0], np.cumsum(sums)])

    top = float(ranked[0]) if ranked.size else 0.0
    never = max(_NEVER_FIRE, float(np.nextafter(top, np.inf)))
    return _Sweep(
        thresholds=np.concatenate([[never], ranked[fresh]]),
        tp_gain=totals(in_window, tp_step),
        detected=np.rint(totals(in_window[opens])).astype(np.int64),
        fp_cost=totals(outside, f_unit),
        fp_count=np.rint(totals(outside)).astype(np.int64),
        windows=windows,
        perfect_unit=perfect_unit,
    )


def nab_score(
    series: Sequence[NabSeries], scores: Mapping[str, npt.ArrayLike]
) -> dict[str, ProfileResult]:
    """Score a detector on a NAB corpus, for each of NAB's profiles.

    For each profile the threshold is chosen over the whole corpus to maximise the raw total
    (every distinct score of a scored row is tried, and never firing), then the total is
    normalised: 0 for the detector that never fires, 100 for a perfect one.

    Args:
        series: The corpus (see :func:`load_nab_corpus`).
        scores: Each series' name -> its per-row anomaly scores (same length as the series;
            any real numbers, higher meaning more anomalous; no NaN).

    Returns:
        Profile name -> result, for every profile in :data:`PROFILES`.

    Raises:
        ValueError: If a series has no scores, the wrong number of them, or a NaN; if two
            series share a name; or if no window has a scored row (nothing to normalise by).
    """
    sweep = _sweep(series, scores)
    if sweep.windows == 0:
        msg = "no anomaly window has a scored row: the normalised NAB score is undefined"
        raise ValueError(msg)
    results = {}
    for name, profile in PROFILES.items():
        null = -profile.fn * sweep.windows
        totals = (
            null
            + profile.tp * sweep.tp_gain
            + profile.fn * sweep.detected
            + profile.fp * sweep.fp_cost
        )
        best = int(np.argmax(totals))  # the first maximum: the highest such threshold
        raw = float(totals[best])
        perfect = profile.tp * sweep.perfect_unit
        detected = int(sweep.detected[best])
        results[name] = ProfileResult(
            profile=name,
            threshold=float(sweep.thresholds[best]),
            score=100.0 * (raw - null) / (perfect - null),
            raw=raw,
            tp=detected,
            fp=int(sweep.fp_count[best]),
            fn=sweep.windows - detected,
        )
    return results


def score_files(
    series: Sequence[NabSeries],
    scores: Mapping[str, npt.ArrayLike],
    thresholds: Mapping[str, float],
) -> list[FileScore]:
    """Score each file at fixed thresholds: the per-file breakdown of a corpus result.

    Args:
        series: The corpus.
        scores: Each series' name -> its per-row anomaly scores.
        thresholds: Profile name (a key of :data:`PROFILES`) -> threshold, e.g.
            ``{r.profile: r.threshold for r in nab_score(series, scores).values()}``.

    Returns:
        One entry per series and profile, in the order given.

    Raises:
        ValueError: As :func:`nab_score`, or for an unknown profile name.
    """
    unknown = sorted(set(thresholds) - set(PROFILES))
    if unknown:
        msg = f"unknown profile(s) {', '.join(unknown)}; known: {', '.join(PROFILES)}"
        raise ValueError(msg)
    out = []
    for s in series:
        values = _checked_scores(s, scores)
        layout = _layout(s)
        for name, threshold in thresholds.items():
            profile = PROFILES[name]
            hit = values[layout.window_rows] >= threshold
            best = np.full(len(s.windows), -np.inf)
            np.maximum.at(best, layout.window_of[hit], layout.tp_unit[hit])
            found = best > -np.inf
            fired = values[layout.fp_rows] >= threshold
            tp = int(found.sum())
            raw = (
                profile.tp * float(best[found].sum())
                - profile.fn * (layout.windows - tp)
                + profile.fp * float(layout.fp_unit[fired].sum())
            )
            fp = int(fired.sum())
            out.append(FileScore(s.name, name, threshold, raw, tp, fp, layout.windows - tp))
    return out

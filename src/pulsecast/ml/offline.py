"""``pulsecast detect``: the online detector replayed over CSV files (NAB layout).

Each input file (``timestamp,value``) is scored from a new detector, in file
order, with exactly the code the streaming job runs per entity
(:mod:`pulsecast.ml.detector`). The output mirrors the input's relative path
and has the columns ``timestamp,value,anomaly_score``, plus ``label`` (1 inside
a labelled anomaly window) when a NAB ``combined_windows.json`` names the file.
That is the layout the Numenta Anomaly Benchmark reads a detector's results in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pulsecast.ml.detector import DetectorParams, score_series
from pulsecast.ml.errors import DetectInputError
from pulsecast.ml.evaluation import NabSeries, Window, load_windows, read_nab_csv

__all__ = ["DetectReport", "detect_files", "find_inputs"]


@dataclass(frozen=True)
class DetectReport:
    """What one ``pulsecast detect`` run did.

    Attributes:
        files: Files scored.
        rows: Observations scored.
        flagged: Observations flagged (score of 0.5 or more).
        labelled: Files that got a ``label`` column.
        seconds: Wall time, reading and writing included.
    """

    files: int
    rows: int
    flagged: int
    labelled: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        """Observations scored per second of wall time."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def find_inputs(paths: Sequence[Path]) -> list[tuple[Path, Path]]:
    """The CSV files to score, each with its output path relative to ``--out``.

    A file keeps its name; a folder contributes every ``*.csv`` under it, with
    its path relative to that folder (``data/`` of NAB gives
    ``realTweets/Twitter_volume_AAPL.csv``).

    Raises:
        DetectInputError: If a path does not exist or a folder holds no CSV file.
    """
    found: list[tuple[Path, Path]] = []
    for path in paths:
        if path.is_file():
            found.append((path, Path(path.name)))
        elif path.is_dir():
            files = sorted(path.rglob("*.csv"))
            if not files:
                msg = f"{path}: no *.csv file in this folder"
                raise DetectInputError(msg, path=path)
            found.extend((file, file.relative_to(path)) for file in files)
        else:
            msg = f"{path}: no such file or folder"
            raise DetectInputError(msg, path=path)
    return found


def _windows_for(
    file: Path, relative: Path, windows: dict[str, tuple[Window, ...]]
) -> tuple[Window, ...] | None:
    """The labelled windows of a file: by relative path, else by a path suffix."""
    key = relative.as_posix()
    if key in windows:
        return windows[key]
    absolute = file.resolve().as_posix()
    for name, spans in windows.items():
        if absolute.endswith("/" + name):
            return spans
    return None


def _write(
    out: Path,
    timestamps: np.ndarray,
    values: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray | None,
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    stamps = np.datetime_as_string(timestamps, unit="s")
    columns = [
        [str(s).replace("T", " ") for s in stamps],
        [repr(v) for v in values.tolist()],
        [repr(s) for s in scores.tolist()],
    ]
    header = "timestamp,value,anomaly_score"
    if labels is not None:
        columns.append([str(int(label)) for label in labels.tolist()])
        header += ",label"
    body = "\n".join(",".join(row) for row in zip(*columns, strict=True))
    out.write_text(f"{header}\n{body}\n", encoding="utf-8")


def detect_files(
    paths: Sequence[Path],
    out: Path,
    *,
    labels: Path | None = None,
    params: DetectorParams | None = None,
    progress: Callable[[Path, int], None] | None = None,
) -> DetectReport:
    """Score every input file with a new detector and write NAB-layout results.

    Args:
        paths: Files or folders of ``timestamp,value`` CSV files.
        out: Folder for the results; created if missing.
        labels: A NAB ``combined_windows.json``; files it names get a ``label`` column.
        params: The detector's parameters (the defaults if omitted).
        progress: Called after each file with its relative path and row count.

    Returns:
        Counts and wall time of the run.

    Raises:
        DetectInputError: A missing input, or a malformed file or labels file (the
            message names the file and line).
    """
    started = time.perf_counter()
    inputs = find_inputs(paths)
    try:
        windows = load_windows(labels) if labels is not None else {}
    except (OSError, ValueError) as exc:
        msg = f"labels: {exc}"
        raise DetectInputError(msg, path=labels) from exc
    for file, relative in inputs:
        if (out / relative).resolve() == file.resolve():
            msg = f"{file}: --out would overwrite this input; choose another folder"
            raise DetectInputError(msg, path=file)
    rows = flagged = labelled = 0
    for file, relative in inputs:
        try:
            timestamps, values = read_nab_csv(file)
        except (OSError, ValueError) as exc:
            raise DetectInputError(str(exc), path=file) from exc
        seconds = timestamps.astype("datetime64[s]").astype(np.int64)
        scores = score_series(seconds, values, params)
        spans = _windows_for(file, relative, windows)
        label = None
        if spans is not None:
            try:
                label = NabSeries(relative.as_posix(), timestamps, values, spans).labels()
            except ValueError as exc:
                msg = f"{file}: its labelled windows do not fit it: {exc}"
                raise DetectInputError(msg, path=file) from exc
            labelled += 1
        _write(out / relative, timestamps, values, scores, label)
        rows += len(values)
        flagged += int(np.count_nonzero(scores >= 0.5))
        if progress is not None:
            progress(relative, len(values))
    return DetectReport(
        files=len(inputs),
        rows=rows,
        flagged=flagged,
        labelled=labelled,
        seconds=time.perf_counter() - started,
    )

"""Live forecast error and drift: each forecast checked against the windows that follow it.

A forecast made as of the end of window *t* is the mean of the next ``H``
minutes: the count-weighted mean of the windows starting from ``t + step`` to
``t + H`` (as :func:`~pulsecast.ml.features.build_features` labels training
rows). :class:`ForecastCheck` keeps a stream's recent forecasts and window
means, and once scoring has closed the window at ``t + H`` it resolves every
forecast made at ``t`` into an error: the same rule, to the window, as the
named analysis ``forecast_vs_actual`` applies to the scores table (a forecast
resolves once a window starting at ``t + H`` or later has closed, of any series
of the stream, and only if its horizon held events). :func:`error_rows` gives
the resolved forecasts the columns of the lake table
``gold_<stream>_forecast_errors``, which the streaming job appends them to and
the analysis ``forecast_error`` reads. After a restart, :meth:`ForecastCheck.seed`
takes back, from the scores table, the forecasts still pending and the windows
they need. :class:`DriftMonitor` compares the
recent errors of the current model with the error it had on its holdout:
when the live mean absolute error of a metric stays above ``ratio`` times the
holdout's for a whole window of event time, the model has drifted and the
streaming job retrains it (:mod:`pulsecast.stream.retrain`).

Both work on Arrow tables of a scoring batch's rows with DuckDB, in bulk; no
Python runs per row. No Spark needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "ERRORS_SCHEMA",
    "RESOLVED_SCHEMA",
    "ROWS_SCHEMA",
    "DriftMonitor",
    "DriftStatus",
    "ForecastCheck",
    "error_rows",
]

#: Rows a scoring batch gives :meth:`ForecastCheck.add` (window start in epoch seconds).
ROWS_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("metric", pa.string()),
        ("window_s", pa.int64()),
        ("value", pa.float64()),
        ("count", pa.int64()),
        ("forecast", pa.float64()),
        ("horizon_s", pa.int64()),
        ("model_version", pa.int64()),
    ]
)

#: Forecasts resolved against what followed them.
RESOLVED_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("metric", pa.string()),
        ("window_s", pa.int64()),
        ("model_version", pa.int64()),
        ("forecast", pa.float64()),
        ("actual", pa.float64()),
        ("abs_error", pa.float64()),
        ("horizon_s", pa.int64()),
    ]
)

_UTC = pa.timestamp("us", tz="UTC")

#: The columns of ``gold_<stream>_forecast_errors`` (those of the analysis ``forecast_vs_actual``,
#: and the partition column ``window_date``).
ERRORS_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("metric", pa.string()),
        ("window_start", _UTC),
        ("window_date", pa.date32()),
        ("model_version", pa.int64()),
        ("horizon_min", pa.int32()),
        ("forecast", pa.float64()),
        ("actual", pa.float64()),
        ("error", pa.float64()),
        ("abs_error", pa.float64()),
        ("pct_error", pa.float64()),
    ]
)

_RESOLVE = """
SELECT p.key, p.metric, p.window_s, p.model_version, p.forecast,
       sum(a.value * a.count) / sum(a.count) AS actual,
       abs(sum(a.value * a.count) / sum(a.count) - p.forecast) AS abs_error,
       p.horizon_s
FROM pending AS p
JOIN actuals AS a
  ON a.key = p.key AND a.metric = p.metric
 AND a.window_s BETWEEN p.window_s + $step AND p.window_s + p.horizon_s
WHERE p.window_s + p.horizon_s <= $newest
GROUP BY p.key, p.metric, p.window_s, p.model_version, p.forecast, p.horizon_s
HAVING sum(a.count) > 0
ORDER BY p.window_s, p.key, p.metric
"""


def _arrow(con: duckdb.DuckDBPyConnection, query: str, params: dict[str, int]) -> pa.Table:
    table = con.sql(query, params=params).to_arrow_table()
    if table is None:  # pragma: no cover - DuckDB returns a table for every SELECT
        msg = f"no result from {query!r}"
        raise RuntimeError(msg)
    return table


@dataclass
class ForecastCheck:
    """A stream's unresolved forecasts and recent window means (see the module's description).

    Args:
        step_s: Length of a window, seconds.
    """

    step_s: int
    _pending: pa.Table = field(default_factory=lambda: ROWS_SCHEMA.empty_table())
    _actuals: pa.Table = field(default_factory=lambda: ROWS_SCHEMA.empty_table())
    _newest: int | None = None

    @property
    def pending(self) -> int:
        """Forecasts waiting for their horizon to pass."""
        return int(self._pending.num_rows)

    def add(self, rows: pa.Table, *, newest_s: int | None = None) -> pa.Table:
        """Take a batch's closed windows; return the forecasts they resolve.

        Windows no later than the newest one seen before are ignored: a
        window closes once, so they are a replayed batch's, already taken
        (or taken back by :meth:`seed`).

        Args:
            rows: Rows of :data:`ROWS_SCHEMA`: every scored window mean, with its
                forecast (null when none was made) and that forecast's horizon.
            newest_s: Start of the newest window the batch closed, of any series
                (``rows`` may hold only the forecast metrics'); default the
                newest of ``rows``.

        Returns:
            Rows of :data:`RESOLVED_SCHEMA`, oldest forecast first. A forecast
            whose horizon held no data is dropped unresolved.
        """
        rows = rows.select(ROWS_SCHEMA.names).cast(ROWS_SCHEMA)
        if self._newest is not None:
            rows = rows.filter(pc.greater(rows["window_s"], self._newest))
            if newest_s is not None and newest_s <= self._newest:
                newest_s = None
        if rows.num_rows == 0 and newest_s is None:
            return RESOLVED_SCHEMA.empty_table()
        newest = max(
            newest_s if newest_s is not None else -math.inf,
            pc.max(rows["window_s"]).as_py() if rows.num_rows else -math.inf,
        )
        if self._newest is None or newest > self._newest:
            self._newest = int(newest)
        made = rows.filter(pc.is_valid(rows["forecast"]))
        pending = pa.concat_tables([self._pending, made])
        actuals = pa.concat_tables([self._actuals, rows])
        con = duckdb.connect()
        try:
            con.register("pending", pending)
            con.register("actuals", actuals)
            newest = self._newest
            resolved = _arrow(con, _RESOLVE, {"step": self.step_s, "newest": newest})
            still = _arrow(
                con, "SELECT * FROM pending WHERE window_s + horizon_s > $n", {"n": newest}
            )
            # Keep the windows a pending forecast's horizon may still need.
            oldest = pc.min(still["window_s"]).as_py() if still.num_rows else newest
            kept = _arrow(
                con, "SELECT * FROM actuals WHERE window_s > $o", {"o": min(oldest, newest)}
            )
        finally:
            con.close()
        self._pending = still.cast(ROWS_SCHEMA)
        self._actuals = kept.cast(ROWS_SCHEMA)
        return resolved.cast(RESOLVED_SCHEMA)

    def seed(self, rows: pa.Table, *, newest_s: int) -> None:
        """Start over from the windows already written (after a restart): resolve nothing.

        The forecasts among ``rows`` whose horizon has not passed as of
        ``newest_s`` become pending, with the windows of their series after the
        oldest of them; the forecasts whose horizon has passed were resolved
        before ``rows`` were written. Later batches' windows then resolve
        them, as if the check had never stopped, and :meth:`add` ignores the
        windows up to ``newest_s`` that a replayed batch brings again.

        Args:
            rows: Rows of :data:`ROWS_SCHEMA` (a scores table's recent windows:
                at least one horizon before ``newest_s``).
            newest_s: Start of the newest window written, of any series.
        """
        rows = rows.select(ROWS_SCHEMA.names).cast(ROWS_SCHEMA)
        con = duckdb.connect()
        try:
            con.register("written", rows)
            pending = _arrow(
                con,
                "SELECT * FROM written WHERE forecast IS NOT NULL AND horizon_s IS NOT NULL"
                " AND window_s + horizon_s > $n ORDER BY window_s, key, metric",
                {"n": newest_s},
            )
            con.register("pending", pending)
            actuals = _arrow(
                con,
                "SELECT * FROM written AS w WHERE w.window_s > (SELECT min(window_s) FROM pending)"
                " AND EXISTS (SELECT 1 FROM pending AS p"
                " WHERE p.key = w.key AND p.metric = w.metric)"
                " ORDER BY w.window_s, w.key, w.metric",
                {},
            )
        finally:
            con.close()
        self._pending = pending.cast(ROWS_SCHEMA)
        self._actuals = actuals.cast(ROWS_SCHEMA)
        self._newest = newest_s


def error_rows(resolved: pa.Table) -> pa.Table:
    """Resolved forecasts (:data:`RESOLVED_SCHEMA`) as rows of :data:`ERRORS_SCHEMA`.

    ``error`` is actual minus forecast, ``pct_error`` the absolute error in
    percent of the actual (null when the actual is 0), computed as the
    analysis ``forecast_vs_actual`` computes them.
    """
    resolved = resolved.select(RESOLVED_SCHEMA.names).cast(RESOLVED_SCHEMA)
    start = pc.cast(pc.multiply(resolved["window_s"], 1_000_000), _UTC)
    actual = resolved["actual"]
    magnitude = pc.abs(actual)
    nonzero = pc.if_else(pc.equal(magnitude, 0.0), pa.scalar(None, pa.float64()), magnitude)
    columns = {
        "key": resolved["key"],
        "metric": resolved["metric"],
        "window_start": start,
        "window_date": pc.cast(start, pa.date32()),
        "model_version": resolved["model_version"],
        "horizon_min": pc.cast(pc.divide(resolved["horizon_s"], 60), pa.int32()),
        "forecast": resolved["forecast"],
        "actual": actual,
        "error": pc.subtract(actual, resolved["forecast"]),
        "abs_error": resolved["abs_error"],
        "pct_error": pc.divide(pc.multiply(resolved["abs_error"], 100.0), nonzero),
    }
    return pa.table(columns).cast(ERRORS_SCHEMA)


@dataclass(frozen=True)
class DriftStatus:
    """What the drift monitor sees now.

    Attributes:
        model_version: The model watched.
        live_mae: Per metric, the mean absolute error over the window.
        holdout_mae: Per metric, the model's error on its holdout.
        errors: Resolved forecasts in the window.
        watched_s: Event time the window's errors span.
        drifting: Whether the live error exceeds the limit over a whole window.
        reason: A sentence saying why (or why not).
    """

    model_version: int | None
    live_mae: dict[str, float]
    holdout_mae: dict[str, float]
    errors: int
    watched_s: int
    drifting: bool
    reason: str


@dataclass
class DriftMonitor:
    """Sustained live forecast error above the holdout's (see the module's description).

    Args:
        ratio: Live MAE over holdout MAE above which a metric counts as drifting.
        window_s: Event time over which the live MAE is measured, and how long
            the model must be watched before it can be judged.
        min_errors: Fewest resolved forecasts of a metric in the window to judge it.
    """

    ratio: float
    window_s: int
    min_errors: int
    model_version: int | None = None
    holdout_mae: dict[str, float] = field(default_factory=dict)
    _errors: pa.Table = field(default_factory=lambda: RESOLVED_SCHEMA.empty_table())

    def watch(self, model_version: int, holdout_mae: dict[str, float]) -> None:
        """Judge ``model_version`` from now on (its errors so far start afresh)."""
        if model_version != self.model_version:
            self.model_version = model_version
            self.holdout_mae = {m: v for m, v in holdout_mae.items() if math.isfinite(v)}
            self._errors = RESOLVED_SCHEMA.empty_table()

    def add(self, resolved: pa.Table) -> None:
        """Take resolved forecasts (those of other model versions are ignored)."""
        if self.model_version is None or resolved.num_rows == 0:
            return
        mine = resolved.filter(pc.equal(resolved["model_version"], self.model_version))
        errors = pa.concat_tables([self._errors, mine.cast(RESOLVED_SCHEMA)])
        newest = pc.max(errors["window_s"]).as_py()
        if newest is not None:
            errors = errors.filter(pc.greater(errors["window_s"], newest - self.window_s))
        self._errors = errors

    def status(self) -> DriftStatus:
        """The live error per metric and whether the model has drifted."""
        live: dict[str, float] = {}
        counts: dict[str, int] = {}
        watched = 0
        if self._errors.num_rows:
            per_metric = self._errors.group_by("metric").aggregate(
                [("abs_error", "mean"), ("abs_error", "count")]
            )
            for row in per_metric.to_pylist():
                live[row["metric"]] = float(row["abs_error_mean"])
                counts[row["metric"]] = int(row["abs_error_count"])
            window = self._errors["window_s"]
            watched = int(pc.max(window).as_py()) - int(pc.min(window).as_py())
        over = {
            m: mae / self.holdout_mae[m]
            for m, mae in live.items()
            if counts[m] >= self.min_errors
            and self.holdout_mae.get(m, 0.0) > 0
            and mae > self.ratio * self.holdout_mae[m]
        }
        # A window is "whole" once its errors span all but its last step.
        whole = watched >= self.window_s * 0.9
        if self.model_version is None:
            reason = "no model to watch"
        elif not whole:
            reason = f"watched {watched} s of {self.window_s} s"
        elif over:
            worst = max(over, key=over.__getitem__)
            reason = (
                f"live MAE of {worst} is {over[worst]:.1f}x its holdout MAE "
                f"({live[worst]:.4g} vs {self.holdout_mae[worst]:.4g}) over {watched} s"
            )
        else:
            reason = f"live MAE within {self.ratio:g}x the holdout's"
        return DriftStatus(
            model_version=self.model_version,
            live_mae=live,
            holdout_mae=dict(self.holdout_mae),
            errors=self._errors.num_rows,
            watched_s=watched,
            drifting=bool(over) and whole,
            reason=reason,
        )

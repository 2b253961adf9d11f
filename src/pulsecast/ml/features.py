"""Training rows for the forecaster, built from a stream's gold window aggregates.

The gold table of a tumbling window (``gold_<stream>_1m``: per key, window and
numeric field, the count, mean, min, max, stddev, p50 and p95) becomes one
series per entity and metric: the window means at their window starts. From it
:func:`build_features` makes one row per entity, metric and window whose
columns are, all strictly causal (a row "as of" the end of window *t* uses
windows starting at or before *t* only):

- ``value``: the window's mean, the latest observation (the last-value baseline);
- ``lag_<k>m``: the mean of the window *k* minutes earlier (null when absent);
- ``roll_mean_<w>m`` / ``roll_std_<w>m``: mean and standard deviation of the
  window means of the last *w* minutes;
- ``season_lag``: the mean of the window one season earlier;
- ``seasonal``: the seasonal-naive forecast, the count-weighted mean of the
  *H* windows one season before the target's (a baseline, and a feature);

and, looking ahead, the label ``target``: the count-weighted mean of the next
*H* windows' events (*H* = the horizon in minutes), i.e. the mean of every
reading in the next *H* minutes. Everything is Spark window functions over
range frames of the window start (epoch seconds), so gaps (an entity that sent
nothing) leave nulls instead of shifting lags; no Python runs per row.

:func:`normalise` then puts every row on its entity's scale with statistics
from the training range only (:func:`fit_normaliser`): features become
differences from the latest value divided by the entity's standard deviation,
and so does the label; calendar features (minute of day when the training
range covers two days, and day of week when the history spans two weeks) are
added. A model learns the dynamics common to
every entity and metric, and its prediction maps back with
``value + sd * prediction``.

Needs pyspark.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from pulsecast.config import MlSettings, StreamSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = [
    "FeatureSpec",
    "build_features",
    "fit_normaliser",
    "gold_series",
    "normalise",
    "numeric_metrics",
    "split_point",
    "time_split",
]

_MIN_SD = 1e-9
# Statistics rows for entities the training range never saw: the metric's median.
ANY_KEY = "*"


def numeric_metrics(spec: StreamSpec) -> tuple[str, ...]:
    """The stream's numeric payload fields: the metrics gold aggregates, in declared order."""
    return tuple(name for name, f in spec.fields.items() if f.type in ("float", "int"))


@dataclass(frozen=True)
class FeatureSpec:
    """What a forecaster's rows are made of; stored with every model.

    Attributes:
        horizon_min: The label is the mean of the next ``horizon_min`` minutes.
        lags_min: Lags of the window mean, minutes.
        rolling_min: Spans of the rolling statistics, minutes.
        season_min: The season of ``season_lag`` and ``seasonal``, minutes.
        metrics: The stream's metrics in order (``metric_idx`` is the position).
        step_s: Length of the gold window the rows come from, seconds.
        day_of_week: Whether the day of week is a feature (history of two weeks or more).
        time_of_day: Whether the minute of the day is a feature. Training turns
            it on only when its rows cover every minute of the day twice: with
            less, the trees use the clock to memorise single events of the
            training range and apply them to unseen times of the holdout.
    """

    horizon_min: int
    lags_min: tuple[int, ...]
    rolling_min: tuple[int, ...]
    season_min: int
    metrics: tuple[str, ...]
    step_s: int = 60
    day_of_week: bool = False
    time_of_day: bool = True
    version: int = field(default=1)

    def __post_init__(self) -> None:
        if self.step_s <= 0 or 60 % self.step_s:
            msg = f"step_s must divide a minute, got {self.step_s}"
            raise ValueError(msg)
        if self.horizon_min < 1 or self.season_min <= self.horizon_min:
            msg = (
                f"need 1 <= horizon_min < season_min, got horizon_min {self.horizon_min} "
                f"and season_min {self.season_min}"
            )
            raise ValueError(msg)
        if not self.lags_min or not self.rolling_min:
            msg = "lags_min and rolling_min must not be empty"
            raise ValueError(msg)
        if min(self.lags_min) < 1 or min(self.rolling_min) < 1:
            msg = f"lags and rolling spans must be >= 1 minute: {self.lags_min} {self.rolling_min}"
            raise ValueError(msg)

    @classmethod
    def from_settings(
        cls,
        ml: MlSettings,
        metrics: tuple[str, ...],
        *,
        horizon_min: int | None = None,
        season_min: int | None = None,
        step_s: int = 60,
        day_of_week: bool = False,
        time_of_day: bool = True,
    ) -> FeatureSpec:
        """The spec the ``ml`` settings describe, with optional overrides."""
        return cls(
            horizon_min=horizon_min or ml.horizon_min,
            lags_min=tuple(sorted(set(ml.lags_min))),
            rolling_min=tuple(sorted(set(ml.rolling_min))),
            season_min=season_min or ml.season_min,
            metrics=metrics,
            step_s=step_s,
            day_of_week=day_of_week,
            time_of_day=time_of_day,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain values (JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`as_dict`."""
        values = dict(data)
        for name in ("lags_min", "rolling_min", "metrics"):
            values[name] = tuple(values[name])
        return cls(**values)

    @property
    def feature_columns(self) -> list[str]:
        """The model's input columns, in order (made by :func:`normalise`)."""
        columns = ["level_z", "w_std_z"]
        columns += [f"lag_{k}m_d" for k in self.lags_min]
        columns += [f"roll_mean_{w}m_d" for w in self.rolling_min]
        columns += [f"roll_std_{w}m_z" for w in self.rolling_min]
        columns += ["season_lag_d", "seasonal_d", "has_season"]
        if self.time_of_day:
            columns += ["mod_sin", "mod_cos"]
        if self.day_of_week:
            columns += ["dow_sin", "dow_cos"]
        columns.append("metric_idx")
        return columns


def gold_series(gold: DataFrame, *, final_only: bool = True) -> DataFrame:
    """A gold window table as series rows: ``key``, ``metric``, ``ts``, ``count``, ``mean``, ...

    ``ts`` is the window start in epoch seconds. With ``final_only``, only
    final windows are kept when the table says which are (open ones may still
    change); live forecasting takes the windows its scoring has closed, which
    the gold table may not have marked final yet.
    """
    final = final_only and "is_final" in gold.columns
    rows = gold.where(F.col("is_final")) if final else gold
    return rows.where(F.col("mean").isNotNull()).select(
        "key",
        "metric",
        F.unix_seconds(F.col("window_start")).alias("ts"),
        F.col("count").cast("long").alias("count"),
        F.col("mean").cast("double").alias("mean"),
        F.col("stddev").cast("double").alias("stddev"),
    )


def _weighted_mean(frame: Any) -> Column:
    """Count-weighted mean of the window means in ``frame``: the mean of its events."""
    events = F.sum("count").over(frame)
    return F.when(events > 0, F.sum(F.col("count") * F.col("mean")).over(frame) / events)


def build_features(series: DataFrame, spec: FeatureSpec) -> DataFrame:
    """Causal feature rows and the look-ahead label (see the module's description).

    Args:
        series: Rows of :func:`gold_series` (one per key, metric and window).
        spec: Lags, spans, season and horizon.

    Returns:
        Per key, metric and window: ``key``, ``metric``, ``ts``, ``as_of_s``
        (window end, epoch seconds), ``value``, ``w_std``, the lags, rolling
        statistics, ``season_lag``, ``seasonal``, ``target`` and
        ``target_windows`` (how many of the next windows hold events).
    """
    step = spec.step_s
    ordered = Window.partitionBy("key", "metric").orderBy("ts")

    def at(seconds_back: int) -> Column:
        return F.first("mean").over(ordered.rangeBetween(-seconds_back, -seconds_back))

    horizon_s = spec.horizon_min * 60
    season_s = spec.season_min * 60
    ahead = ordered.rangeBetween(step, horizon_s)
    season_ahead = ordered.rangeBetween(step - season_s, horizon_s - season_s)
    columns: list[Column] = [
        F.col("key"),
        F.col("metric"),
        F.col("ts"),
        (F.col("ts") + F.lit(step)).alias("as_of_s"),
        F.col("mean").alias("value"),
        F.col("stddev").alias("w_std"),
    ]
    columns += [at(k * 60).alias(f"lag_{k}m") for k in spec.lags_min]
    for w in spec.rolling_min:
        past = ordered.rangeBetween(-(w * 60 - step), 0)
        columns.append(F.avg("mean").over(past).alias(f"roll_mean_{w}m"))
        columns.append(F.stddev_samp("mean").over(past).alias(f"roll_std_{w}m"))
    columns += [
        at(season_s).alias("season_lag"),
        _weighted_mean(season_ahead).alias("seasonal"),
        _weighted_mean(ahead).alias("target"),
        F.count("mean").over(ahead).alias("target_windows"),
    ]
    return series.select(*columns)


def split_point(first_s: int, last_s: int, *, holdout_fraction: float, step_s: int = 60) -> int:
    """The time (epoch seconds) where the holdout starts: the latest ``holdout_fraction``.

    Aligned down to ``step_s``.

    >>> split_point(0, 1000 * 60, holdout_fraction=0.2)
    48000
    """
    if not 0 < holdout_fraction < 1:
        msg = f"holdout_fraction must be in (0, 1), got {holdout_fraction}"
        raise ValueError(msg)
    if last_s < first_s:
        msg = f"last ({last_s}) is before first ({first_s})"
        raise ValueError(msg)
    at = first_s + math.floor((last_s - first_s) * (1 - holdout_fraction))
    return at - (at % step_s)


def time_split(rows: DataFrame, split_s: int, *, horizon_min: int) -> tuple[DataFrame, DataFrame]:
    """Training rows and holdout rows of ``rows`` (with ``as_of_s``) around ``split_s``.

    A training row's label must end by the split, so nothing the holdout holds
    is learned from: training rows are as of ``split_s - horizon`` or earlier;
    holdout rows are as of ``split_s`` or later.
    """
    train = rows.where(F.col("as_of_s") + F.lit(horizon_min * 60) <= F.lit(split_s))
    holdout = rows.where(F.col("as_of_s") >= F.lit(split_s))
    return train, holdout


def fit_normaliser(rows: DataFrame, *, until_s: int) -> DataFrame:
    """Per entity and metric, the mean and standard deviation of ``value`` as of ``until_s``.

    Only rows as of ``until_s`` or earlier count (the training range: no
    leakage from the holdout). Rows with key ``*`` hold each metric's median
    over entities, for entities the training range did not see.

    Returns:
        Rows of ``key``, ``metric``, ``mu``, ``sd``.
    """
    seen = rows.where(F.col("as_of_s") <= F.lit(until_s))
    per_key = seen.groupBy("key", "metric").agg(
        F.avg("value").alias("mu"), F.stddev_samp("value").alias("sd")
    )
    fallback = per_key.groupBy("metric").agg(
        F.lit(ANY_KEY).alias("key"),
        F.percentile_approx("mu", 0.5).alias("mu"),
        F.percentile_approx("sd", 0.5).alias("sd"),
    )
    return per_key.unionByName(fallback)


def normalise(rows: DataFrame, stats: DataFrame, spec: FeatureSpec) -> DataFrame:
    """Model rows: the features of ``spec.feature_columns``, ``label``, and what maps back.

    Args:
        rows: Rows of :func:`build_features`.
        stats: Rows of :func:`fit_normaliser` (computed on the training range).
        spec: The feature spec.

    Returns:
        ``rows``' identifying and raw columns (``key``, ``metric``, ``as_of_s``,
        ``value``, ``seasonal``, ``target``), ``mu`` and ``sd`` (the scale),
        every feature column and ``label`` = ``(target - value) / sd`` (null
        without a target).
    """
    own = stats.where(F.col("key") != ANY_KEY)
    any_key = stats.where(F.col("key") == ANY_KEY).select(
        "metric", F.col("mu").alias("mu_any"), F.col("sd").alias("sd_any")
    )
    scaled = rows.join(F.broadcast(own), ["key", "metric"], "left").join(
        F.broadcast(any_key), ["metric"], "left"
    )
    sd_any = F.when(F.col("sd_any") > _MIN_SD, F.col("sd_any")).otherwise(F.lit(1.0))
    sd = F.when(F.col("sd") > _MIN_SD, F.col("sd")).otherwise(sd_any)
    scaled = scaled.select(
        *rows.columns,
        F.coalesce(F.col("mu"), F.col("mu_any")).alias("mu"),
        sd.alias("sd"),
    )
    value, scale = F.col("value"), F.col("sd")

    def diff(name: str) -> Column:
        return F.coalesce((F.col(name) - value) / scale, F.lit(0.0))

    def ratio(name: str) -> Column:
        return F.coalesce(F.col(name) / scale, F.lit(0.0))

    minute = (F.col("as_of_s") % 86_400) / 60.0
    day = F.floor(F.col("as_of_s") / 86_400)  # 1970-01-01 was a Thursday: any phase works
    features: dict[str, Column] = {
        "level_z": F.coalesce((value - F.col("mu")) / scale, F.lit(0.0)),
        "w_std_z": ratio("w_std"),
        **{f"lag_{k}m_d": diff(f"lag_{k}m") for k in spec.lags_min},
        **{f"roll_mean_{w}m_d": diff(f"roll_mean_{w}m") for w in spec.rolling_min},
        **{f"roll_std_{w}m_z": ratio(f"roll_std_{w}m") for w in spec.rolling_min},
        "season_lag_d": diff("season_lag"),
        "seasonal_d": diff("seasonal"),
        "has_season": F.col("seasonal").isNotNull().cast("double"),
        "mod_sin": F.sin(2 * math.pi * minute / 1440),
        "mod_cos": F.cos(2 * math.pi * minute / 1440),
        "dow_sin": F.sin(2 * math.pi * (day % 7) / 7),
        "dow_cos": F.cos(2 * math.pi * (day % 7) / 7),
        "metric_idx": (
            F.array_position(F.array(*[F.lit(m) for m in spec.metrics]), F.col("metric")) - 1
        ).cast("double"),
    }
    return scaled.select(
        "key",
        "metric",
        "as_of_s",
        "value",
        "seasonal",
        "target",
        "mu",
        "sd",
        *[features[name].cast("double").alias(name) for name in spec.feature_columns],
        ((F.col("target") - value) / scale).alias("label"),
    )

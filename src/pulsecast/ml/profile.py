"""The learned part of the anomaly detector: each entity's expected level and spread.

Per entity, metric and hour of day (UTC), from the gold window means of the
training range: how many windows (``n``), their ``mean`` and standard
deviation ``std``, and the robust pair ``median`` and ``mad`` (median absolute
deviation from the median; multiply by 1.4826 for a normal's sd). The online
detector reads it to judge a new window against what is usual for that
machine at that time of day.

It is evaluated on the holdout like a forecast of the window mean that knows
only the hour: ``mae`` of the median, and ``coverage_3sd``, the share of
holdout windows within ``mean ± 3 std`` (about 0.997 if the spread is right and
nothing unusual happened).

On disk it is one Parquet file, :data:`PROFILE_FILE`, whose rows are
:data:`PROFILE_COLUMNS`; :class:`DetectorProfile` reads it without Spark.
Building and scoring need pyspark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column
from pyspark.sql import functions as F

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = [
    "PROFILE_COLUMNS",
    "PROFILE_FILE",
    "DetectorProfile",
    "Expected",
    "fit_profile",
    "profile_scores",
]

PROFILE_FILE = "profile.parquet"
PROFILE_COLUMNS = ("key", "metric", "hour", "n", "mean", "std", "median", "mad")


def _hour(ts: str) -> Column:
    return F.hour(F.timestamp_seconds(F.col(ts)))


def fit_profile(series: DataFrame, *, until_s: int) -> DataFrame:
    """Expected level and spread per key, metric and hour from windows starting before ``until_s``.

    Args:
        series: Rows of :func:`~pulsecast.ml.features.gold_series`.
        until_s: End of the training range, epoch seconds.

    Returns:
        Rows of :data:`PROFILE_COLUMNS`.
    """
    rows = series.where(F.col("ts") < F.lit(until_s)).select(
        "key", "metric", _hour("ts").alias("hour"), "mean"
    )
    groups = ["key", "metric", "hour"]
    centre = rows.groupBy(*groups).agg(
        F.count("mean").alias("n"),
        F.avg("mean").alias("level"),
        F.stddev_samp("mean").alias("std"),
        F.percentile_approx("mean", 0.5, 10_000).alias("median"),
    )
    spread = (
        rows.join(centre.select(*groups, "median"), groups)
        .groupBy(*groups)
        .agg(F.percentile_approx(F.abs(F.col("mean") - F.col("median")), 0.5, 10_000).alias("mad"))
    )
    return centre.join(spread, groups).select(
        "key",
        "metric",
        F.col("hour").cast("int").alias("hour"),
        F.col("n").cast("long").alias("n"),
        F.col("level").alias("mean"),
        F.coalesce(F.col("std"), F.lit(0.0)).alias("std"),
        F.col("median").cast("double").alias("median"),
        F.col("mad").cast("double").alias("mad"),
    )


def profile_scores(
    profile: DataFrame, series: DataFrame, *, since_s: int, only: DataFrame | None = None
) -> dict[str, float]:
    """How well a profile describes the windows starting at or after ``since_s``.

    Windows whose key, metric and hour the profile lacks are left out, and so
    are those not in ``only`` (rows of ``key``, ``metric``, ``hour``) if given:
    to score two profiles on the same windows.

    Returns:
        ``rows``, ``mae`` (of the median as a forecast of the window mean) and
        ``coverage_3sd`` (share within ``mean ± 3 std``).
    """
    rows = series.where(F.col("ts") >= F.lit(since_s)).select(
        "key", "metric", _hour("ts").cast("int").alias("hour"), F.col("mean").alias("actual")
    )
    if only is not None:
        rows = rows.join(only, ["key", "metric", "hour"], "left_semi")
    joined = rows.join(profile, ["key", "metric", "hour"])
    inside = F.abs(F.col("actual") - F.col("mean")) <= 3 * F.col("std")
    row = joined.agg(
        F.count(F.lit(1)).alias("rows"),
        F.avg(F.abs(F.col("actual") - F.col("median"))).alias("mae"),
        F.avg(inside.cast("double")).alias("coverage_3sd"),
    ).first()
    if row is None or not row["rows"]:
        return {"rows": 0.0, "mae": float("nan"), "coverage_3sd": float("nan")}
    return {
        "rows": float(row["rows"]),
        "mae": float(row["mae"]),
        "coverage_3sd": float(row["coverage_3sd"]),
    }


@dataclass(frozen=True)
class Expected:
    """What is usual for one entity, metric and hour."""

    n: int
    mean: float
    std: float
    median: float
    mad: float


class DetectorProfile:
    """A profile read back from its Parquet file (no Spark needed).

    Args:
        table: Rows of :data:`PROFILE_COLUMNS`.
        version: The registry version it came from, if any.
    """

    def __init__(self, table: pa.Table, *, version: int | None = None) -> None:
        missing = [c for c in PROFILE_COLUMNS if c not in table.column_names]
        if missing:
            msg = f"a detector profile needs columns {list(PROFILE_COLUMNS)}; missing {missing}"
            raise ValueError(msg)
        self.table = table.select(list(PROFILE_COLUMNS))
        self.version = version
        self._index = {
            (r["key"], r["metric"], r["hour"]): Expected(
                r["n"], r["mean"], r["std"], r["median"], r["mad"]
            )
            for r in self.table.to_pylist()
        }

    @classmethod
    def read(cls, folder: Path, *, version: int | None = None) -> DetectorProfile:
        """Read ``folder/profile.parquet``."""
        return cls(pq.read_table(folder / PROFILE_FILE), version=version)

    def write(self, folder: Path) -> None:
        """Write ``folder/profile.parquet``."""
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.table, folder / PROFILE_FILE)

    def expected(self, key: str, metric: str, hour: int) -> Expected | None:
        """The usual level and spread, or None if the profile never saw them."""
        return self._index.get((key, metric, hour))

    def __len__(self) -> int:
        return int(self.table.num_rows)

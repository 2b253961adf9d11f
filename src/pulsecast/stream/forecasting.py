"""Live forecasts in the scoring sink, by the registry's champion, hot-loaded.

:class:`LiveForecaster` holds a stream's champion forecaster. At most every
``ml.reload_interval_s`` it asks the model registry which version is champion,
and when that changed (a promotion, a rollback, a retraining by the job) it
loads the new one into the running session: the streaming job never restarts
for a model.

For a scoring batch it forecasts every closed window mean it holds: the
features of each (entity, metric, window) are built by the very function that
built the training rows (:func:`~pulsecast.ml.features.build_features`), from
the gold table of the model's window. Only the gold windows those features
look at are read: the lags' and rolling spans' reach before the batch's
windows, and the stretch one season earlier. Gold is read whether or not a
window is final yet: the scoring query closes a window by the same lateness
as the gold query, so gold holds it whole by then.

A forecast is the expected mean of the next ``horizon_min`` minutes after its
window (see :mod:`pulsecast.ml.live_error`, which checks them). Forecasting
never fails a scoring batch: a registry that cannot be read or a model that
cannot be loaded or applied is logged, and the scores go out without
forecasts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import functions as F

from pulsecast.config import Settings
from pulsecast.lake.tables import LakeTables
from pulsecast.ml.features import build_features, gold_series
from pulsecast.monitoring.metrics import record_model

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pulsecast.ml.forecast import Forecaster
    from pulsecast.ml.registry import ModelRegistry

__all__ = ["FORECAST_SCHEMA", "Champion", "LiveForecaster"]

log = logging.getLogger(__name__)

#: What :meth:`LiveForecaster.forecast` returns, one row per entity, metric and window.
FORECAST_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("metric", pa.string()),
        ("window_s", pa.int64()),
        ("forecast", pa.float64()),
        ("horizon_min", pa.int32()),
        ("model_version", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Champion:
    """The forecaster in use and what its registry record says of it."""

    model: Forecaster
    version: int
    holdout_mae: dict[str, float]
    trained_at: datetime


def _holdout_mae(metrics: dict[str, float], names: tuple[str, ...]) -> dict[str, float]:
    """Per metric, the model's holdout MAE (``<metric>.model_mae`` in its record)."""
    return {m: float(metrics[f"{m}.model_mae"]) for m in names if f"{m}.model_mae" in metrics}


class LiveForecaster:
    """A stream's champion forecaster, followed in the registry (see the module's description).

    Args:
        settings: The platform's settings (``ml`` section).
        stream: The stream.
    """

    def __init__(self, settings: Settings, stream: str) -> None:
        self.settings = settings
        self.stream = stream
        self.champion: Champion | None = None
        self._registry: ModelRegistry | None = None
        self._checked_at = -float("inf")
        self._failing = False

    @property
    def gold_uri(self) -> str:
        """The gold table the forecaster's features come from."""
        return LakeTables.from_settings(self.settings).gold(
            self.stream, self.settings.ml.gold_window
        )

    def refresh(self, spark: SparkSession, *, force: bool = False) -> Champion | None:
        """The champion, loaded anew if the registry names another one since the last look.

        Looks at most every ``ml.reload_interval_s`` unless ``force``. A failure
        keeps the model in use.
        """
        now = time.monotonic()
        if not force and now - self._checked_at < self.settings.ml.reload_interval_s:
            return self.champion
        self._checked_at = now
        try:
            self._refresh(spark)
        except Exception as exc:
            if not self._failing:
                log.warning(
                    "cannot look up the %s forecaster in the registry (%s); keeping %s",
                    self.stream,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    f"version {self.champion.version}" if self.champion else "no forecasts",
                )
            self._failing = True
        else:
            self._failing = False
        return self.champion

    def _refresh(self, spark: SparkSession) -> None:
        from pulsecast.ml.forecast import Forecaster
        from pulsecast.ml.registry import ModelRegistry

        if self._registry is None:
            self._registry = ModelRegistry(self.settings)
        info = self._registry.champion(self.stream, "forecaster")
        current = self.champion
        if info is None:
            if current is not None:
                log.warning("the %s forecaster has no champion any more", self.stream)
                current.model.stats.unpersist()
            self.champion = None
            return
        if current is not None and current.version == info.version:
            return
        model = Forecaster.load(spark, self._registry.download(info))
        self.champion = Champion(
            model=model,
            version=info.version,
            holdout_mae=_holdout_mae(info.metrics, model.spec.metrics),
            trained_at=info.created,
        )
        if current is not None:
            current.model.stats.unpersist()
        record_model(
            self.stream,
            "forecaster",
            version=info.version,
            trained_at_s=info.created.timestamp(),
            holdout_mae=self.champion.holdout_mae,
        )
        log.info(
            "forecasting %s with %s version %d (was %s)",
            self.stream,
            info.name,
            info.version,
            f"version {current.version}" if current else "none",
        )

    def forecast(self, spark: SparkSession, rows: pa.Table) -> pa.Table | None:
        """Forecasts for a scoring batch's window means, or None without a champion.

        Args:
            spark: The session.
            rows: The batch's scores (``key``, ``metric`` and ``window_s``, the
                window start in epoch seconds).

        Returns:
            Rows of :data:`FORECAST_SCHEMA` for the rows whose metric the model
            forecasts and whose features the gold table has.
        """
        champion = self.refresh(spark)
        if champion is None:
            return None
        try:
            return self._forecast(spark, champion, rows)
        except Exception as exc:
            log.warning(
                "cannot forecast %s with version %d (%s); scores go out without forecasts",
                self.stream,
                champion.version,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            return None

    def _forecast(self, spark: SparkSession, champion: Champion, rows: pa.Table) -> pa.Table:
        spec = champion.model.spec
        mine = rows.filter(pc.is_in(rows["metric"], pa.array(spec.metrics)))
        if mine.num_rows == 0:
            return FORECAST_SCHEMA.empty_table()
        seconds = mine["window_s"]
        targets = (
            pa.table({"key": mine["key"], "metric": mine["metric"], "ts": seconds})
            .group_by(["key", "metric", "ts"])
            .aggregate([])
        )
        first, last = int(pc.min(seconds).as_py()), int(pc.max(seconds).as_py())
        reach = max(*spec.lags_min, *spec.rolling_min) * 60
        season, horizon = spec.season_min * 60, spec.horizon_min * 60
        keys = sorted(set(targets["key"].to_pylist()))
        ts = F.unix_seconds(F.col("window_start"))
        near = ts.between(first - reach, last)
        a_season_back = ts.between(first - season, last - season + horizon)
        since = datetime.fromtimestamp(first - season, UTC).date()
        gold = (
            spark.read.format("delta")
            .load(self.gold_uri)
            .where(F.col("window_date") >= F.lit(since))  # partition pruning
            .where(F.col("key").isin(keys) & F.col("metric").isin(list(spec.metrics)))
            .where(near | a_season_back)
        )
        features = build_features(gold_series(gold, final_only=False), spec).join(
            F.broadcast(spark.createDataFrame(targets)), ["key", "metric", "ts"]
        )
        predicted = champion.model.predict(features).select(
            "key",
            "metric",
            (F.col("as_of_s") - F.lit(spec.step_s)).cast("long").alias("window_s"),
            F.col("forecast").cast("double"),
            F.lit(spec.horizon_min).cast("int").alias("horizon_min"),
            F.lit(champion.version).cast("long").alias("model_version"),
        )
        return predicted.toArrow().cast(FORECAST_SCHEMA)

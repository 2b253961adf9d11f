"""``pulsecast train``: fit the forecaster and the detector profile on a stream's history.

The history is the stream's gold table of ``ml.gold_window`` (one-minute
windows by default). Its time span is split: the latest ``ml.holdout_fraction``
is the holdout, the rest the training range (a training row's label must end
before the holdout starts). Then, for each model asked for:

- **forecaster**: features (:mod:`pulsecast.ml.features`), gradient-boosted
  trees (:mod:`pulsecast.ml.forecast`), scored on the holdout against the
  last-value and seasonal-naive baselines (MAE, sMAPE), overall and per metric;
- **detector**: the expected level and spread per entity, metric and hour
  (:mod:`pulsecast.ml.profile`), scored on the holdout;

and, when a champion exists, the champion is scored on the same holdout rows.
Each model is registered as a new version (:mod:`pulsecast.ml.registry`) and,
with ``promote``, becomes champion if it beats the current one.

The seasonal baseline uses a season of ``ml.season_min`` (a day) when the
training range spans at least 1.25 seasons, else an hour (the report says
so). Needs pyspark and mlflow-skinny.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from pulsecast.config import Settings, WindowSpec
from pulsecast.errors import ConfigError
from pulsecast.events.schema import SchemaRegistry
from pulsecast.lake.tables import LakeTables
from pulsecast.ml.accuracy import accuracy
from pulsecast.ml.errors import NotEnoughHistoryError, PromotionRefusedError
from pulsecast.ml.features import (
    FeatureSpec,
    build_features,
    fit_normaliser,
    gold_series,
    numeric_metrics,
    split_point,
    time_split,
)
from pulsecast.ml.forecast import Forecaster, baseline_scores, gbt_params
from pulsecast.ml.profile import DetectorProfile, fit_profile, profile_scores
from pulsecast.ml.registry import MODEL_KINDS, Decision, ModelRegistry, baseline_shortfall

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["ModelReport", "TrainReport", "choose_season", "train"]

log = logging.getLogger(__name__)

FALLBACK_SEASON_MIN = 60
_SEASONS_NEEDED = 1.25  # training range / season, so some training rows see a season back
_TWO_WEEKS_S = 14 * 86_400
_TWO_DAYS_S = 2 * 86_400


def choose_season(
    span_s: float, *, holdout_fraction: float, season_min: int, horizon_min: int
) -> tuple[int, str | None]:
    """The season for the seasonal baseline and feature, and a note when it is not the configured.

    Args:
        span_s: Time span of the history, seconds.
        holdout_fraction: Share of it held out.
        season_min: The configured season, minutes.
        horizon_min: The forecast horizon, minutes.

    Returns:
        The season in minutes, and None or a sentence saying why it differs.

    Raises:
        ValueError: The history is too short even for the hourly fallback.

    >>> choose_season(2 * 86_400, holdout_fraction=0.2, season_min=1440, horizon_min=5)
    (1440, None)
    >>> choose_season(86_400, holdout_fraction=0.2, season_min=1440, horizon_min=5)[0]
    60
    """
    training_s = span_s * (1 - holdout_fraction)
    if training_s >= _SEASONS_NEEDED * season_min * 60:
        return season_min, None
    fallback = max(FALLBACK_SEASON_MIN, horizon_min + 1)
    if fallback < season_min and training_s >= _SEASONS_NEEDED * fallback * 60:
        hours = span_s / 3600
        note = (
            f"the history spans {hours:.1f} h, too short for a season of {season_min} min "
            f"(the training range needs {_SEASONS_NEEDED} seasons): the seasonal-naive "
            f"baseline and feature use {fallback} min instead"
        )
        return fallback, note
    msg = (
        f"the history spans {span_s / 3600:.1f} h; training needs at least "
        f"{_SEASONS_NEEDED * fallback / 60 / (1 - holdout_fraction):.1f} h"
    )
    raise ValueError(msg)


@dataclass
class ModelReport:
    """One model's training: its version, scores and promotion.

    Attributes:
        kind: ``forecaster`` or ``detector``.
        version: The registered version.
        promoted: Whether it became the champion.
        decision: Why (or why not).
        champion_version: The champion after this training.
        metrics: Holdout metrics as logged.
        per_metric: Scores per stream metric (forecaster: model and baselines).
        params: Parameters as logged.
        data: Data range as logged (tags ``data.*``).
        seconds: Wall time of fitting and scoring.
    """

    kind: str
    version: int
    promoted: bool
    decision: str
    champion_version: int | None
    metrics: dict[str, float]
    per_metric: list[dict[str, Any]]
    params: dict[str, Any]
    data: dict[str, str]
    seconds: float

    @property
    def beats_baselines(self) -> bool | None:
        """Forecaster: lower MAE and sMAPE than both baselines (None for the detector)."""
        if self.kind != "forecaster":
            return None
        return baseline_shortfall(self.metrics) is None

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON output."""
        return {
            "kind": self.kind,
            "version": self.version,
            "promoted": self.promoted,
            "decision": self.decision,
            "champion_version": self.champion_version,
            "beats_baselines": self.beats_baselines,
            "metrics": self.metrics,
            "per_metric": self.per_metric,
            "params": self.params,
            "data": self.data,
            "seconds": round(self.seconds, 1),
        }


@dataclass
class TrainReport:
    """What ``pulsecast train`` did."""

    stream: str
    models: list[ModelReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON output."""
        return {
            "stream": self.stream,
            "models": [m.as_dict() for m in self.models],
            "notes": self.notes,
            "seconds": round(self.seconds, 1),
        }


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


def _gold_window(settings: Settings) -> WindowSpec:
    name = settings.ml.gold_window
    for window in settings.stream.windows:
        if window.name == name:
            if (window.slide_s or window.size_s) != window.size_s or 60 % window.size_s:
                msg = (
                    f"ml.gold_window {name!r} must be a tumbling window of a minute or a "
                    f"divisor of one, not size {window.size_s} s slide {window.slide_s} s"
                )
                raise ConfigError(msg, key="ml.gold_window", value=name)
            return window
    names = [w.name for w in settings.stream.windows]
    msg = f"ml.gold_window {name!r} is not one of the stream windows {names}"
    raise ConfigError(msg, key="ml.gold_window", value=name)


def _scores(row: dict[str, object], names: Sequence[str]) -> dict[str, float]:
    return {
        f"{n}_{s}": float(row[f"{n}_{s}"])  # type: ignore[arg-type]
        for n in names
        for s in ("mae", "smape")
    }


def train(
    spark: SparkSession,
    settings: Settings,
    stream: str,
    *,
    kinds: Sequence[str] = MODEL_KINDS,
    horizon_min: int | None = None,
    promote: bool = True,
    trigger: str = "on demand",
    progress: Callable[[str], None] | None = None,
) -> TrainReport:
    """Train, score, register and (with ``promote``) promote the stream's models.

    Args:
        spark: The session.
        settings: The platform's settings (``ml`` section).
        stream: The stream whose gold history to learn from.
        kinds: ``forecaster`` and/or ``detector``.
        horizon_min: Forecast horizon; default ``ml.horizon_min``.
        promote: Make each new version champion if it beats the current one.
        trigger: Why it trains (``on demand``, or the streaming job's schedule or
            drift), recorded with each version as the ``trigger`` tag.
        progress: Called with a line of text at each step.

    Returns:
        The report (versions, scores, decisions).

    Raises:
        UnknownStreamError: The stream is not configured.
        ConfigError: ``ml.gold_window`` is not a usable window.
        NotEnoughHistoryError: The gold table is missing or too short.
        RegistryError: The registry cannot be written.
    """
    say = progress or (lambda _text: None)
    started = time.monotonic()
    spec_of_stream = SchemaRegistry(settings.streams)[stream].spec
    unknown = [k for k in kinds if k not in MODEL_KINDS]
    if unknown or not kinds:
        msg = f"model kinds must be among {', '.join(MODEL_KINDS)}, got {list(kinds)}"
        raise ConfigError(msg)
    ml = settings.ml
    horizon = horizon_min or ml.horizon_min
    window = _gold_window(settings)
    uri = LakeTables.from_settings(settings).gold(stream, window.name)
    series = _read_series(spark, uri, stream)
    report = TrainReport(stream)
    try:
        bounds = series.agg(
            F.min("ts").alias("first"),
            F.max("ts").alias("last"),
            F.count(F.lit(1)).alias("rows"),
            F.countDistinct("key").alias("entities"),
        ).first()
        if bounds is None or not bounds["rows"]:
            msg = (
                f"no final {window.name} windows in {uri} yet: run the stream job, or "
                f"`pulsecast train --backfill-days 2` for simulated history"
            )
            raise NotEnoughHistoryError(msg, stream=stream, table=uri)
        first, last = int(bounds["first"]), int(bounds["last"])
        step = window.size_s
        try:
            season, note = choose_season(
                last - first + step,
                holdout_fraction=ml.holdout_fraction,
                season_min=ml.season_min,
                horizon_min=horizon,
            )
        except ValueError as exc:
            msg = f"not enough history in {uri} to train on: {exc}"
            raise NotEnoughHistoryError(msg, stream=stream, table=uri) from None
        if note:
            report.notes.append(note)
            say(f"note: {note}")
        split_s = split_point(
            first + step, last + step, holdout_fraction=ml.holdout_fraction, step_s=step
        )
        spec = FeatureSpec.from_settings(
            ml,
            numeric_metrics(spec_of_stream),
            horizon_min=horizon,
            season_min=season,
            step_s=step,
            day_of_week=last - first >= _TWO_WEEKS_S,
            time_of_day=split_s - first >= _TWO_DAYS_S,
        )
        data = {
            "trigger": trigger,
            "data.table": uri,
            "data.first_window": _iso(first),
            "data.last_window": _iso(last),
            "data.holdout_from": _iso(split_s),
            "data.gold_rows": str(bounds["rows"]),
            "data.entities": str(bounds["entities"]),
        }
        say(
            f"history: {bounds['rows']:,} {window.name} windows of {bounds['entities']} "
            f"entities from {data['data.first_window']} to {data['data.last_window']}; "
            f"holdout from {data['data.holdout_from']}"
        )
        registry = ModelRegistry(settings)
        if "forecaster" in kinds:
            report.models.append(
                _train_forecaster(
                    spark, settings, stream, series, spec, split_s, data, registry, promote, say
                )
            )
        if "detector" in kinds:
            report.models.append(
                _train_detector(spark, settings, stream, series, split_s, data, registry, promote)
            )
    finally:
        series.unpersist()
    report.seconds = time.monotonic() - started
    return report


def _read_series(spark: SparkSession, uri: str, stream: str) -> DataFrame:
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, uri):
        msg = (
            f"no gold table at {uri}: run the stream job, or "
            f"`pulsecast train --backfill-days 2` for simulated history"
        )
        raise NotEnoughHistoryError(msg, stream=stream, table=uri)
    return gold_series(spark.read.format("delta").load(uri)).persist()


def _register(
    registry: ModelRegistry,
    *,
    stream: str,
    kind: str,
    folder: Path,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    promote: bool,
) -> tuple[int, bool, str, int | None]:
    """Register a version and maybe promote it: version, promoted, reason, champion after."""
    info = registry.log_version(
        stream=stream, kind=kind, folder=folder, params=params, metrics=metrics, tags=tags
    )
    if not promote:
        current = registry.champion(stream, kind)
        return info.version, False, "not asked to promote", current.version if current else None
    try:
        decision: Decision = registry.promote(stream, kind, info.version)
    except PromotionRefusedError as exc:
        current = registry.champion(stream, kind)
        return info.version, False, exc.reason, current.version if current else None
    return info.version, decision.promote, decision.reason, info.version


def _train_forecaster(
    spark: SparkSession,
    settings: Settings,
    stream: str,
    series: DataFrame,
    spec: FeatureSpec,
    split_s: int,
    data: dict[str, str],
    registry: ModelRegistry,
    promote: bool,
    say: Callable[[str], None],
) -> ModelReport:
    started = time.monotonic()
    ml = settings.ml
    features = build_features(series, spec).persist()
    stats = None
    predicted = None
    try:
        train_rows, holdout_rows = time_split(features, split_s, horizon_min=spec.horizon_min)
        train_rows = train_rows.where(F.col("target").isNotNull()).persist()
        n_train = train_rows.count()
        stats = fit_normaliser(features, until_s=split_s).persist()
        params = gbt_params(ml)
        say(
            f"training the forecaster ({params['max_iter']} trees of depth "
            f"{params['max_depth']}) on {n_train:,} rows, {spec.horizon_min} min ahead..."
        )
        model = Forecaster.fit(train_rows, stats, spec, params)
        train_rows.unpersist()
        predicted = model.predict(holdout_rows.where(F.col("target").isNotNull())).persist()
        scores = baseline_scores(predicted)
        total = scores[0]
        names = ("model", "last_value", "seasonal")
        flat = _scores(total, names)
        metrics = {
            "holdout_mae": flat["model_mae"],
            "holdout_smape": flat["model_smape"],
            **{k: v for k, v in flat.items() if not k.startswith("model_")},
            "holdout_rows": float(total["rows"]),  # type: ignore[arg-type]
            "train_rows": float(n_train),
        }
        per_metric: list[dict[str, Any]] = []
        for row in scores[1:]:
            by_metric = _scores(row, names)
            per_metric.append({"metric": row["group"], "rows": row["rows"], **by_metric})
            for name in names:
                metrics[f"{row['group']}.{name}_mae"] = by_metric[f"{name}_mae"]
        tags = dict(data)
        champion = registry.champion(stream, "forecaster")
        if champion is not None and champion.params.get("horizon_min") == str(spec.horizon_min):
            say(f"scoring the champion (version {champion.version}) on the same holdout...")
            theirs = Forecaster.load(spark, registry.download(champion))
            their_rows = time_split(
                build_features(series, theirs.spec), split_s, horizon_min=spec.horizon_min
            )[1]
            their_pred = theirs.predict(their_rows.where(F.col("target").isNotNull())).select(
                "key", "metric", "as_of_s", F.col("forecast").alias("champion_forecast")
            )
            both = accuracy(
                predicted.join(their_pred, ["key", "metric", "as_of_s"]),
                actual="target",
                predictions={"model": "forecast", "champion": "champion_forecast"},
            )[0]
            if both["rows"]:
                metrics["vs_champion_mae"] = float(both["model_mae"])  # type: ignore[arg-type]
                metrics["champion_mae"] = float(both["champion_mae"])  # type: ignore[arg-type]
                tags["compared_with_version"] = str(champion.version)
        logged = {
            **{
                k: ",".join(map(str, v)) if isinstance(v, tuple) else v
                for k, v in spec.as_dict().items()
            },
            **params,
            "holdout_fraction": ml.holdout_fraction,
            "gold_window": ml.gold_window,
            "features": ",".join(spec.feature_columns),
        }
        with tempfile.TemporaryDirectory(prefix="pulsecast-forecaster-") as tmp:
            folder = Path(tmp) / "model"
            model.save(folder)
            version, promoted, reason, champion_after = _register(
                registry,
                stream=stream,
                kind="forecaster",
                folder=folder,
                params=logged,
                metrics=metrics,
                tags=tags,
                promote=promote,
            )
    finally:
        for frame in (predicted, stats, features):
            if frame is not None:
                frame.unpersist()
    return ModelReport(
        kind="forecaster",
        version=version,
        promoted=promoted,
        decision=reason,
        champion_version=champion_after,
        metrics=metrics,
        per_metric=per_metric,
        params=logged,
        data=tags,
        seconds=time.monotonic() - started,
    )


def _train_detector(
    spark: SparkSession,
    settings: Settings,
    stream: str,
    series: DataFrame,
    split_s: int,
    data: dict[str, str],
    registry: ModelRegistry,
    promote: bool,
) -> ModelReport:
    started = time.monotonic()
    profile = fit_profile(series, until_s=split_s).persist()
    try:
        table = profile.toArrow()
        mine = profile_scores(profile, series, since_s=split_s)
        metrics = {
            "holdout_mae": mine["mae"],
            "holdout_coverage_3sd": mine["coverage_3sd"],
            "holdout_rows": mine["rows"],
            "profile_rows": float(table.num_rows),
        }
        tags = dict(data)
        champion = registry.champion(stream, "detector")
        if champion is not None:
            theirs = DetectorProfile.read(registry.download(champion)).table
            their_frame = spark.createDataFrame(theirs)
            common = their_frame.select("key", "metric", "hour").join(
                profile.select("key", "metric", "hour"), ["key", "metric", "hour"]
            )
            a = profile_scores(profile, series, since_s=split_s, only=common)
            b = profile_scores(their_frame, series, since_s=split_s, only=common)
            if a["rows"] and not math.isnan(a["mae"]):
                metrics["vs_champion_mae"] = a["mae"]
                metrics["champion_mae"] = b["mae"]
                tags["compared_with_version"] = str(champion.version)
        params = {"holdout_fraction": settings.ml.holdout_fraction, "by": "key,metric,hour"}
        with tempfile.TemporaryDirectory(prefix="pulsecast-detector-") as tmp:
            folder = Path(tmp) / "model"
            DetectorProfile(table).write(folder)
            version, promoted, reason, champion_after = _register(
                registry,
                stream=stream,
                kind="detector",
                folder=folder,
                params=params,
                metrics=metrics,
                tags=tags,
                promote=promote,
            )
    finally:
        profile.unpersist()
    return ModelReport(
        kind="detector",
        version=version,
        promoted=promoted,
        decision=reason,
        champion_version=champion_after,
        metrics=metrics,
        per_metric=[],
        params=params,
        data=tags,
        seconds=time.monotonic() - started,
    )

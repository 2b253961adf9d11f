"""The forecaster: gradient-boosted trees (Spark MLlib) on normalised feature rows.

A :class:`Forecaster` is an MLlib ``PipelineModel`` (a ``VectorAssembler`` and a
``GBTRegressor``) plus what maps its input and output: the
:class:`~pulsecast.ml.features.FeatureSpec` and the per-entity normalisation
statistics of its training range. It predicts the label of
:func:`~pulsecast.ml.features.normalise`, the change of the next minutes' mean
from the latest value in units of the entity's standard deviation, and maps it
back: ``forecast = value + sd * prediction``.

:func:`baseline_scores` scores a forecast against the two baselines on the same
rows: the **last value** (the latest window's mean) and the **seasonal naive**
forecast (the same minutes one season earlier).

On disk a forecaster is a folder: ``forecaster.json`` (the spec), ``pipeline/``
(MLlib's own format) and ``stats/`` (Parquet). Needs pyspark.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import GBTRegressor
from pyspark.sql import functions as F

from pulsecast.config import MlSettings
from pulsecast.ml.accuracy import accuracy
from pulsecast.ml.features import FeatureSpec, normalise

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SPEC_FILE", "Forecaster", "baseline_scores", "gbt_params"]

log = logging.getLogger(__name__)

SPEC_FILE = "forecaster.json"
_PIPELINE_DIR = "pipeline"
_STATS_DIR = "stats"


def gbt_params(ml: MlSettings) -> dict[str, Any]:
    """The training's hyper-parameters from the settings (logged with each model)."""
    return {
        "label_clip_sd": ml.label_clip_sd,
        "max_iter": ml.gbt_max_iter,
        "max_depth": ml.gbt_max_depth,
        "step_size": ml.gbt_step_size,
        "subsampling_rate": ml.gbt_subsampling_rate,
        "seed": ml.gbt_seed,
    }


@dataclass
class Forecaster:
    """A trained forecaster (see the module's description).

    Attributes:
        spec: How its feature rows are made.
        pipeline: The fitted MLlib pipeline (assembler and trees).
        stats: Normalisation statistics (``key``, ``metric``, ``mu``, ``sd``).
    """

    spec: FeatureSpec
    pipeline: PipelineModel
    stats: DataFrame

    @classmethod
    def fit(
        cls, train: DataFrame, stats: DataFrame, spec: FeatureSpec, params: dict[str, Any]
    ) -> Forecaster:
        """Fit the trees on training rows.

        Args:
            train: Rows of :func:`~pulsecast.ml.features.build_features` in the
                training range (rows without a target are skipped).
            stats: Normalisation statistics of the training range.
            spec: The feature spec.
            params: Hyper-parameters (:func:`gbt_params`). Labels beyond
                ``label_clip_sd`` (when given) are clipped to it.
        """
        rows = normalise(train, stats, spec).where(F.col("label").isNotNull())
        if params.get("label_clip_sd") is not None:
            bound = float(params["label_clip_sd"])
            clipped = F.greatest(F.lit(-bound), F.least(F.lit(bound), F.col("label")))
            rows = rows.withColumn("label", clipped)
        gbt = GBTRegressor(
            featuresCol="features",
            labelCol="label",
            predictionCol="prediction_z",
            maxIter=int(params["max_iter"]),
            maxDepth=int(params["max_depth"]),
            stepSize=float(params["step_size"]),
            subsamplingRate=float(params["subsampling_rate"]),
            seed=int(params["seed"]),
        )
        assembler = VectorAssembler(inputCols=spec.feature_columns, outputCol="features")
        model = Pipeline(stages=[assembler, gbt]).fit(rows)
        return cls(spec=spec, pipeline=model, stats=stats)

    def predict(self, rows: DataFrame) -> DataFrame:
        """Forecasts for feature rows.

        Args:
            rows: Rows of :func:`~pulsecast.ml.features.build_features` made with
                this forecaster's spec (the label may be null).

        Returns:
            ``key``, ``metric``, ``as_of_s``, ``value`` (last value), ``seasonal``,
            ``target`` (null for the future) and ``forecast``: the expected mean of
            the ``spec.horizon_min`` minutes after ``as_of_s``.
        """
        scored = self.pipeline.transform(normalise(rows, self.stats, self.spec))
        return scored.select(
            "key",
            "metric",
            "as_of_s",
            "value",
            "seasonal",
            "target",
            (F.col("value") + F.col("sd") * F.col("prediction_z")).alias("forecast"),
        )

    def save(self, folder: Path) -> None:
        """Write the forecaster into ``folder`` (created; must not hold one already)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SPEC_FILE).write_text(json.dumps(self.spec.as_dict(), indent=2) + "\n")
        self.pipeline.write().overwrite().save((folder / _PIPELINE_DIR).as_uri())
        self.stats.coalesce(1).write.mode("overwrite").parquet((folder / _STATS_DIR).as_uri())

    @classmethod
    def load(cls, spark: SparkSession, folder: Path) -> Forecaster:
        """Read a forecaster written by :meth:`save`."""
        spec = FeatureSpec.from_dict(json.loads((folder / SPEC_FILE).read_text()))
        pipeline = PipelineModel.load((folder / _PIPELINE_DIR).as_uri())
        stats = spark.read.parquet((folder / _STATS_DIR).as_uri()).cache()
        return cls(spec=spec, pipeline=pipeline, stats=stats)


def baseline_scores(predicted: DataFrame) -> list[dict[str, object]]:
    """MAE and sMAPE of the model, the last value and the seasonal naive forecast.

    Args:
        predicted: Rows of :meth:`Forecaster.predict` with a ``target``.

    Returns:
        As :func:`~pulsecast.ml.accuracy.accuracy`, for ``model``, ``last_value``
        and ``seasonal``; the total first, then one result per metric. Rows
        without a seasonal-naive value are left out, so all three are scored
        on the same rows.
    """
    return accuracy(
        predicted,
        actual="target",
        predictions={"model": "forecast", "last_value": "value", "seasonal": "seasonal"},
        by="metric",
    )

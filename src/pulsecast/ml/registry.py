"""The model registry: versioned models in MLflow, promoted champion/challenger.

MLflow (the ``mlflow-skinny`` distribution) keeps runs and registered models
in one SQLite file, ``<data_dir>/mlflow/registry.db``, and model files under
``<data_dir>/mlflow/artifacts/<stream>/`` (``ml.registry_uri`` and
``ml.artifact_uri`` point elsewhere, e.g. a PostgreSQL store). Layout:

- one experiment per stream, ``pulsecast-<stream>``; one run per training;
- one registered model per stream and kind, ``<stream>-forecaster`` and
  ``<stream>-detector``; each training adds a version whose run holds the
  parameters, the holdout metrics (model and baselines), the training data's
  range and the code version, and whose artefact ``model/`` is the model's
  folder (for the forecaster an MLlib pipeline saved by Spark: MLflow's
  ``spark`` flavour needs the full ``mlflow`` package and pandas);
- the alias ``champion`` names the version in use; the registered model's tag
  ``pulsecast.champions`` lists the champions in order, for rollback.

Promotion is champion/challenger (:func:`decide`): a version becomes champion
only if its holdout MAE beats the champion's. Training scores the champion on
the challenger's own holdout rows (metrics ``vs_champion_mae`` and
``champion_mae``, tag ``compared_with_version``), so both are judged on the
same data; when the champion changed since, their own holdout MAEs are
compared and the reason says so.

Listing, promoting and rolling back need no Spark.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pulsecast import __version__
from pulsecast.config import Settings
from pulsecast.ml.errors import (
    ModelNotFoundError,
    NoChampionError,
    NoPreviousChampionError,
    PromotionRefusedError,
    RegistryError,
)
from pulsecast.security.audit import record as audit

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from pyspark.sql import SparkSession

    from pulsecast.ml.forecast import Forecaster
    from pulsecast.ml.profile import DetectorProfile

__all__ = [
    "CHAMPION",
    "MODEL_KINDS",
    "Decision",
    "ModelRegistry",
    "ModelVersionInfo",
    "artifact_root",
    "baseline_shortfall",
    "code_version",
    "decide",
    "load_champion",
    "load_detector_profile",
    "model_name",
    "registry_uri",
]

log = logging.getLogger(__name__)

MODEL_KINDS: Final = ("forecaster", "detector")
CHAMPION: Final = "champion"
HISTORY_TAG: Final = "pulsecast.champions"
MODEL_ARTIFACT: Final = "model"


def registry_uri(settings: Settings) -> str:
    """The MLflow tracking and registry store of ``settings``."""
    if settings.ml.registry_uri:
        return settings.ml.registry_uri
    return f"sqlite:///{settings.data_dir / 'mlflow' / 'registry.db'}"


def artifact_root(settings: Settings) -> str:
    """Root URI of the model files (no trailing slash)."""
    root = settings.ml.artifact_uri or (settings.data_dir / "mlflow" / "artifacts").as_uri()
    return root.rstrip("/")


def model_name(stream: str, kind: str) -> str:
    """The registered model of a stream's forecaster or detector."""
    if kind not in MODEL_KINDS:
        msg = f"model kind must be one of {', '.join(MODEL_KINDS)}, got {kind!r}"
        raise RegistryError(msg)
    return f"{stream}-{kind}"


@functools.cache
def code_version() -> dict[str, str]:
    """The version of pulsecast and, when it runs from a git checkout, the commit."""
    here = Path(__file__).resolve().parent
    found: dict[str, str] = {"pulsecast_version": __version__}
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return found
    found["git_commit"] = head
    found["git_dirty"] = "true" if dirty else "false"
    return found


@functools.cache
def _mlflow_client_class() -> type[MlflowClient]:
    """Import MLflow with its usage telemetry off.

    MLflow starts a thread at import that reports usage to its makers over the
    internet unless ``MLFLOW_DISABLE_TELEMETRY`` is set; the variable is set
    for the import only, so nothing else in the process sees it changed.
    """
    saved = os.environ.get("MLFLOW_DISABLE_TELEMETRY")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    try:
        from mlflow import MlflowClient
    finally:
        if saved is None:
            del os.environ["MLFLOW_DISABLE_TELEMETRY"]
        else:
            os.environ["MLFLOW_DISABLE_TELEMETRY"] = saved
    return MlflowClient


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered model version with its run's record.

    Attributes:
        name: The registered model (``<stream>-<kind>``).
        stream: The stream it was trained on.
        kind: ``forecaster`` or ``detector``.
        version: The version number.
        run_id: The MLflow run that trained it.
        created: When it was registered (UTC).
        champion: Whether it is the champion now.
        params: Parameters of its training.
        metrics: Holdout metrics (``holdout_mae`` and more).
        tags: Data range, code version and comparison tags.
    """

    name: str
    stream: str
    kind: str
    version: int
    run_id: str
    created: datetime
    champion: bool = False
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def holdout_mae(self) -> float | None:
        """The metric promotion compares (lower is better)."""
        return self.metrics.get("holdout_mae")

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON output."""
        return {
            "name": self.name,
            "stream": self.stream,
            "kind": self.kind,
            "version": self.version,
            "run_id": self.run_id,
            "created": self.created.isoformat(),
            "champion": self.champion,
            "params": self.params,
            "metrics": self.metrics,
            "tags": self.tags,
        }


@dataclass(frozen=True)
class Decision:
    """Whether a version becomes champion, and why.

    Attributes:
        promote: True to make it the champion.
        reason: One sentence.
        candidate_mae: The challenger's MAE used in the comparison.
        champion_mae: The champion's MAE used in the comparison.
        champion_version: The champion it was compared with.
        same_holdout: Whether both MAEs come from the same holdout rows.
    """

    promote: bool
    reason: str
    candidate_mae: float | None = None
    champion_mae: float | None = None
    champion_version: int | None = None
    same_holdout: bool = False


_BASELINES = {"last_value": "the last value", "seasonal": "the seasonal naive forecast"}
_SCORES = {"mae": "MAE", "smape": "sMAPE"}


def baseline_shortfall(metrics: dict[str, float]) -> str | None:
    """Why a forecaster's holdout scores do not beat both baselines, or None when they do.

    Beating means a strictly lower MAE and sMAPE than the last value and than
    the seasonal naive forecast, on the same holdout rows. Scores without the
    baselines' (a detector's) have nothing to beat.
    """
    for name, label in _BASELINES.items():
        for score, score_label in _SCORES.items():
            mine, theirs = metrics.get(f"holdout_{score}"), metrics.get(f"{name}_{score}")
            if mine is None or theirs is None:
                continue
            if not mine < theirs:
                return f"{score_label} {mine:.4g} vs {theirs:.4g} for {label}"
    return None


def decide(
    candidate: ModelVersionInfo, champion: ModelVersionInfo | None, *, force: bool = False
) -> Decision:
    """Champion/challenger: does ``candidate`` replace ``champion``?

    A forecaster must first beat both baselines on its holdout
    (:func:`baseline_shortfall`): the first version too, so that no model
    worse than repeating the last value ever forecasts live.
    The candidate must have a strictly lower holdout MAE, measured on its own
    holdout rows for both models when training recorded the champion's score
    there (``compared_with_version``), else each on its own holdout. Models
    of different horizons are not compared. ``force`` promotes regardless.
    """
    if champion is not None and candidate.version == champion.version:
        return Decision(False, "it is the champion already", champion_version=champion.version)
    shortfall = baseline_shortfall(candidate.metrics)
    champion_version = champion.version if champion else None
    if shortfall is not None and not force:
        text = f"it does not beat the baselines: {shortfall}"
        return Decision(False, text, candidate.holdout_mae, champion_version=champion_version)
    if champion is None:
        if shortfall is not None:
            return Decision(True, f"forced: it does not beat the baselines: {shortfall}")
        return Decision(True, "there is no champion yet")
    mine: float | None
    theirs: float | None
    if candidate.tags.get("compared_with_version") == str(champion.version) and (
        "vs_champion_mae" in candidate.metrics and "champion_mae" in candidate.metrics
    ):
        mine, theirs = candidate.metrics["vs_champion_mae"], candidate.metrics["champion_mae"]
        same, where = True, "on the same holdout rows"
    else:
        mine, theirs = candidate.holdout_mae, champion.holdout_mae
        same, where = False, "each on its own holdout"

    def verdict(promote: bool, text: str) -> Decision:
        return Decision(promote, text, mine, theirs, champion.version, same)

    horizon = candidate.params.get("horizon_min")
    champion_horizon = champion.params.get("horizon_min")
    if horizon != champion_horizon:
        text = f"it forecasts {horizon} min ahead, the champion {champion_horizon} min"
        return verdict(force, f"forced: {text}" if force else text)
    if mine is None or theirs is None:
        text = "a holdout MAE is missing, they cannot be compared"
        return verdict(force, f"forced: {text}" if force else text)
    comparison = f"MAE {mine:.4g} vs champion version {champion.version}'s {theirs:.4g} {where}"
    if mine < theirs:
        return verdict(True, f"it beats the champion: {comparison}")
    if force:
        return verdict(True, f"forced: {comparison}")
    return verdict(False, f"it does not beat the champion: {comparison}")


class ModelRegistry:
    """pulsecast's models in MLflow (see the module's description).

    Args:
        settings: Where the store and the model files are.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.uri = registry_uri(settings)
        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client = _mlflow_client_class()(tracking_uri=self.uri, registry_uri=self.uri)
        except Exception as exc:
            msg = f"cannot open the model registry at {self.uri}: {exc}"
            raise RegistryError(msg) from exc

    # -- writing ---------------------------------------------------------------------------

    def _experiment_id(self, stream: str) -> str:
        name = f"pulsecast-{stream}"
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = f"{artifact_root(self.settings)}/{stream}"
        return str(self.client.create_experiment(name, artifact_location=location))

    def log_version(
        self,
        *,
        stream: str,
        kind: str,
        folder: Path,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
    ) -> ModelVersionInfo:
        """Record a trained model: a run with its record, and a new registered version.

        Args:
            stream: The stream it was trained on.
            kind: ``forecaster`` or ``detector``.
            folder: The model's files (logged as the run's ``model/`` artefact).
            params: Training parameters.
            metrics: Holdout metrics; ``holdout_mae`` is what promotion compares.
            tags: Data range, comparison tags; the code version is added.

        Returns:
            The new version (not promoted).
        """
        from mlflow.entities import Metric, Param, RunTag

        name = model_name(stream, kind)
        everything = {**tags, **code_version(), "stream": stream, "kind": kind}
        try:
            run = self.client.create_run(
                self._experiment_id(stream),
                run_name=f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}",
                tags=everything,
            )
            run_id = run.info.run_id
            now_ms = int(datetime.now(UTC).timestamp() * 1000)
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now_ms, 0) for k, v in metrics.items()],
                params=[Param(k, str(v)) for k, v in params.items()],
                tags=[RunTag(k, v) for k, v in everything.items()],
            )
            self.client.log_artifacts(run_id, str(folder), MODEL_ARTIFACT)
            self.client.set_terminated(run_id)
            if not self._exists(name):
                self.client.create_registered_model(
                    name, description=f"pulsecast {kind} of the {stream} stream"
                )
            created = self.client.create_model_version(
                name,
                f"runs:/{run_id}/{MODEL_ARTIFACT}",
                run_id=run_id,
                tags={"stream": stream, "kind": kind},
            )
        except Exception as exc:
            if isinstance(exc, RegistryError):
                raise
            msg = f"cannot register {name} in {self.uri}: {exc}"
            raise RegistryError(msg) from exc
        log.info("registered %s version %s (run %s)", name, created.version, run_id)
        return self.version(stream, kind, int(created.version))

    def _exists(self, name: str) -> bool:
        return bool(self.client.search_registered_models(filter_string=f"name = '{name}'"))

    # -- reading ---------------------------------------------------------------------------

    def _info(self, stream: str, kind: str, mv: Any, champion: str | None) -> ModelVersionInfo:
        run = self.client.get_run(mv.run_id)
        return ModelVersionInfo(
            name=mv.name,
            stream=stream,
            kind=kind,
            version=int(mv.version),
            run_id=mv.run_id,
            created=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
            champion=champion == str(mv.version),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags={k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        )

    def _champion_version(self, name: str) -> str | None:
        if not self._exists(name):
            return None
        aliases = self.client.get_registered_model(name).aliases
        value = aliases.get(CHAMPION) if isinstance(aliases, dict) else None
        return None if value is None else str(value)

    def versions(self, stream: str, kind: str | None = None) -> list[ModelVersionInfo]:
        """Every version of the stream's models (of one kind if given), newest first."""
        found: list[ModelVersionInfo] = []
        for k in [kind] if kind else list(MODEL_KINDS):
            name = model_name(stream, k)
            if not self._exists(name):
                continue
            champion = self._champion_version(name)
            for mv in self.client.search_model_versions(f"name = '{name}'"):
                found.append(self._info(stream, k, mv, champion))
        return sorted(found, key=lambda v: (v.kind, -v.version))

    def version(self, stream: str, kind: str, version: int) -> ModelVersionInfo:
        """One version.

        Raises:
            ModelNotFoundError: No such model or version.
        """
        name = model_name(stream, kind)
        if not self._exists(name):
            msg = f"no model {name} in the registry: train one with `pulsecast train`"
            raise ModelNotFoundError(msg, name=name)
        try:
            mv = self.client.get_model_version(name, str(version))
        except Exception as exc:
            msg = f"{name} has no version {version}"
            raise ModelNotFoundError(msg, name=name, version=version) from exc
        return self._info(stream, kind, mv, self._champion_version(name))

    def champion(self, stream: str, kind: str) -> ModelVersionInfo | None:
        """The champion version, or None."""
        current = self._champion_version(model_name(stream, kind))
        return None if current is None else self.version(stream, kind, int(current))

    # -- promotion -------------------------------------------------------------------------

    def _history(self, name: str) -> list[int]:
        tags = self.client.get_registered_model(name).tags or {}
        text = tags.get(HISTORY_TAG, "")
        return [int(v) for v in text.split(",") if v]

    def _crown(self, name: str, version: int, history: list[int]) -> None:
        self.client.set_registered_model_alias(name, CHAMPION, str(version))
        self.client.set_registered_model_tag(name, HISTORY_TAG, ",".join(map(str, history)))

    def promote(self, stream: str, kind: str, version: int, *, force: bool = False) -> Decision:
        """Make ``version`` the champion if it beats the current one (or ``force``).

        Returns:
            The decision (``promote`` False only when it is the champion already).

        Raises:
            ModelNotFoundError: No such version.
            PromotionRefusedError: It does not beat the champion.
        """
        candidate = self.version(stream, kind, version)
        decision = decide(candidate, self.champion(stream, kind), force=force)
        if not decision.promote:
            if decision.champion_version == version:
                return decision
            raise PromotionRefusedError(candidate.name, version, decision.reason)
        history = self._history(candidate.name)
        self._crown(candidate.name, version, [*history, version])
        log.info("promoted %s version %s: %s", candidate.name, version, decision.reason)
        details = {"version": version, "force": force, "reason": decision.reason}
        audit(self.settings, "model.promote", candidate.name, details=details)
        return decision

    def rollback(self, stream: str, kind: str) -> tuple[int, int]:
        """Make the previous champion the champion again.

        Returns:
            The demoted version and the restored one.

        Raises:
            NoChampionError: There is no champion.
            NoPreviousChampionError: The champion is the first there was.
        """
        name = model_name(stream, kind)
        current = self._champion_version(name)
        if current is None:
            raise NoChampionError(name)
        history = self._history(name)
        if history and history[-1] == int(current):
            history.pop()
        if not history:
            raise NoPreviousChampionError(name)
        self._crown(name, history[-1], history)
        log.info("rolled %s back from version %s to %s", name, current, history[-1])
        details = {"from": int(current), "to": history[-1]}
        audit(self.settings, "model.rollback", name, details=details)
        return int(current), history[-1]

    # -- files -----------------------------------------------------------------------------

    def download(self, info: ModelVersionInfo) -> Path:
        """The version's model folder on local disk (cached: versions never change)."""
        folder = self.settings.data_dir / "mlflow" / "cache" / info.name / str(info.version)
        marker = folder / ".complete"
        if marker.exists():
            return folder / MODEL_ARTIFACT
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{info.version}-", dir=folder.parent))
        try:
            self.client.download_artifacts(info.run_id, MODEL_ARTIFACT, str(staging))
            (staging / ".complete").touch()
            if folder.exists():
                shutil.rmtree(folder)
            staging.rename(folder)
        except Exception as exc:
            shutil.rmtree(staging, ignore_errors=True)
            msg = f"cannot fetch the files of {info.name} version {info.version}: {exc}"
            raise RegistryError(msg) from exc
        return folder / MODEL_ARTIFACT


def load_champion(
    settings: Settings, stream: str, *, spark: SparkSession | None = None
) -> tuple[Forecaster, int]:
    """The stream's champion forecaster and its version, for scoring.

    Args:
        settings: The platform's settings.
        stream: The stream.
        spark: The session to load the MLlib pipeline into; default the active one.

    Raises:
        NoChampionError: No forecaster has been promoted.
        RegistryError: No SparkSession, or the files cannot be fetched.
    """
    from pyspark.sql import SparkSession

    from pulsecast.ml.forecast import Forecaster

    session = spark or SparkSession.getActiveSession()
    if session is None:
        msg = "loading a forecaster needs an active SparkSession"
        raise RegistryError(msg)
    registry = ModelRegistry(settings)
    champion = registry.champion(stream, "forecaster")
    if champion is None:
        raise NoChampionError(model_name(stream, "forecaster"))
    return Forecaster.load(session, registry.download(champion)), champion.version


def load_detector_profile(settings: Settings, stream: str) -> DetectorProfile:
    """The stream's champion detector profile (no Spark needed).

    Raises:
        NoChampionError: No detector profile has been promoted.
    """
    from pulsecast.ml.profile import DetectorProfile

    registry = ModelRegistry(settings)
    champion = registry.champion(stream, "detector")
    if champion is None:
        raise NoChampionError(model_name(stream, "detector"))
    return DetectorProfile.read(registry.download(champion), version=champion.version)

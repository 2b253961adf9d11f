"""Errors of the ml stage: training, the model registry and scoring."""

from __future__ import annotations

from pathlib import Path

from pulsecast.errors import PulsecastError

__all__ = [
    "DetectInputError",
    "MlError",
    "ModelNotFoundError",
    "NoChampionError",
    "NoPreviousChampionError",
    "NotEnoughHistoryError",
    "PromotionRefusedError",
    "RegistryError",
]


class MlError(PulsecastError):
    """Root of the ml stage's errors."""


class NotEnoughHistoryError(MlError):
    """The lake holds too little history to train on.

    Attributes:
        stream: The stream.
        table: URI of the table that was read.
    """

    def __init__(self, message: str, *, stream: str, table: str) -> None:
        super().__init__(message)
        self.stream = stream
        self.table = table


class RegistryError(MlError):
    """The model registry (MLflow) could not be opened or written."""


class ModelNotFoundError(RegistryError):
    """No such registered model or model version.

    Attributes:
        name: The registered model's name.
        version: The version asked for, if any.
    """

    def __init__(self, message: str, *, name: str, version: int | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.version = version


class NoChampionError(RegistryError):
    """A registered model has no champion version yet.

    Attributes:
        name: The registered model's name.
    """

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} has no champion yet: train one with `pulsecast train`")
        self.name = name


class NoPreviousChampionError(RegistryError):
    """A rollback was asked for, but no earlier champion exists.

    Attributes:
        name: The registered model's name.
    """

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} has no previous champion to roll back to")
        self.name = name


class PromotionRefusedError(RegistryError):
    """A challenger does not beat the champion on the holdout (``--force`` overrides).

    Attributes:
        name: The registered model's name.
        version: The challenger's version.
        reason: Why it was refused, in one sentence.
    """

    def __init__(self, name: str, version: int, reason: str) -> None:
        super().__init__(f"not promoting {name} version {version}: {reason} (--force overrides)")
        self.name = name
        self.version = version
        self.reason = reason


class DetectInputError(MlError):
    """An input of ``pulsecast detect`` is missing or malformed.

    Attributes:
        path: The offending file or folder, if known.
    """

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path

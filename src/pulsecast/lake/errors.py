"""Errors of the lake's maintenance (``pulsecast lake optimize|vacuum``)."""

from __future__ import annotations

from pulsecast.errors import PulsecastError

__all__ = ["LakeError", "MaintenanceConflictError", "UnsafeRetentionError"]


class LakeError(PulsecastError):
    """A lake table could not be maintained."""


class UnsafeRetentionError(LakeError):
    """A vacuum was asked to keep fewer hours of history than a table allows.

    Attributes:
        table: SQL name of the table whose minimum was not met.
        retain_hours: The retention asked for.
        minimum_hours: The table's ``delta.deletedFileRetentionDuration``, in hours.
    """

    def __init__(self, table: str, retain_hours: float, minimum_hours: float) -> None:
        self.table = table
        self.retain_hours = retain_hours
        self.minimum_hours = minimum_hours
        msg = (
            f"refusing to vacuum {table} keeping {retain_hours:g} h: below its safe minimum of "
            f"{minimum_hours:g} h (delta.deletedFileRetentionDuration); a running query or the "
            "streaming job may still read those files. Use --force to vacuum anyway"
        )
        super().__init__(msg)


class MaintenanceConflictError(LakeError):
    """Another writer changed the files an optimize was rewriting (Delta commit conflict).

    Attributes:
        table: SQL name of the table.
        operation: ``optimize`` or ``vacuum``.
    """

    def __init__(self, table: str, operation: str, detail: str) -> None:
        self.table = table
        self.operation = operation
        msg = (
            f"{operation} of {table} conflicted with a concurrent write ({detail}); rerun it, "
            "or limit it to days the streaming job no longer writes (--until)"
        )
        super().__init__(msg)

"""Errors of the dashboard."""

from __future__ import annotations

from pulsecast.errors import PulsecastError

__all__ = ["DashboardError"]


class DashboardError(PulsecastError):
    """The dashboard cannot be served (its port is taken, its stream is unknown).

    Attributes:
        port: The port it was to listen on.
    """

    def __init__(self, message: str, *, port: int | None = None) -> None:
        super().__init__(message)
        self.port = port

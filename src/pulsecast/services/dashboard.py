"""The live dashboard as a managed background server (``up --with dashboard``, ``demo``).

Runs ``pulsecast dashboard``; see :mod:`pulsecast.services.pyserver`.
"""

from __future__ import annotations

from pulsecast.services.pyserver import PulsecastServer

__all__ = ["DashboardService"]


class DashboardService(PulsecastServer):
    """``pulsecast dashboard`` in the background."""

    name = "dashboard"
    subcommand = "dashboard"

    @property
    def managed(self) -> bool:  # noqa: D102 (see base class)
        return True

    @property
    def detail(self) -> str:  # noqa: D102 (see base class)
        return f"live dashboard of stream {self.settings.dashboard.stream}"

"""The HTTP ingest endpoint as a managed background server (part of `pulsecast up`).

Runs ``pulsecast serve``; see :mod:`pulsecast.services.pyserver`.
"""

from __future__ import annotations

from pulsecast.services.pyserver import PulsecastServer

__all__ = ["IngestService"]


class IngestService(PulsecastServer):
    """``pulsecast serve`` in the background."""

    name = "ingest"
    subcommand = "serve"

    @property
    def managed(self) -> bool:  # noqa: D102 (see base class)
        return self.settings.ingest.enabled

    @property
    def detail(self) -> str:  # noqa: D102 (see base class)
        return "POST /v1/streams/{stream}/events"

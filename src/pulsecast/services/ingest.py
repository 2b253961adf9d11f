"""The HTTP ingest endpoint as a managed background server (part of `pulsecast up`).

Runs ``python -m pulsecast serve`` with the same configuration file, so the
endpoint sees the same Settings as the command that started it.
"""

from __future__ import annotations

import logging
import sys

import httpx

from pulsecast import __version__
from pulsecast.config import Settings
from pulsecast.services.base import (
    PidFile,
    ProcessService,
    ServiceStatus,
    check_port_free,
)

__all__ = ["IngestService"]

log = logging.getLogger(__name__)


class IngestService(ProcessService):
    """``pulsecast serve`` in the background."""

    name = "ingest"
    stop_timeout_s = 20.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.pid_file = PidFile(self.run_dir / "ingest.pid", marker=("pulsecast", "serve"))

    @property
    def managed(self) -> bool:  # noqa: D102 (see base class)
        return self.settings.ingest.enabled

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.settings.ingest.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def command(self) -> list[str]:
        """The command line of the server."""
        cmd = [sys.executable, "-m", "pulsecast"]
        if self.settings.config_file is not None:
            cmd += ["--config", str(self.settings.config_file)]
        return [*cmd, "serve"]

    def start(self) -> ServiceStatus:  # noqa: D102 (see base class)
        if not self.managed:
            return self.status()
        if self.pid_file.read() is not None:
            log.info("ingest is already running")
            return self.status()
        ingest = self.settings.ingest
        check_port_free(self.name, ingest.host, ingest.port, "ingest.port")
        self._spawn(self.command(), self._answers, timeout_s=30)
        return self.status()

    def status(self) -> ServiceStatus:  # noqa: D102 (see base class)
        pid = self.pid_file.read()
        return ServiceStatus(
            name=self.name,
            running=pid is not None,
            managed=self.managed,
            pid=pid,
            address=self.settings.ingest.url,
            version=__version__,
            log_file=str(self.log_file),
            detail="POST /v1/streams/{stream}/events" if self.managed else "disabled",
        )

"""The HTTP ingest endpoint as a managed background server (part of `pulsecast up`).

Runs ``python -m pulsecast serve`` with the same configuration file, so the
endpoint sees the same Settings as the command that started it.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import httpx

from pulsecast import __version__
from pulsecast.config import Settings
from pulsecast.services.base import (
    PidFile,
    Service,
    ServiceStatus,
    check_port_free,
    stop_process,
    wait_until,
)
from pulsecast.services.errors import ServiceStartError

__all__ = ["IngestService"]

log = logging.getLogger(__name__)


class IngestService(Service):
    """``pulsecast serve`` in the background."""

    name = "ingest"

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
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write(proc.pid)

        def died() -> str | None:
            code = proc.poll()
            return None if code is None else f"the process exited with code {code}"

        problem = wait_until(self._answers, timeout_s=30, abort=died)
        if problem is not None:
            stop_process(proc.pid, timeout_s=5)
            self.pid_file.remove()
            raise ServiceStartError(self.name, problem, self.log_file)
        return self.status()

    def stop(self) -> bool:  # noqa: D102 (see base class)
        pid = self.pid_file.read()
        if pid is None:
            return False
        stop_process(pid, timeout_s=20)
        self.pid_file.remove()
        return True

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

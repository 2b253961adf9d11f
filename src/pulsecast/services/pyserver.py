"""pulsecast's own HTTP servers run in the background: the ingest and the dashboard.

Each runs ``python -m pulsecast <command>`` with the same configuration file,
so it sees the same Settings as the command that started it. In secure mode it
serves HTTPS and the health probe verifies its certificate against the local CA.
"""

from __future__ import annotations

import logging
import ssl
import sys

import httpx

from pulsecast import __version__
from pulsecast.config import Settings
from pulsecast.security.errors import CertificateError
from pulsecast.security.tls import HttpServer, http_verify, uvicorn_tls
from pulsecast.services.base import PidFile, ProcessService, ServiceStatus, check_port_free
from pulsecast.services.errors import ServiceStartError

__all__ = ["PulsecastServer"]

log = logging.getLogger(__name__)


class PulsecastServer(ProcessService):
    """A ``pulsecast`` subcommand serving HTTP(S) in the background.

    Subclasses set ``name`` (also the settings section with ``host``, ``port``,
    ``url`` and ``tls``), ``subcommand`` and ``detail``.
    """

    name: HttpServer
    subcommand: str
    stop_timeout_s = 20.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.pid_file = PidFile(
            self.run_dir / f"{self.name}.pid", marker=("pulsecast", self.subcommand)
        )
        self._verify: ssl.SSLContext | bool | None = None

    @property
    def url(self) -> str:
        """Base URL of the server."""
        url: str = getattr(self.settings, self.name).url
        return url

    @property
    def detail(self) -> str:
        """What ``status`` says about it."""
        return ""

    def _answers(self) -> bool:
        try:
            if self._verify is None:
                self._verify = http_verify(self.settings)
            reply = httpx.get(f"{self.url}/healthz", timeout=1, verify=self._verify)
        except (httpx.HTTPError, CertificateError):
            return False
        return reply.status_code == 200

    def command(self) -> list[str]:
        """The command line of the server."""
        cmd = [sys.executable, "-m", "pulsecast"]
        if self.settings.config_file is not None:
            cmd += ["--config", str(self.settings.config_file)]
        return [*cmd, self.subcommand]

    def start(self) -> ServiceStatus:  # noqa: D102 (see base class)
        if not self.managed:
            return self.status()
        if self.pid_file.read() is not None:
            log.info("%s is already running", self.name)
            return self.status()
        section = getattr(self.settings, self.name)
        check_port_free(self.name, section.host, section.port, f"{self.name}.port")
        try:
            uvicorn_tls(self.settings, self.name)  # its certificate, before the server needs it
        except CertificateError as exc:
            raise ServiceStartError(self.name, str(exc), None) from exc
        self._spawn(self.command(), self._answers, timeout_s=30)
        return self.status()

    def status(self) -> ServiceStatus:  # noqa: D102 (see base class)
        pid = self.pid_file.read()
        return ServiceStatus(
            name=self.name,
            running=pid is not None,
            managed=self.managed,
            pid=pid,
            address=self.url,
            version=__version__,
            log_file=str(self.log_file),
            detail=self.detail if self.managed else "disabled",
        )

"""Errors of the local stack's launchers."""

from __future__ import annotations

from pathlib import Path

from pulsecast.errors import PulsecastError

__all__ = [
    "ArtifactsError",
    "JavaNotFoundError",
    "PortInUseError",
    "ServiceError",
    "ServiceStartError",
]


class ServiceError(PulsecastError):
    """A local server could not be started, stopped or inspected."""


class JavaNotFoundError(ServiceError):
    """No usable Java runtime (17 or newer) was found."""


class ArtifactsError(ServiceError):
    """The JVM artifacts from jvm/pom.xml are missing or could not be resolved."""


class PortInUseError(ServiceError):
    """A port a server needs is taken by another program.

    Attributes:
        service: The server that needs the port.
        port: The port number.
        setting: The setting that chooses the port.
    """

    def __init__(self, service: str, port: int, setting: str, holder: str | None) -> None:
        self.service = service
        self.port = port
        self.setting = setting
        by = f" by {holder}" if holder else " by another program"
        env = "PULSECAST_" + setting.replace(".", "__").upper()
        msg = (
            f"cannot start {service}: port {port} ({setting}) is already in use{by}; "
            f"stop that program or choose another port with {env}"
        )
        super().__init__(msg)


class ServiceStartError(ServiceError):
    """A server process started but did not become ready.

    Attributes:
        service: The server's name.
        log_file: Its log, whose last lines are in the message.
    """

    def __init__(self, service: str, reason: str, log_file: Path | None) -> None:
        self.service = service
        self.log_file = log_file
        tail = ""
        if log_file is not None and log_file.exists():
            lines = log_file.read_text(errors="replace").splitlines()[-15:]
            tail = "\n  | " + "\n  | ".join(lines) if lines else ""
        where = f" (log: {log_file})" if log_file else ""
        super().__init__(f"{service} did not start: {reason}{where}{tail}")

"""The local stack: start, stop and inspect the real servers pulsecast runs."""

from __future__ import annotations

from pulsecast.services.base import ServiceStatus as ServiceStatus
from pulsecast.services.errors import JavaNotFoundError as JavaNotFoundError
from pulsecast.services.errors import PortInUseError as PortInUseError
from pulsecast.services.errors import ServiceError as ServiceError
from pulsecast.services.errors import ServiceStartError as ServiceStartError
from pulsecast.services.stack import Stack as Stack

__all__ = [
    "JavaNotFoundError",
    "PortInUseError",
    "ServiceError",
    "ServiceStartError",
    "ServiceStatus",
    "Stack",
]

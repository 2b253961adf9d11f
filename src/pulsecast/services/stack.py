"""The local stack: every server of the platform, started and stopped in order.

``up`` starts Kafka, then PostgreSQL, creates the configured streams' topics,
then starts the HTTP ingest; ``down`` stops them in reverse. Optional servers
join when asked for (``up --with hdfs,spark,prometheus,dashboard``); ``down`` stops them
too, and ``status`` lists them while they run. With ``security.enabled`` ``up`` first
creates the certificates and keys secure mode needs and marks the stack secure
(:mod:`pulsecast.security.mode`); ``down`` removes the mark.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pulsecast.bus.admin import TopicAdmin
from pulsecast.config import Settings
from pulsecast.security import mode
from pulsecast.services.base import Service, ServiceStatus
from pulsecast.services.dashboard import DashboardService
from pulsecast.services.errors import ServiceError
from pulsecast.services.hdfs import HdfsService
from pulsecast.services.ingest import IngestService
from pulsecast.services.kafka import KafkaService
from pulsecast.services.postgres import PostgresService
from pulsecast.services.prometheus import PrometheusService
from pulsecast.services.spark import SparkStandaloneService

__all__ = ["OPTIONAL_SERVICES", "Stack"]

log = logging.getLogger(__name__)

#: Servers started only when asked for with ``--with``.
OPTIONAL_SERVICES: dict[str, type[Service]] = {
    "hdfs": HdfsService,
    "spark": SparkStandaloneService,
    "prometheus": PrometheusService,
    "dashboard": DashboardService,
}

Progress = Callable[[str], None]


class Stack:
    """The platform's servers.

    Args:
        settings: The platform's settings.
        with_: Optional servers to include (names from :data:`OPTIONAL_SERVICES`).
    """

    def __init__(self, settings: Settings, *, with_: list[str] | None = None) -> None:
        self.settings = settings
        unknown = [name for name in with_ or [] if name not in OPTIONAL_SERVICES]
        if unknown:
            known = ", ".join(sorted(OPTIONAL_SERVICES)) or "none yet"
            msg = f"unknown optional service {unknown[0]!r}; available: {known}"
            raise ServiceError(msg)
        self.kafka = KafkaService(settings)
        self.postgres = PostgresService(settings)
        self.ingest = IngestService(settings)
        self.optional = [OPTIONAL_SERVICES[name](settings) for name in with_ or []]

    @property
    def services(self) -> list[Service]:
        """Every server, in start order."""
        return [self.kafka, self.postgres, *self.optional, self.ingest]

    def up(self, progress: Progress | None = None) -> list[ServiceStatus]:
        """Start every server (idempotent) and create the streams' topics.

        Raises:
            ServiceError: A server could not start; the message says why.
        """
        say = progress or (lambda _text: None)
        if self.settings.security.enabled:
            created, _ = mode.initialise(self.settings)
            if created:
                say(f"created certificates and keys for secure mode: {', '.join(created)}")
            mode.remember(self.settings)
        for service in [self.kafka, self.postgres, *self.optional]:
            if service.managed:
                say(f"starting {service.name}...")
                service.start()
        created = TopicAdmin(self.settings).ensure_streams()
        if created:
            say(f"created {len(created)} topics")
        if self.ingest.managed:
            say("starting ingest...")
            self.ingest.start()
        return self.status()

    def down(self, progress: Progress | None = None) -> list[str]:
        """Stop every server this data directory runs (idempotent).

        Returns:
            Names of the servers that were running.
        """
        say = progress or (lambda _text: None)
        stopped = []
        for service in reversed([*self.services, *self._stray_optional()]):
            if service.stop():
                say(f"stopped {service.name}")
                stopped.append(service.name)
        mode.forget(self.settings)
        return stopped

    def _stray_optional(self) -> list[Service]:
        """Optional servers started earlier with --with, to stop them on down too."""
        chosen = {type(s) for s in self.optional}
        return [cls(self.settings) for cls in OPTIONAL_SERVICES.values() if cls not in chosen]

    def status(self) -> list[ServiceStatus]:
        """Every server's status (optional ones not asked for: while running), unchanged."""
        strays = [s.status() for s in self._stray_optional()]
        return [s.status() for s in self.services] + [s for s in strays if s.pid is not None]

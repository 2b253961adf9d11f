"""Topic management: create what Settings declare, idempotently.

In secure mode (``security.enabled``) the admin client authenticates as
``admin``, and ensuring topics also ensures their least-privilege ACLs
(:func:`pulsecast.security.kafka_acl.ensure_acls`): each topic gets the
LITERAL ACLs its suffix calls for, whether it was created now or before.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from pulsecast.bus.clients import admin_config
from pulsecast.bus.errors import BusError, BusUnavailableError, TopicNotFoundError
from pulsecast.bus.topics import TopicSpec, topic_specs
from pulsecast.config import Settings
from pulsecast.security.audit import record as audit
from pulsecast.security.errors import SecurityError
from pulsecast.security.kafka_acl import AclRule, Principal, ensure_acls, remove_acls

__all__ = ["TopicAdmin"]

log = logging.getLogger(__name__)


class TopicAdmin:
    """Creates, lists and deletes topics.

    Args:
        settings: The platform's settings.
        timeout_s: How long each admin request may take.
        principal: Who the client authenticates as in secure mode; only
            ``admin`` may create or delete topics and set ACLs.
    """

    def __init__(
        self, settings: Settings, *, timeout_s: float = 30.0, principal: Principal = "admin"
    ) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._admin = AdminClient({**admin_config(settings, principal=principal), "log_level": 3})

    def list_topics(self) -> set[str]:
        """Names of the topics that exist.

        Raises:
            BusUnavailableError: No broker answered.
        """
        try:
            meta = self._admin.list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            raise BusUnavailableError(self.settings.kafka.bootstrap, str(exc.args[0])) from exc
        return set(meta.topics)

    def ensure(self, specs: list[TopicSpec]) -> list[str]:
        """Create the topics that do not exist yet (and, in secure mode, every topic's ACLs).

        Returns:
            The names of the topics created now.

        Raises:
            BusError: A topic or an ACL could not be created.
        """
        existing = self.list_topics()
        missing = [s for s in specs if s.name not in existing]
        created = self._create(missing) if missing else []
        if self.settings.security.enabled:
            self.ensure_acls([s.name for s in specs])
        return created

    def ensure_acls(self, topics: list[str]) -> list[AclRule]:
        """Create the least-privilege ACLs of ``topics`` the broker lacks (secure mode).

        Returns:
            The ACLs created now.

        Raises:
            BusError: The broker refused (the client is not ``admin``, or no authorizer).
        """
        try:
            return ensure_acls(self.settings, self._admin, topics, timeout_s=self.timeout_s)
        except SecurityError as exc:
            raise BusError(str(exc)) from exc

    def _create(self, missing: list[TopicSpec]) -> list[str]:
        futures = self._admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, config=s.config()) for s in missing],
            request_timeout=self.timeout_s,
        )
        created = []
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                err = exc.args[0]
                if err.name() != "TOPIC_ALREADY_EXISTS":
                    msg = f"cannot create topic {name!r}: {err.str()}"
                    raise BusError(msg) from exc
        if created:
            log.info("created topics %s", ", ".join(sorted(created)))
            audit(self.settings, "topic.create", ",".join(sorted(created)))
        return created

    def ensure_streams(self, streams: list[str] | None = None) -> list[str]:
        """Create the topics of the given (default: all configured) streams."""
        return self.ensure(topic_specs(self.settings, streams))

    def delete(self, names: list[str]) -> None:
        """Delete topics (tests and benchmarks clean up with this), and their ACLs when secure."""
        if not names:
            return
        futures = self._admin.delete_topics(names, request_timeout=self.timeout_s)
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                    msg = f"cannot delete topic {name!r}: {exc.args[0].str()}"
                    raise BusError(msg) from exc
        audit(self.settings, "topic.delete", ",".join(sorted(names)))
        if self.settings.security.enabled:
            try:
                remove_acls(self.settings, self._admin, names, timeout_s=self.timeout_s)
            except SecurityError as exc:
                raise BusError(str(exc)) from exc

    def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has."""
        meta = self._admin.list_topics(topic=topic, timeout=self.timeout_s)
        info = meta.topics.get(topic)
        if info is None or info.error is not None:
            raise TopicNotFoundError(topic)
        return len(info.partitions)

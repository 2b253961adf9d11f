"""Topic changes land in the audit trail (model promotion: tests/unit/ml/test_registry.py)."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

from pulsecast.bus.admin import TopicAdmin
from pulsecast.bus.topics import TopicSpec
from pulsecast.config import Settings
from pulsecast.security.audit import audit_log


def actions(settings: Settings) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r["action"], r["target"], r["details"]) for r in audit_log(settings).records()]


class FakeAdminClient:
    """The two AdminClient calls TopicAdmin makes, answered at once (no broker)."""

    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(topics={"old.events": None})

    @staticmethod
    def _done(names: list[str]) -> dict[str, Future[None]]:
        futures: dict[str, Future[None]] = {}
        for name in names:
            futures[name] = Future()
            futures[name].set_result(None)
        return futures

    def create_topics(self, topics: list[Any], request_timeout: float) -> dict[str, Future[None]]:
        return self._done([t.topic for t in topics])

    def delete_topics(self, names: list[str], request_timeout: float) -> dict[str, Future[None]]:
        return self._done(names)


def test_audit_hooks_topic_create_and_delete(settings: Settings) -> None:
    admin = TopicAdmin.__new__(TopicAdmin)
    admin.settings, admin.timeout_s, admin._admin = settings, 1.0, FakeAdminClient()
    specs = [
        TopicSpec(name=n, partitions=1, retention_ms=1000)
        for n in ("b.events", "a.events", "old.events")
    ]
    assert sorted(admin.ensure(specs)) == ["a.events", "b.events"]
    assert admin.ensure([TopicSpec(name="old.events", partitions=1, retention_ms=1000)]) == []
    admin.delete(["a.events"])
    admin.delete([])
    assert actions(settings) == [
        ("topic.create", "a.events,b.events", {}),
        ("topic.delete", "a.events", {}),
    ]

"""Helpers we ship for users' tests: sample events and throw-away settings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pulsecast.config import Settings

__all__ = ["ManualClock", "settings_for", "telemetry_event"]


class ManualClock:
    """A clock a test sets by hand: call it for ``now`` (seconds), assign ``now`` to move it.

    For the ``clock`` arguments of rate limits, sessions and the audit trail.
    """

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        """The time set, in seconds."""
        return self.now


def telemetry_event(
    entity_id: str = "m-0001",
    *,
    when: datetime | str | None = None,
    event_id: str | None = None,
    **payload: Any,
) -> dict[str, Any]:
    """A valid ``telemetry`` event as a mapping; keyword arguments override payload fields."""
    body: dict[str, Any] = {
        "entity_id": entity_id,
        "temperature_c": 61.5,
        "cpu_util": 42.0,
        "vibration_mm_s": 3.1,
        "power_kw": 27.5,
    }
    body.update(payload)
    event: dict[str, Any] = {
        "event_time": when if when is not None else datetime(2026, 1, 1, tzinfo=UTC),
        "payload": body,
    }
    if event_id is not None:
        event["event_id"] = event_id
    return event


def settings_for(data_dir: Path, **sections: Any) -> Settings:
    """Fresh settings whose state lives in ``data_dir``; ``sections`` (dicts) override.

    No configuration file is read; ``PULSECAST_*`` variables still apply.
    """
    return Settings(paths={"data_dir": data_dir}, **sections)

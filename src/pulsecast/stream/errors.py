"""Errors of the streaming job."""

from __future__ import annotations

from pulsecast.errors import PulsecastError

__all__ = ["StreamJobError"]


class StreamJobError(PulsecastError):
    """A streaming query failed (structural: storage, connectivity, schema; never bad data)."""

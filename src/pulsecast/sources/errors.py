"""Errors of the sources."""

from __future__ import annotations

from pulsecast.errors import PulsecastError

__all__ = ["SourceError"]


class SourceError(PulsecastError):
    """A source cannot read its input (a missing file, a file without a time column)."""

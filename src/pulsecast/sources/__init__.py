"""Sources: the ways events get in (simulator, file replay, HTTP ingest)."""

from __future__ import annotations

from pulsecast.sources.errors import SourceError as SourceError

__all__ = ["SourceError"]

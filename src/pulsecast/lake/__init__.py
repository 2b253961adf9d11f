"""The data lake: where each stream's bronze, silver and gold Delta tables live."""

from __future__ import annotations

from pulsecast.lake.tables import LakeTables as LakeTables

__all__ = ["LakeTables"]

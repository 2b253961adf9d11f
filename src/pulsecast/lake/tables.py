"""Lake layout: one Delta table per stream and zone, under one root URI.

The root is ``lake.uri`` (``file://`` by default, ``hdfs://`` or ``s3a://`` by
configuration); tables are ``<root>/bronze/<stream>``, ``<root>/silver/<stream>``
and ``<root>/gold/<stream>_<window>``. SQL names follow the same pattern:
``bronze_<stream>``, ``silver_<stream>``, ``gold_<stream>_<window>``.

- bronze: every record as received, partitioned by ``ingest_date``;
- silver: validated, typed, one row per event id, partitioned by ``event_date``
  and ``event_hour``;
- gold: windowed aggregates per key, window and metric, partitioned by
  ``window_date``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pulsecast.config import Settings

__all__ = ["BRONZE_PARTITIONS", "GOLD_PARTITIONS", "SILVER_PARTITIONS", "LakeTables"]

BRONZE_PARTITIONS = ("ingest_date",)
SILVER_PARTITIONS = ("event_date", "event_hour")
GOLD_PARTITIONS = ("window_date",)


@dataclass(frozen=True)
class LakeTables:
    """The URIs and SQL names of every lake table."""

    root: str

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeTables:
        """The lake of ``settings``."""
        return cls(settings.lake_uri)

    def bronze(self, stream: str) -> str:
        """URI of a stream's bronze table."""
        return f"{self.root}/bronze/{stream}"

    def silver(self, stream: str) -> str:
        """URI of a stream's silver table."""
        return f"{self.root}/silver/{stream}"

    def gold(self, stream: str, window: str) -> str:
        """URI of a stream's gold table for one window (``1m``)."""
        return f"{self.root}/gold/{stream}_{window}"

    def names(self, stream: str, windows: list[str]) -> dict[str, str]:
        """SQL name → URI of every table of ``stream``."""
        tables = {f"bronze_{stream}": self.bronze(stream), f"silver_{stream}": self.silver(stream)}
        for window in windows:
            tables[f"gold_{stream}_{window}"] = self.gold(stream, window)
        return tables

"""Lake layout: one Delta table per stream and zone, under one root URI.

The root is ``lake.uri`` (``file://`` by default, ``hdfs://`` or ``s3a://`` by
configuration); tables are ``<root>/bronze/<stream>``, ``<root>/silver/<stream>``
and ``<root>/gold/<stream>_<window>``. SQL names follow the same pattern:
``bronze_<stream>``, ``silver_<stream>``, ``gold_<stream>_<window>``.

- bronze: every record as received, partitioned by ``ingest_date``;
- silver: validated, typed, one row per event id, partitioned by ``event_date``
  and ``event_hour``;
- gold: windowed aggregates per key, window and metric, partitioned by
  ``window_date`` and ``window_hour`` (the job merges recomputed windows into
  the current hour's files, so a merge rewrites an hour of gold, not a day);
- panes: the job's state, ``<root>/state/<stream>_panes``: mergeable partial
  aggregates (count, mean, m2, min, max, quantile sketch) per key, metric and
  pane, appended by every micro-batch and merged into gold's windows;
  partitioned by ``pane_date``;
- batches: ``<root>/state/<stream>_batches``, what each micro-batch did
  (records received, accepted and rejected per reason, lags), written by the
  job for the dashboard's live panels (:mod:`pulsecast.stream.batch_stats`);
  partitioned by ``batch_date``.

``pulsecast lake optimize`` clusters silver by :data:`SILVER_ZORDER`; the
choices are explained in docs/lake.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from pulsecast.config import Settings

__all__ = [
    "BRONZE_PARTITIONS",
    "GOLD_PARTITIONS",
    "PANE_PARTITIONS",
    "SILVER_PARTITIONS",
    "SILVER_ZORDER",
    "LakeTables",
]

BRONZE_PARTITIONS = ("ingest_date",)
SILVER_PARTITIONS = ("event_date", "event_hour")
GOLD_PARTITIONS = ("window_date", "window_hour")
PANE_PARTITIONS = ("pane_date",)
# Silver's files are clustered (Z-ordered) by key within each partition, so the
# min/max statistics of ``key`` let a query for one entity skip most files.
SILVER_ZORDER = ("key",)


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

    def scores(self, stream: str) -> str:
        """URI of a stream's live anomaly scores (one row per entity, metric and window)."""
        return f"{self.root}/gold/{stream}_scores"

    def forecast_errors(self, stream: str) -> str:
        """URI of a stream's resolved live forecasts (one row per forecast whose horizon passed)."""
        return f"{self.root}/gold/{stream}_forecast_errors"

    def panes(self, stream: str) -> str:
        """URI of a stream's pane state (partial aggregates gold is made of)."""
        return f"{self.root}/state/{stream}_panes"

    def batches(self, stream: str) -> str:
        """URI of what each micro-batch of a stream did (:mod:`pulsecast.stream.batch_stats`)."""
        return f"{self.root}/state/{stream}_batches"

    def names(self, stream: str, windows: list[str]) -> dict[str, str]:
        """SQL name → URI of every table of ``stream``."""
        tables = {f"bronze_{stream}": self.bronze(stream), f"silver_{stream}": self.silver(stream)}
        for window in windows:
            tables[f"gold_{stream}_{window}"] = self.gold(stream, window)
        tables[f"gold_{stream}_scores"] = self.scores(stream)
        tables[f"gold_{stream}_forecast_errors"] = self.forecast_errors(stream)
        tables[f"panes_{stream}"] = self.panes(stream)
        tables[f"batches_{stream}"] = self.batches(stream)
        return tables

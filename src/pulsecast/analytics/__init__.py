"""Analytics: SQL over the lake (DuckDB embedded, Spark SQL at scale)."""

from __future__ import annotations

from pulsecast.analytics.sql import QueryResult as QueryResult
from pulsecast.analytics.sql import run_sql as run_sql

__all__ = ["QueryResult", "run_sql"]

"""Analytics: SQL over the lake (DuckDB embedded, Spark SQL at scale), named analyses, reports.

Programs (the dashboard) run a named analysis with
:func:`~pulsecast.analytics.named.run_analysis` and get a
:class:`~pulsecast.analytics.sql.QueryResult` (an Arrow table); a live program
keeps a :class:`~pulsecast.analytics.sql.DuckDBEngine` open between queries.
"""

from __future__ import annotations

from pulsecast.analytics.errors import AnalysisNotFoundError as AnalysisNotFoundError
from pulsecast.analytics.errors import MissingTableError as MissingTableError
from pulsecast.analytics.errors import ParamError as ParamError
from pulsecast.analytics.errors import QueryError as QueryError
from pulsecast.analytics.named import Analysis as Analysis
from pulsecast.analytics.named import analyses as analyses
from pulsecast.analytics.named import run_analysis as run_analysis
from pulsecast.analytics.sql import DuckDBEngine as DuckDBEngine
from pulsecast.analytics.sql import QueryResult as QueryResult
from pulsecast.analytics.sql import SparkEngine as SparkEngine
from pulsecast.analytics.sql import open_engine as open_engine
from pulsecast.analytics.sql import run_sql as run_sql

__all__ = [
    "Analysis",
    "AnalysisNotFoundError",
    "DuckDBEngine",
    "MissingTableError",
    "ParamError",
    "QueryError",
    "QueryResult",
    "SparkEngine",
    "analyses",
    "open_engine",
    "run_analysis",
    "run_sql",
]

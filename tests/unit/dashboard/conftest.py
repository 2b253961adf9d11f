"""The analytics tests' fixture lake, for the dashboard's endpoints."""

from __future__ import annotations

from tests.unit.analytics.conftest import empty_lake, lake, lake_root

__all__ = ["empty_lake", "lake", "lake_root"]

"""The warehouse: PostgreSQL (or Redshift) schema, migrations, loaders, roles."""

from __future__ import annotations

from pulsecast.warehouse.schema import MIGRATIONS as MIGRATIONS
from pulsecast.warehouse.schema import Warehouse as Warehouse

__all__ = ["MIGRATIONS", "Warehouse"]

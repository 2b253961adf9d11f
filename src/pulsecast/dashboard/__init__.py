"""The live web dashboard: one page of Plotly charts over the lake, updated in place.

``pulsecast dashboard`` serves it (:func:`~pulsecast.dashboard.app.serve`). The
page polls JSON endpoints built by :class:`~pulsecast.dashboard.panels.DashboardData`,
which reads the lake only through the named analyses of :mod:`pulsecast.analytics`.
Nothing else in the package imports this one. See docs/dashboard.md.
"""

from __future__ import annotations

from pulsecast.dashboard.app import create_app as create_app
from pulsecast.dashboard.app import serve as serve
from pulsecast.dashboard.panels import RANGES as RANGES
from pulsecast.dashboard.panels import DashboardData as DashboardData

__all__ = ["RANGES", "DashboardData", "create_app", "serve"]

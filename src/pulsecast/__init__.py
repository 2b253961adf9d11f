"""pulsecast: real-time event processing and predictive analytics.

The public API is small on purpose; everything else is imported from its stage
(``pulsecast.bus.producer``, ``pulsecast.sources.simulator``, ...).
"""

from __future__ import annotations

from pulsecast.config import Settings as Settings
from pulsecast.config import load_settings as load_settings
from pulsecast.errors import PulsecastError as PulsecastError

__version__ = "0.1.0"

__all__ = ["PulsecastError", "Settings", "__version__", "load_settings"]

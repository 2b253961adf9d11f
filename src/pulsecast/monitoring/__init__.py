"""Monitoring: Prometheus metrics, the streaming job's listener, probes and alerts received.

Cross-cutting: every stage may import it. :mod:`~pulsecast.monitoring.metrics`
names every metric; :mod:`~pulsecast.monitoring.stream_metrics` feeds the
streaming ones from Spark (it imports pyspark, so it is not imported here);
:mod:`~pulsecast.monitoring.monitor` is the process that receives
Alertmanager's notifications and probes the local servers.
"""

from __future__ import annotations

from pulsecast.monitoring.webhook import RecordedAlert as RecordedAlert
from pulsecast.monitoring.webhook import read_alerts as read_alerts

__all__ = ["RecordedAlert", "read_alerts"]

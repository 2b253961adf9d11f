"""Machine learning on the lake: features, training, the model registry, online detection.

Training (:mod:`pulsecast.ml.train`) reads the gold tables with Spark MLlib;
the registry (:mod:`pulsecast.ml.registry`) keeps versioned models in MLflow.
Importing this package needs neither a JVM nor MLflow; its modules import what
they need.
"""

from __future__ import annotations

__all__: list[str] = []

"""Stream processing with Spark Structured Streaming: session, transforms, the job.

Importing this package needs pyspark; the rest of pulsecast imports without a JVM.
"""

from __future__ import annotations

__all__: list[str] = []

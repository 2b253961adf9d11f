"""One local SparkSession (no servers) for the transform tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pulsecast.config import Settings, StreamSpec


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    from pulsecast.stream.session import spark_session
    from pulsecast.testing import settings_for

    settings = settings_for(
        Path(tmp_path_factory.mktemp("spark")),
        spark={
            "master": "local[2]",
            "shuffle_partitions": 2,
            "conf": {"spark.ui.showConsoleProgress": "false"},
        },
    )
    session = spark_session(settings, app_name="pulsecast-unit")
    yield session


@pytest.fixture
def telemetry(settings: Settings) -> StreamSpec:
    """The telemetry stream's schema."""
    return settings.streams["telemetry"]

"""The named analyses run, as the same text, on Spark SQL (real Spark, real Delta) and DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pulsecast.analytics.errors import ParamError
from pulsecast.analytics.named import analyses, run_analysis
from pulsecast.analytics.sql import SparkEngine
from pulsecast.config import Settings
from tests.integration.conftest import small_spark
from tests.unit.analytics.conftest import SINCE, write_lake

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, float):
        return round(value, 9)
    return value


def test_named_analyses_give_the_same_rows_on_spark_and_duckdb(
    spark: Any, stack_settings: Settings, tmp_path: Path
) -> None:
    write_lake(tmp_path / "lake")
    settings = small_spark(stack_settings).model_copy(
        update={
            "lake": stack_settings.lake.model_copy(update={"uri": (tmp_path / "lake").as_uri()})
        }
    )
    engine = SparkEngine(settings)
    compared = 0
    for name in analyses():
        params = {"since": SINCE}
        duck = run_analysis(settings, name, params, now=NOW)
        on_spark = run_analysis(settings, name, params, engine=engine, now=NOW)
        assert on_spark.columns == duck.columns, name
        assert duck.rows, f"{name}: the fixture lake gives no rows"
        assert [tuple(map(_plain, r)) for r in on_spark.rows] == [
            tuple(map(_plain, r)) for r in duck.rows
        ], name
        compared += 1
    assert compared == len(analyses())
    with pytest.raises(ParamError, match="has no param 'nope'"):
        run_analysis(settings, "heatmap", {"nope": "1"}, engine=engine)

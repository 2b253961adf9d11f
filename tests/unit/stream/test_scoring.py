"""The scoring sink's forecast errors table: consistent with forecast_vs_actual, restartable."""

from __future__ import annotations

import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from pulsecast.analytics import run_analysis
from pulsecast.analytics.sql import run_sql
from pulsecast.config import Settings
from pulsecast.lake.small_tables import append_once
from pulsecast.lake.tables import LakeTables
from pulsecast.ml.live_error import ERRORS_SCHEMA, DriftMonitor, ForecastCheck
from pulsecast.stream.forecasting import FORECAST_SCHEMA
from pulsecast.stream.scoring import (
    ScoreWriter,
    ensure_forecast_errors_table,
    ensure_scores_table,
    scores_schema,
)
from pulsecast.testing import settings_for

START = datetime(2026, 5, 4, 23, 40, tzinfo=UTC)  # the minutes cross midnight
MINUTES = 40


def synthetic_batches(seed: int = 7) -> list[pa.Table]:
    """Scoring batches of 1 to 3 minutes: 3 entities, 2 forecast metrics and ``events``.

    Windows go missing (an entity goes quiet), values are sometimes 0, model 1
    forecasts 2 minutes ahead and model 2 (from minute 20) 3 minutes; the last
    minute holds only ``events`` windows (it still closes horizons).
    """
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for minute in range(MINUTES):
        start = START + timedelta(minutes=minute)
        for key in ("a", "b", "c"):
            for metric in ("t", "u", "events"):
                if rng.random() < 0.15 or (minute == MINUTES - 1 and metric != "events"):
                    continue
                value = rng.choice([0.0, round(rng.uniform(-5, 50), 3)])
                forecast = metric != "events" and rng.random() < 0.7
                version = 1 if minute < 20 else 2
                rows.append(
                    {
                        "key": key,
                        "metric": metric,
                        "window_start": start,
                        "window_end": start + timedelta(minutes=1),
                        "value": value,
                        "count": rng.randint(1, 5),
                        "score": 0.1,
                        "flagged": False,
                        "window_date": start.date(),
                        "detector": "novelty-1",
                        "forecast": value + rng.uniform(-3, 3) if forecast else None,
                        "horizon_min": version + 1 if forecast else None,
                        "model_version": version if forecast else None,
                    }
                )
    table = pa.Table.from_pylist(rows, schema=scores_schema())
    batches, minute = [], 0
    while minute < MINUTES:
        size = rng.randint(1, 3)
        low, high = START + timedelta(minutes=minute), START + timedelta(minutes=minute + size)
        start = table["window_start"]
        batches.append(table.filter(pc.and_(pc.greater_equal(start, low), pc.less(start, high))))
        minute += size
    return batches


class Batch:
    """A scoring micro-batch as foreachBatch hands it over (only what ScoreWriter uses)."""

    sparkSession = None

    def __init__(self, scores: pa.Table) -> None:
        self.scores = scores

    def toArrow(self) -> pa.Table:
        columns = ["key", "metric", "window_start", "window_end", "value", "count", "score"]
        return self.scores.select([*columns, "flagged"])


class Forecaster:
    """The champion's forecasts: those of the synthetic scores."""

    champion = SimpleNamespace(
        version=2,
        holdout_mae={"t": 1.0},
        model=SimpleNamespace(spec=SimpleNamespace(metrics=("t", "u"))),
    )

    def forecast(self, spark: object, rows: pa.Table) -> pa.Table:
        return Forecaster.made.filter(pc.is_in(Forecaster.made["window_s"], rows["window_s"]))

    made: pa.Table = FORECAST_SCHEMA.empty_table()


def writer_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, secure: bool = False) -> Any:
    settings = settings_for(
        tmp_path / "state",
        lake={"uri": (tmp_path / "lake").as_uri()},
        ml={"live_forecasts": True},
        security={"encrypt_lake": secure},
    )
    monkeypatch.setattr(ScoreWriter, "_publish", lambda self, records: None)  # no Kafka here
    every = pa.concat_tables(synthetic_batches())
    with_forecast = every.filter(pc.is_valid(every["forecast"]))
    seconds = pc.divide(pc.cast(with_forecast["window_start"], pa.int64()), 1_000_000)
    Forecaster.made = (
        with_forecast.append_column("window_s", seconds)
        .select(FORECAST_SCHEMA.names)
        .cast(FORECAST_SCHEMA)
    )

    def make(compact_every: int = 50) -> ScoreWriter:
        return ScoreWriter(
            settings,
            "telemetry",
            None,
            compact_every=compact_every,
            forecaster=Forecaster(),  # type: ignore[arg-type]
            check=ForecastCheck(step_s=60),
            drift=DriftMonitor(ratio=2.0, window_s=600, min_errors=5),
        )

    ensure_scores_table(make().uri)
    ensure_forecast_errors_table(make().errors_uri)  # as the job does before it starts
    return make


def process(writer: ScoreWriter, batch: pa.Table, batch_id: int) -> None:
    writer(Batch(batch), batch_id)  # type: ignore[arg-type]


def table_rows(settings: Settings) -> list[dict[str, Any]]:
    sql = "SELECT * EXCLUDE (window_date) FROM gold_telemetry_forecast_errors"
    found = run_sql(settings, sql).table
    return sorted(found.to_pylist(), key=lambda r: (r["key"], r["metric"], r["window_start"]))


def analysis_rows(settings: Settings) -> list[dict[str, Any]]:
    return run_analysis(settings, "forecast_vs_actual", {"since": "min"}).table.to_pylist()


def assert_same(found: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(found) == len(expected)
    for f, e in zip(found, expected, strict=True):
        assert f.keys() == e.keys()
        for name, value in e.items():
            assert f[name] == (pytest.approx(value) if isinstance(value, float) else value), name


def test_score_writer_errors_equal_forecast_vs_actual_on_the_same_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make = writer_factory(tmp_path, monkeypatch)
    writer = make()
    for batch_id, batch in enumerate(synthetic_batches()):
        process(writer, batch, batch_id)
    expected = analysis_rows(writer.settings)
    assert len(expected) > 100
    assert any(r["pct_error"] is None for r in expected)  # an actual of 0
    assert {r["horizon_min"] for r in expected} == {2, 3}
    assert_same(table_rows(writer.settings), expected)
    read = DeltaTable(writer.errors_uri).to_pyarrow_dataset().schema
    assert read.remove_metadata() == ERRORS_SCHEMA


def fail(*args: object) -> None:
    raise OSError("the lake does not answer")


@pytest.mark.parametrize(
    "crash", ["before_errors", "before_scores", "after_both", "errors_failed", "scores_failed"]
)
def test_score_writer_after_a_restart_loses_no_resolution_and_writes_none_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    batches = synthetic_batches()
    make = writer_factory(tmp_path, monkeypatch)
    first = make()
    k = len(batches) // 2
    for batch_id in range(k):
        process(first, batches[batch_id], batch_id)
    if crash == "after_both":
        process(first, batches[k], k)
    elif crash in ("before_scores", "scores_failed", "errors_failed"):
        # The batch fails after the check took its rows: in the scores' append or the errors'.
        name = "write_errors" if crash == "errors_failed" else "_lake"
        monkeypatch.setattr(first, name, fail)
        with pytest.raises(OSError, match="the lake does not answer"):
            process(first, batches[k], k)
        monkeypatch.undo()
        monkeypatch.setattr(ScoreWriter, "_publish", lambda self, records: None)
    if crash in ("errors_failed", "scores_failed"):
        second = first  # Spark runs the failed batch again in the same job
    else:
        second = make()  # a new job: the check is taken back from the scores table
    for batch_id in range(k, len(batches)):
        process(second, batches[batch_id], batch_id)
    assert_same(table_rows(second.settings), analysis_rows(second.settings))


def test_score_writer_compacts_the_errors_table_every_n_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make = writer_factory(tmp_path, monkeypatch)
    writer = make(compact_every=4)
    batches = synthetic_batches()
    for batch_id, batch in enumerate(batches):
        process(writer, batch, batch_id)
    table = DeltaTable(writer.errors_uri)
    appends = sum(1 for c in table.history() if c["operation"] == "WRITE") - 1  # not the creation
    assert appends > 8
    assert len(table.file_uris()) < appends  # two days: at most a file each, plus 3 not compacted
    assert len(table.file_uris()) <= 2 + 3
    assert_same(table_rows(writer.settings), analysis_rows(writer.settings))
    # The application transactions survive the compactions: a replayed batch is not appended.
    rows = DeltaTable(writer.errors_uri).to_pyarrow_dataset().to_table()
    assert not append_once(
        writer.errors_uri, rows, "pulsecast-forecast-errors-telemetry", len(batches) - 1
    )


def test_score_writer_encrypts_scores_and_errors_of_an_encrypted_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appends, compactions, the restart's seed and the analyses, all over encrypted files."""
    make = writer_factory(tmp_path, monkeypatch, secure=True)
    writer = make(compact_every=4)
    assert writer.crypto is not None
    batches = synthetic_batches()
    half = len(batches) // 2
    for batch_id in range(half):
        process(writer, batches[batch_id], batch_id)
    restarted = make(compact_every=4)  # seeds its check from the (encrypted) scores table
    for batch_id in range(half, len(batches)):
        process(restarted, batches[batch_id], batch_id)
    errors = DeltaTable(writer.errors_uri)
    appends = sum(1 for c in errors.history() if c["operation"] == "WRITE") - 1
    assert len(errors.file_uris()) <= 2 + 3 < appends  # compacted, as in plaintext
    for uri in (writer.uri, writer.errors_uri):
        files = [p for p in Path(uri.removeprefix("file://")).rglob("*.parquet")]
        assert files
        assert all(p.read_bytes()[-4:] == b"PARE" for p in files)  # encrypted footers
    assert_same(table_rows(writer.settings), analysis_rows(writer.settings))


def test_ensure_forecast_errors_table_creates_it_empty_once(tmp_path: Path) -> None:
    tables = LakeTables((tmp_path / "lake").as_uri())
    ensure_forecast_errors_table(tables.forecast_errors("telemetry"))
    errors = DeltaTable(tables.forecast_errors("telemetry"))
    assert errors.metadata().partition_columns == ["window_date"]
    assert errors.to_pyarrow_dataset().schema.remove_metadata() == ERRORS_SCHEMA
    assert errors.to_pyarrow_dataset().count_rows() == 0
    # An existing table is left alone.
    version = errors.version()
    ensure_forecast_errors_table(tables.forecast_errors("telemetry"))
    assert DeltaTable(tables.forecast_errors("telemetry")).version() == version


def test_a_failing_compaction_is_logged_and_the_batch_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    make = writer_factory(tmp_path, monkeypatch)
    writer = make()
    shutil.rmtree(tmp_path / "lake" / "gold" / "telemetry_forecast_errors")
    assert not writer.errors.compact(START.date())
    assert "telemetry_forecast_errors failed, left to the next compaction" in caplog.text

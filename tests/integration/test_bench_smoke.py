"""The ingest benchmark runs end to end (a functional check on small counts, not a timing)."""

from __future__ import annotations

from pulsecast.bench.ingest import run_ingest_benchmark
from pulsecast.config import Settings
from pulsecast.services.stack import Stack


def test_bench_ingest_reports_every_figure(stack: Stack, stack_settings: Settings) -> None:
    result = run_ingest_benchmark(
        stack_settings, events=20_000, http_events=5_000, reference_events=50_000
    )
    assert result["reference_events"] == 50_000
    for key in ("producer_eps", "http_eps", "reference_eps", "producer_ratio"):
        assert result[key] > 0
    assert result["producer_ratio"] == round(result["producer_eps"] / result["reference_eps"], 3)
    assert 200 < result["record_bytes"] < 400

"""`pulsecast status`'s rates and lag, from sample /metrics pages."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pulsecast.cli import app
from pulsecast.monitoring.status import (
    compute_rates,
    format_rates,
    format_services,
    measure_rates,
    metrics_urls,
    parse_metrics,
)
from pulsecast.services.base import ServiceStatus
from pulsecast.testing import settings_for

INGEST_1 = """\
# HELP pulsecast_ingest_events_total Events received by the HTTP ingest.
# TYPE pulsecast_ingest_events_total counter
pulsecast_ingest_events_total{stream="telemetry",status="accepted"} 1000.0
pulsecast_ingest_events_total{stream="telemetry",status="rejected"} 4.0
pulsecast_ingest_events_total{stream="series",status="accepted"} 10.0
"""
INGEST_2 = INGEST_1.replace("} 1000.0", "} 3500.0").replace("} 4.0", "} 9.0")

JOB = """\
# HELP pulsecast_stream_processed_rows_per_second Rate.
# TYPE pulsecast_stream_processed_rows_per_second gauge
pulsecast_stream_processed_rows_per_second{query="pulsecast-telemetry"} 8532.25
pulsecast_stream_processed_rows_per_second{query="pulsecast-telemetry-scores"} 3.0
# HELP pulsecast_stream_batch_duration_seconds Batches.
# TYPE pulsecast_stream_batch_duration_seconds histogram
pulsecast_stream_batch_duration_seconds_bucket{query="pulsecast-telemetry",le="+Inf"} 10.0
pulsecast_stream_batch_duration_seconds_count{query="pulsecast-telemetry"} 10.0
pulsecast_stream_batch_duration_seconds_sum{query="pulsecast-telemetry"} 5.0
# HELP pulsecast_stream_source_lag_records Unread.
# TYPE pulsecast_stream_source_lag_records gauge
pulsecast_stream_source_lag_records{query="pulsecast-telemetry",partition="0"} 7.0
# HELP pulsecast_stream_dead_letters_total Dead letters.
# TYPE pulsecast_stream_dead_letters_total counter
pulsecast_stream_dead_letters_total{stream="telemetry",reason="late"} 2.0
# HELP pulsecast_model_version Served version.
# TYPE pulsecast_model_version gauge
pulsecast_model_version{stream="telemetry",model="forecaster"} 3.0
pulsecast_model_version{stream="telemetry",model="detector"} 1.0
"""

MONITOR_1 = """\
# HELP pulsecast_kafka_consumer_lag_records Lag.
# TYPE pulsecast_kafka_consumer_lag_records gauge
pulsecast_kafka_consumer_lag_records{consumer="pulsecast-telemetry",partition="0"} 1200.0
pulsecast_kafka_consumer_lag_records{consumer="pulsecast-telemetry",partition="1"} 34.0
# HELP pulsecast_kafka_log_end_offset_total End offsets.
# TYPE pulsecast_kafka_log_end_offset_total counter
pulsecast_kafka_log_end_offset_total{topic="telemetry.dlq",partition="0"} 40.0
pulsecast_kafka_log_end_offset_total{topic="telemetry.events",partition="0"} 90000.0
"""
MONITOR_2 = MONITOR_1.replace('dlq",partition="0"} 40.0', 'dlq",partition="0"} 46.0')


def scrapes(**pages: str | None) -> dict[str, dict[str, list[tuple[dict[str, str], float]]] | None]:
    return {name: None if text is None else parse_metrics(text) for name, text in pages.items()}


def test_status_parse_metrics_by_sample_name() -> None:
    samples = parse_metrics(INGEST_1)
    assert samples["pulsecast_ingest_events_total"][0] == (
        {"stream": "telemetry", "status": "accepted"},
        1000.0,
    )
    with pytest.raises(ValueError, match="invalid metric name"):
        parse_metrics("<html>not metrics</html>\n")


def test_status_rates_from_every_component() -> None:
    report = compute_rates(
        ["telemetry", "series"],
        scrapes(ingest=INGEST_1, stream=JOB, monitor=MONITOR_1),
        scrapes(ingest=INGEST_2, stream=JOB, monitor=MONITOR_2),
        interval_s=2.0,
    )
    assert report.running == {"ingest": True, "stream": True, "monitor": True}
    telemetry, series = report.streams
    assert telemetry.events_in_per_s == 1250.0
    assert telemetry.rows_per_s == 8532.25
    assert telemetry.batch_s == 0.5  # no batch between the scrapes: the mean of all
    assert telemetry.lag_records == 1234  # the monitor's, summed over partitions
    assert telemetry.dlq_per_s == 3.0  # written to telemetry.dlq, per the monitor
    assert telemetry.models == {"forecaster": 3, "detector": 1}
    assert (series.events_in_per_s, series.rows_per_s, series.lag_records) == (0.0, None, None)
    assert series.models == {}


def test_status_without_the_monitor_uses_the_jobs_lag_and_dead_letters() -> None:
    job_2 = (
        JOB.replace('reason="late"} 2.0', 'reason="late"} 6.0')
        .replace('le="+Inf"} 10.0', 'le="+Inf"} 12.0')
        .replace(
            '_count{query="pulsecast-telemetry"} 10.0', '_count{query="pulsecast-telemetry"} 12.0'
        )
        .replace('_sum{query="pulsecast-telemetry"} 5.0', '_sum{query="pulsecast-telemetry"} 5.9')
    )
    report = compute_rates(
        ["telemetry"],
        scrapes(ingest=INGEST_1, stream=JOB, monitor=None),
        scrapes(ingest=INGEST_2, stream=job_2, monitor=None),
        interval_s=1.0,
    )
    (telemetry,) = report.streams
    assert telemetry.lag_records == 7
    assert telemetry.batch_s == pytest.approx(0.45)  # the two batches between the scrapes
    assert telemetry.dlq_per_s == 4.0 + 5.0  # the job's late ones and the ingest's rejects
    assert report.running["monitor"] is False


def test_status_nothing_running_and_a_counter_reset() -> None:
    nothing = compute_rates(
        ["telemetry"], scrapes(), scrapes(ingest=None, stream=None, monitor=None), interval_s=0.0
    )
    assert nothing.running == {"ingest": False, "stream": False, "monitor": False}
    assert nothing.streams[0].events_in_per_s is None
    assert nothing.streams[0].lag_records is None
    restarted = compute_rates(  # the ingest restarted between the scrapes: counts from zero
        ["telemetry"],
        scrapes(ingest=INGEST_2),
        scrapes(ingest=INGEST_1),
        interval_s=1.0,
    )
    assert restarted.streams[0].events_in_per_s == 1000.0


def test_status_format_is_aligned_one_line_per_stream() -> None:
    report = compute_rates(
        ["telemetry", "series"],
        scrapes(ingest=INGEST_1, stream=None, monitor=MONITOR_1),
        scrapes(ingest=INGEST_2, stream=None, monitor=MONITOR_2),
        interval_s=2.0,
        urls={"ingest": "i", "stream": "s", "monitor": "m"},
    )
    lines = format_rates(report)
    assert lines == [
        "rates and lag (ingest running, stream job not running, monitor running)",
        "stream     events/s in  rows/s  batch  kafka lag  dlq/s  model",
        "telemetry        1,250       -      -      1,234      3  -",
        "series               0       -      -          -      -  -",
    ]
    with_job = compute_rates(
        ["telemetry"],
        scrapes(stream=JOB),
        scrapes(stream=JOB),
        interval_s=1.0,
        urls={"stream": "s"},
    )
    assert format_rates(with_job)[2].split() == [
        "telemetry",
        "-",
        "8,532",
        "0.50",
        "s",
        "7",
        "0",
        "detector",
        "v1,",
        "forecaster",
        "v3",
    ]


def test_status_as_dict_is_plain() -> None:
    report = compute_rates(
        ["telemetry"],
        scrapes(stream=JOB),
        scrapes(stream=JOB),
        interval_s=1.0,
        urls={"stream": "http://127.0.0.1:9097/metrics"},
    )
    assert report.as_dict()["components"] == {
        "stream": {"running": True, "url": "http://127.0.0.1:9097/metrics"}
    }
    assert report.as_dict()["streams"][0]["models"] == {"forecaster": 3, "detector": 1}


def test_status_measure_scrapes_twice_only_when_something_answers(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    urls = metrics_urls(settings)
    assert urls == {
        "ingest": "http://127.0.0.1:8088/metrics",
        "stream": "http://127.0.0.1:9097/metrics",
        "monitor": "http://127.0.0.1:9096/metrics",
    }
    asked: list[str] = []
    pages = iter([INGEST_1, INGEST_2])

    def fetch(url: str) -> str | None:
        asked.append(url)
        return next(pages) if url == urls["ingest"] else None

    report = measure_rates(settings, interval_s=0.05, fetch=fetch)
    assert asked == [*urls.values(), *urls.values()]
    assert report.running == {"ingest": True, "stream": False, "monitor": False}
    assert report.interval_s >= 0.05
    assert report.streams[[s.stream for s in report.streams].index("telemetry")].events_in_per_s

    asked.clear()
    silent = measure_rates(settings, interval_s=5.0, fetch=lambda url: asked.append(url))
    assert asked == list(urls.values())  # nothing answered: no wait, no second scrape
    assert silent.interval_s == 0.0


def test_status_services_one_line_each() -> None:
    lines = format_services(
        [
            ServiceStatus("kafka", True, pid=41, address="127.0.0.1:9092", version="4.1.0"),
            ServiceStatus("ingest", False, address="http://127.0.0.1:8088", detail="off"),
        ]
    )
    assert lines == [
        "kafka   running  127.0.0.1:9092         4.1.0  pid 41",
        "ingest  stopped  http://127.0.0.1:8088                 off",
    ]


def test_status_cli_prints_servers_then_rates(tmp_path: Path) -> None:
    config = tmp_path / "pulsecast.toml"
    # Ports nothing listens on: every component is reported not running.
    config.write_text(
        f'[paths]\ndata_dir = "{tmp_path / "state"}"\n'
        "[ingest]\nport = 1\n[monitoring]\njob_metrics_port = 2\nmonitor_port = 3\n"
    )
    result = CliRunner().invoke(app, ["--config", str(config), "status"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("kafka ")
    assert "rates and lag (ingest not running, stream job not running, monitor not running)" in (
        lines
    )
    assert sorted(line.split()[0] for line in lines[-2:]) == ["series", "telemetry"]
    assert all(line.split()[1:] == ["-"] * 6 for line in lines[-2:])

"""`pulsecast bench security`: sizes, the comparison, the report and each side's settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pulsecast.bench.ingest import _serve_env
from pulsecast.bench.security import (
    FIGURES,
    LoadSample,
    _order,
    check_sizes,
    compare,
    report_lines,
    security_report,
    side_settings,
)
from pulsecast.cli import app
from pulsecast.config import Settings

SIZES: dict[str, Any] = {
    "events": 10_000,
    "http_events": 5_000,
    "http_batch": 500,
    "e2e_events": 10_000,
    "warmup_events": 0,
    "repeats": 1,
    "target": 0.7,
}
LOAD = (1.0, 2.0, 3.0)


def _runs(plain: list[float], secure: list[float]) -> dict[str, Any]:
    return {name: {"plain": plain, "secure": secure} for name in FIGURES}


def test_check_sizes_accepts_the_smallest_run() -> None:
    check_sizes(**SIZES)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("events", 999, "events must be at least 1,000, got 999"),
        ("http_events", 10, "http_events must be at least 1,000, got 10"),
        ("http_batch", 0, "http_batch must be at least 1, got 0"),
        ("e2e_events", 0, "e2e_events must be at least 1,000, got 0"),
        ("warmup_events", -1, "warmup_events must be at least 0, got -1"),
        ("repeats", 0, "repeats must be at least 1, got 0"),
        ("http_batch", 6_000, "http_batch must be at most http_events (5,000), got 6,000"),
        ("target", 0.0, "target must be in (0, 1], got 0.0"),
        ("target", 1.5, "target must be in (0, 1], got 1.5"),
    ],
)
def test_check_sizes_names_the_bad_size(name: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        check_sizes(**{**SIZES, name: value})
    assert str(info.value) == message


def test_compare_takes_the_medians_and_their_ratio() -> None:
    figure = compare([100.0, 90.0, 110.0], [80.0, 70.0, 75.0], target=0.7)
    assert figure == {
        "plain_eps": 100.0,
        "secure_eps": 75.0,
        "ratio": 0.75,
        "meets_target": True,
        "plain_runs": [100.0, 90.0, 110.0],
        "secure_runs": [80.0, 70.0, 75.0],
        "repeats": 3,
    }


def test_compare_says_when_the_target_is_missed() -> None:
    figure = compare([1000.0], [699.0], target=0.7)
    assert figure["ratio"] == 0.699
    assert figure["meets_target"] is False
    assert compare([1000.0], [700.0], target=0.7)["meets_target"] is True


def test_compare_allows_secure_faster_than_plain() -> None:
    assert compare([100.0, 100.0], [120.0, 130.0])["ratio"] == 1.25


@pytest.mark.parametrize(
    ("plain", "secure", "message"),
    [
        ([], [1.0], "both sides need runs, got 0 plain and 1 secure"),
        ([1.0], [], "both sides need runs, got 1 plain and 0 secure"),
        ([0.0], [1.0], "the plain median must be positive, got 0.0"),
    ],
)
def test_compare_refuses_what_it_cannot_divide(
    plain: list[float], secure: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=None) as info:
        compare(plain, secure)
    assert str(info.value) == message


def test_security_report_has_every_figure_load_and_parameters() -> None:
    sample = LoadSample("e2e", "secure", 1, (1.5, 1.0, 0.5), (2.5, 1.2, 0.6))
    report = security_report(
        _runs([200.0, 100.0, 300.0], [150.0, 160.0, 170.0]),
        load_start=LOAD,
        load_end=(4.0, 3.0, 2.0),
        samples=[sample],
        parameters={"events": 10},
    )
    assert set(report) == {
        *FIGURES,
        "target",
        "all_meet_target",
        "load",
        "secure_side",
        "parameters",
    }
    for name in FIGURES:
        assert report[name]["plain_eps"] == 200.0
        assert report[name]["secure_eps"] == 160.0
        assert report[name]["ratio"] == 0.8
    assert report["all_meet_target"] is True
    assert report["load"] == {
        "start": [1.0, 2.0, 3.0],
        "end": [4.0, 3.0, 2.0],
        "min_1m": 1.5,
        "max_1m": 2.5,
        "cpus": report["load"]["cpus"],
        "samples": [
            {
                "figure": "e2e",
                "side": "secure",
                "repeat": 1,
                "before": [1.5, 1.0, 0.5],
                "after": [2.5, 1.2, 0.6],
            }
        ],
    }
    assert report["parameters"] == {"events": 10}
    assert json.loads(json.dumps(report)) == report


def test_security_report_fails_when_one_figure_missed() -> None:
    runs = _runs([100.0], [90.0])
    runs["e2e"] = {"plain": [100.0], "secure": [50.0]}
    report = security_report(runs, load_start=LOAD, load_end=LOAD)
    assert report["e2e"]["meets_target"] is False
    assert report["ingest_http"]["meets_target"] is True
    assert report["all_meet_target"] is False


def test_security_report_needs_every_figure() -> None:
    runs = _runs([1.0], [1.0])
    del runs["ingest_http"]
    with pytest.raises(ValueError, match=None) as info:
        security_report(runs, load_start=LOAD, load_end=LOAD)
    assert str(info.value) == "no runs for ingest_http"


def test_report_lines_show_each_figure_and_its_verdict() -> None:
    runs = _runs([100_000.0], [90_000.0])
    runs["e2e"] = {"plain": [8_000.0], "secure": [4_000.0]}
    lines = report_lines(security_report(runs, load_start=LOAD, load_end=LOAD))
    assert len(lines) == 2 + len(FIGURES)
    producer = next(line for line in lines if line.startswith("ingest_producer"))
    assert "100,000" in producer
    assert "90,000" in producer
    assert producer.endswith("0.90  meets")
    e2e = next(line for line in lines if line.startswith("e2e"))
    assert e2e.endswith("0.50  MISSES")
    assert lines[-1] == "medians of 1 repeats per side; load average (1 min) 1.0-1.0 on " + (
        f"{security_report(runs, load_start=LOAD, load_end=LOAD)['load']['cpus']} cpus"
    )


def test_sides_alternate_which_goes_first() -> None:
    assert [_order(r) for r in (1, 2, 3, 4)] == [
        ("plain", "secure"),
        ("secure", "plain"),
        ("plain", "secure"),
        ("secure", "plain"),
    ]


def _base(tmp_path: Path) -> Settings:
    from pulsecast.testing import settings_for

    return settings_for(
        tmp_path / "user",
        kafka={"bootstrap_servers": "elsewhere:9092", "partitions": 4, "linger_ms": 20},
        postgres={"dsn": "postgresql://user@elsewhere/db"},
        security={"enabled": True, "key_rate_per_s": 5.0},
        spark={"master": "local[2]", "shuffle_partitions": 3},
        monitoring={"job_metrics_port": 9109},
    )


@pytest.mark.parametrize("secure", [False, True])
def test_side_settings_run_local_servers_of_their_own(tmp_path: Path, secure: bool) -> None:
    base = _base(tmp_path)
    side = side_settings(
        base, tmp_path / "side", secure=secure, ports=[1001, 1002, 1003, 1004], pg_bin_dir=None
    )
    assert side.data_dir == (tmp_path / "side").resolve()
    assert side.kafka.is_local
    assert side.kafka.bootstrap == "127.0.0.1:1001"
    assert side.kafka.controller_port == 1002
    assert side.postgres.is_local
    assert side.postgres.port == 1003
    assert side.ingest.port == 1004
    assert side.security.enabled is secure
    assert side.ingest.tls is secure
    assert side.dashboard.tls is secure
    assert side.security.key_rate_per_s == 0
    assert side.security.address_rate_per_s == 0
    assert side.security.dir is None
    assert side.lake_uri == (tmp_path / "side" / "lake").resolve().as_uri()
    assert side.monitoring.job_metrics_port == 0


def test_side_settings_differ_only_in_security(tmp_path: Path) -> None:
    base = _base(tmp_path)
    pg = tmp_path / "pg-bin"
    plain, secure = (
        side_settings(base, tmp_path / "s", secure=s, ports=[1, 2, 3, 4], pg_bin_dir=pg)
        for s in (False, True)
    )
    for section in ("kafka", "postgres", "spark", "stream", "lake", "ml", "paths"):
        assert getattr(plain, section) == getattr(secure, section), section
    assert plain.postgres.bin_dir == pg
    assert plain.kafka.partitions == 4
    assert plain.kafka.linger_ms == 20
    assert plain.spark.shuffle_partitions == 3


def test_serve_env_carries_the_benchmark_side_to_the_server(tmp_path: Path) -> None:
    base = _base(tmp_path)
    secure = side_settings(
        base, tmp_path / "side", secure=True, ports=[1, 2, 3, 4], pg_bin_dir=None
    )
    env = _serve_env(secure, "benchx", 8123)
    assert env["PULSECAST_INGEST__PORT"] == "8123"
    assert env["PULSECAST_KAFKA__BOOTSTRAP_SERVERS"] == "127.0.0.1:1"
    assert env["PULSECAST_PATHS__DATA_DIR"] == str((tmp_path / "side").resolve())
    assert env["PULSECAST_SECURITY__ENABLED"] == "true"
    assert env["PULSECAST_SECURITY__ADDRESS_RATE_PER_S"] == "0.0"
    assert set(json.loads(env["PULSECAST_STREAMS"])) == {"benchx"}
    plain = side_settings(
        base, tmp_path / "side", secure=False, ports=[1, 2, 3, 4], pg_bin_dir=None
    )
    assert _serve_env(plain, "benchx", 8123)["PULSECAST_SECURITY__ENABLED"] == "false"


def test_cli_bench_security_refuses_bad_sizes_before_starting_anything() -> None:
    result = CliRunner().invoke(app, ["bench", "security", "--repeats", "0"])
    assert result.exit_code == 2
    assert "--repeats" in result.output


def test_cli_bench_security_documents_its_options() -> None:
    result = CliRunner().invoke(app, ["bench", "security", "--help"])
    assert result.exit_code == 0
    for option in ("--events", "--http-events", "--e2e-events", "--repeats", "--json"):
        assert option in result.output

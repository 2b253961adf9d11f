"""The configuration pulsecast generates for Prometheus and Alertmanager, checked by their tools."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from pulsecast.services.errors import ServiceError
from pulsecast.services.prometheus import PrometheusService, default_rules_dir, duration
from pulsecast.services.stack import Stack
from pulsecast.testing import settings_for
from tests.unit.monitoring.conftest import RULES_DIR


def check(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_passes_promtool_check(tmp_path: Path, promtool: str) -> None:
    service = PrometheusService(
        settings_for(tmp_path, monitoring={"scrape_interval_s": 0.5, "evaluation_interval_s": 1})
    )
    service.write_config()
    check([promtool, "check", "config", str(service.config_file)])
    config = yaml.safe_load(service.config_file.read_text())
    assert config["global"] == {
        "scrape_interval": "500ms",
        "scrape_timeout": "500ms",
        "evaluation_interval": "1s",
        "external_labels": {"platform": "pulsecast"},
    }
    assert config["rule_files"] == [str(RULES_DIR / "*.yml")]
    assert config["alerting"]["alertmanagers"][0]["static_configs"] == [
        {"targets": ["127.0.0.1:9095"]}
    ]
    jobs = {c["job_name"]: c["static_configs"][0]["targets"] for c in config["scrape_configs"]}
    assert jobs == {
        "pulsecast-prometheus": ["127.0.0.1:9090"],
        "pulsecast-alertmanager": ["127.0.0.1:9095"],
        "pulsecast-monitor": ["127.0.0.1:9096"],
        "pulsecast-ingest": ["127.0.0.1:8088"],
        "pulsecast-stream": ["127.0.0.1:9097"],
    }


def test_prometheus_scrapes_only_what_runs(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, ingest={"enabled": False}, monitoring={"job_metrics_port": 0})
    targets = PrometheusService(settings).scrape_targets()
    assert sorted(targets) == [
        "pulsecast-alertmanager",
        "pulsecast-monitor",
        "pulsecast-prometheus",
    ]


def test_alertmanager_config_routes_to_the_webhook(tmp_path: Path, amtool: str) -> None:
    service = PrometheusService(settings_for(tmp_path, monitoring={"group_wait_s": 1}))
    service.write_config()
    check([amtool, "check-config", str(service.alertmanager_file)])
    config = yaml.safe_load(service.alertmanager_file.read_text())
    assert config["route"] == {
        "receiver": "pulsecast-webhook",
        "group_by": ["alertname"],
        "group_wait": "1s",
        "group_interval": "5m",
        "repeat_interval": "4h",
    }
    assert config["receivers"] == [
        {
            "name": "pulsecast-webhook",
            "webhook_configs": [{"url": "http://127.0.0.1:9096/alerts", "send_resolved": True}],
        }
    ]


def test_alertmanager_config_with_email_keeps_the_password_private(
    tmp_path: Path, amtool: str
) -> None:
    settings = settings_for(
        tmp_path,
        monitoring={
            "email_to": "oncall@example.com",
            "smtp_smarthost": "smtp.example.com:587",
            "smtp_username": "pulsecast",
            "smtp_password": "s3cret",
        },
    )
    service = PrometheusService(settings)
    service.write_config()
    check([amtool, "check-config", str(service.alertmanager_file)])
    assert stat.S_IMODE(service.alertmanager_file.stat().st_mode) == 0o600
    config = yaml.safe_load(service.alertmanager_file.read_text())
    assert config["route"]["routes"] == [
        {"receiver": "pulsecast-webhook", "continue": True},
        {"receiver": "pulsecast-email"},
    ]
    assert config["receivers"][1]["email_configs"] == [
        {
            "to": "oncall@example.com",
            "from": "pulsecast@localhost",
            "smarthost": "smtp.example.com:587",
            "require_tls": True,
            "send_resolved": True,
            "auth_username": "pulsecast",
            "auth_password": "s3cret",
        }
    ]
    assert "s3cret" not in repr(settings.monitoring)
    assert "s3cret" not in str(service.status().as_dict())


def test_prometheus_service_commands_use_its_own_files_and_ports(tmp_path: Path) -> None:
    service = PrometheusService(
        settings_for(tmp_path, monitoring={"prometheus_port": 19090, "alertmanager_port": 19095})
    )
    home = tmp_path / "prometheus"
    prometheus = service.prometheus.command()
    assert prometheus[1:] == [
        f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'tsdb'}",
        "--storage.tsdb.retention.time=15d",
        "--web.listen-address=127.0.0.1:19090",
        "--web.enable-lifecycle",
    ]
    alertmanager = service.alertmanager.command()
    assert alertmanager[1:] == [
        f"--config.file={home / 'alertmanager.yml'}",
        f"--storage.path={home / 'alertmanager'}",
        "--web.listen-address=127.0.0.1:19095",
        "--cluster.listen-address=",
    ]
    assert service.monitor.command()[1:] == [
        "-m",
        "pulsecast.monitoring.monitor",
        "--data-dir",
        str(tmp_path),
    ]


def test_prometheus_service_says_which_executable_is_missing(tmp_path: Path) -> None:
    service = PrometheusService(
        settings_for(tmp_path, monitoring={"prometheus_binary": "no-such-prometheus"})
    )
    with pytest.raises(ServiceError) as caught:
        service.prometheus.command()
    assert str(caught.value) == (
        "cannot start prometheus: executable 'no-such-prometheus' "
        "(monitoring.prometheus_binary) not found; install Debian's prometheus and "
        "prometheus-alertmanager packages (scripts/system-deps.sh) or set the setting to its path"
    )


def test_prometheus_service_starts_nothing_without_both_executables(tmp_path: Path) -> None:
    service = PrometheusService(
        settings_for(tmp_path, monitoring={"alertmanager_binary": "no-such-alertmanager"})
    )
    with pytest.raises(ServiceError, match="executable 'no-such-alertmanager'"):
        service.start()
    assert [d.pid for d in service.daemons] == [None, None, None]
    assert not (tmp_path / "run").exists()


def test_prometheus_is_an_optional_service_of_the_stack(tmp_path: Path) -> None:
    stack = Stack(settings_for(tmp_path), with_=["prometheus"])
    assert [type(s).__name__ for s in stack.optional] == ["PrometheusService"]
    status = PrometheusService(settings_for(tmp_path)).status()
    assert (status.name, status.running, status.address) == (
        "prometheus",
        False,
        "http://127.0.0.1:9090",
    )
    assert default_rules_dir() == RULES_DIR


def test_duration_picks_the_largest_exact_unit() -> None:
    assert [duration(s) for s in (0.25, 1, 15, 90, 300, 14_400, 1.5)] == [
        "250ms",
        "1s",
        "15s",
        "90s",
        "5m",
        "4h",
        "1500ms",
    ]


def _alerts(folder: Path) -> dict[str, dict[str, object]]:
    return {
        str(rule["alert"]): rule
        for path in sorted(folder.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_prometheus_rules_rendered_with_a_short_for_leave_the_shipped_ones(
    tmp_path: Path, promtool: str
) -> None:
    shipped = {p.name: p.read_text() for p in RULES_DIR.glob("*.yml")}
    service = PrometheusService(settings_for(tmp_path, monitoring={"rule_for_s": 2}))
    (tmp_path / "prometheus" / "rules").mkdir(parents=True)
    stale = tmp_path / "prometheus" / "rules" / "removed.yml"
    stale.write_text("groups: []\n")
    service.write_config()
    rendered = tmp_path / "prometheus" / "rules"
    assert service.rules_dir == rendered
    config = yaml.safe_load(service.config_file.read_text())
    assert config["rule_files"] == [str(rendered / "*.yml")]
    assert sorted(p.name for p in rendered.glob("*.yml")) == sorted(shipped)  # stale one gone
    check([promtool, "check", "rules", *map(str, sorted(rendered.glob("*.yml")))])
    fast, original = _alerts(rendered), _alerts(RULES_DIR)
    assert sorted(fast) == sorted(original) and len(fast) == 9
    for name, rule in fast.items():
        assert rule["for"] == "2s"
        assert {k: v for k, v in rule.items() if k != "for"} == {
            k: v for k, v in original[name].items() if k != "for"
        }
    assert original["PulsecastKafkaLagGrowing"]["for"] == "10m"
    assert {p.name: p.read_text() for p in RULES_DIR.glob("*.yml")} == shipped


def test_prometheus_rules_are_the_shipped_ones_without_rule_for_s(tmp_path: Path) -> None:
    service = PrometheusService(settings_for(tmp_path))
    service.write_config()
    assert service.rules_dir == RULES_DIR
    assert not (tmp_path / "prometheus" / "rules").exists()

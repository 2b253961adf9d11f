from __future__ import annotations

from pathlib import Path

import pytest

from pulsecast.config import load_settings
from pulsecast.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pulsecast.toml"
    path.write_text(text)
    return path


def test_settings_defaults_have_telemetry_and_series_streams() -> None:
    settings = load_settings()
    assert set(settings.streams) == {"telemetry", "series"}
    assert settings.streams["telemetry"].key_field == "entity_id"
    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert settings.config_file is None


def test_settings_read_toml_then_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[kafka]\nport = 9200\npartitions = 6\n")
    monkeypatch.setenv("PULSECAST_KAFKA__PORT", "9300")
    settings = load_settings(path)
    assert settings.kafka.port == 9300
    assert settings.kafka.partitions == 6
    assert settings.config_file == path.resolve()


def test_settings_pick_up_pulsecast_toml_in_working_dir(tmp_path: Path) -> None:
    write(tmp_path, "[ingest]\nport = 9999\n")
    assert load_settings().ingest.port == 9999


def test_settings_declare_a_stream_in_toml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[streams.orders]
key_field = "customer"
[streams.orders.fields.customer]
type = "str"
[streams.orders.fields.amount]
type = "float"
min = 0
""",
    )
    settings = load_settings(path)
    assert settings.streams["orders"].fields["amount"].min == 0


@pytest.mark.parametrize("name", ["batch_id", "reason", "_correlation"])
def test_a_payload_field_may_not_take_a_name_of_the_jobs_columns(tmp_path: Path, name: str) -> None:
    path = write(
        tmp_path,
        f"""
[streams.orders]
key_field = "customer"
[streams.orders.fields.customer]
type = "str"
[streams.orders.fields.{name}]
type = "float"
""",
    )
    with pytest.raises(ConfigError, match=rf"\['{name}'\] are the streaming job's own columns"):
        load_settings(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[kafka]\nport = "abc"\n',
            "invalid setting kafka.port = 'abc' (from {path}): Input should be a valid integer, "
            "unable to parse string as an integer",
        ),
        (
            "[kafka]\nport = 70000\n",
            "invalid setting kafka.port = 70000 (from {path}): "
            "Input should be less than or equal to 65535",
        ),
        ("[kafka]\nprot = 1\n", "unknown setting kafka.prot in {path}"),
        (
            '[log]\nlevel = "LOUD"\n',
            "invalid setting log.level = 'LOUD' (from {path}): "
            "Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'",
        ),
        (
            "[kafka\nport = 1\n",
            "{path}: invalid TOML: Expected ']' at the end of a table declaration "
            "(at line 1, column 7)",
        ),
        (
            '[streams.x]\nkey_field = "k"\n[streams.x.fields.k]\ntype = "int"\n',
            "invalid setting streams.x (from {path}): key_field 'k' must be a required str field",
        ),
        (
            '[streams.x]\nkey_field = "k"\n[streams.x.fields.k]\ntype = "str"\n'
            '[streams.x.fields.v]\ntype = "float"\nmin = 5\nmax = 1\n',
            "invalid setting streams.x.fields.v (from {path}): min 5.0 is greater than max 1.0",
        ),
    ],
)
def test_settings_errors_are_one_line_naming_key_value_and_expectation(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == message.format(path=path)
    assert "\n" not in str(info.value)


def test_settings_error_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSECAST_KAFKA__PARTITIONS", "zero")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        "invalid setting kafka.partitions = 'zero' (from PULSECAST_KAFKA__PARTITIONS): "
        "Input should be a valid integer, unable to parse string as an integer"
    )
    assert info.value.key == "kafka.partitions"
    assert info.value.source == "PULSECAST_KAFKA__PARTITIONS"


def test_settings_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.toml: configuration file not found$"):
        load_settings(tmp_path / "nope.toml")


def test_settings_fold_java_home_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", "/opt/jdk")
    assert load_settings().jvm.java_home == Path("/opt/jdk")


def test_settings_mask_the_warehouse_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSECAST_POSTGRES__DSN", "postgresql://u:hunter2@db/x")
    settings = load_settings()
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.postgres)
    assert settings.postgres.conninfo() == "postgresql://u:hunter2@db/x"
    assert not settings.postgres.is_local


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.kafka.port = 1  # type: ignore[misc]


def test_a_trigger_interval_of_0_runs_batches_back_to_back(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[stream]\ntrigger_interval_s = 0\n"))
    assert settings.stream.trigger_interval_s == 0
    with pytest.raises(ConfigError, match=r"stream\.trigger_interval_s = -1"):
        load_settings(write(tmp_path, "[stream]\ntrigger_interval_s = -1\n"))

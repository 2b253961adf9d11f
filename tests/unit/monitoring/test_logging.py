from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pulsecast import logging as pclog
from pulsecast.config import load_settings
from pulsecast.errors import ConfigError
from pulsecast.logging import (
    LOG_FILE_NAME,
    RedactingFilter,
    configure_from_settings,
    configure_logging,
    redact,
)
from pulsecast.testing import settings_for


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test configures logging from scratch; the runner's own set-up comes back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = {name: logging.getLogger(name).level for name in ("pulsecast", "pulsecast.stream")}
    state = dict(pclog._state)
    for handler in handlers:
        root.removeHandler(handler)
    pclog._state.clear()
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, name_level in named.items():
        logging.getLogger(name).setLevel(name_level)
    pclog._state.clear()
    pclog._state.update(state)


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_logging_json_line_has_required_fields_and_extras(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / LOG_FILE_NAME
    configure_logging("INFO", fmt="console", log_file=log_file)
    logging.getLogger("pulsecast.bus.test").info(
        "read %d records", 3, extra={"topic": "telemetry.events", "partition": 2, "offset": 41}
    )
    (record,) = _records(log_file)
    assert list(record)[:4] == ["time", "level", "logger", "message"]
    assert record["level"] == "INFO"
    assert record["logger"] == "pulsecast.bus.test"
    assert record["message"] == "read 3 records"
    assert (record["topic"], record["partition"], record["offset"]) == ("telemetry.events", 2, 41)
    when = datetime.fromisoformat(str(record["time"]))
    assert when.utcoffset() is not None
    assert when.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs((datetime.now(UTC) - when).total_seconds()) < 60


def test_logging_json_line_carries_the_exception(tmp_path: Path) -> None:
    log_file = tmp_path / LOG_FILE_NAME
    configure_logging("INFO", log_file=log_file)
    try:
        _ = 1 / 0
    except ZeroDivisionError:
        logging.getLogger("pulsecast.x").exception("batch failed")
    (record,) = _records(log_file)
    assert record["level"] == "ERROR"
    assert "ZeroDivisionError: division by zero" in str(record["exc"])


def test_logging_console_lines_are_readable(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", fmt="console")
    logging.getLogger("pulsecast.stream.job").warning("batch %s slow", 7)
    line = capsys.readouterr().err.strip()
    assert line.endswith("WARNING pulsecast.stream.job: batch 7 slow")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_logging_auto_is_console_on_a_terminal_and_json_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = _Tty()
    monkeypatch.setattr(sys, "stderr", terminal)
    configure_logging("INFO", fmt="auto")
    logging.getLogger("pulsecast.t").info("hello")
    assert terminal.getvalue().rstrip().endswith("INFO    pulsecast.t: hello")

    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    configure_logging("INFO", fmt="auto", log_file=None, secrets=["changes-the-key"])
    logging.getLogger("pulsecast.t").info("hello")
    assert json.loads(pipe.getvalue())["message"] == "hello"


def test_logging_levels_per_component(tmp_path: Path) -> None:
    log_file = tmp_path / LOG_FILE_NAME
    configure_logging("WARNING", levels={"pulsecast.stream": "DEBUG"}, log_file=log_file)
    logging.getLogger("pulsecast.stream.job").debug("stream debug")
    logging.getLogger("pulsecast.bus.admin").info("bus info")
    logging.getLogger("pulsecast.bus.admin").warning("bus warning")
    assert [r["message"] for r in _records(log_file)] == ["stream debug", "bus warning"]

    # Reconfiguring without the entry gives the component the root's level back.
    configure_logging("WARNING", log_file=log_file)
    logging.getLogger("pulsecast.stream.job").debug("quiet now")
    assert [r["message"] for r in _records(log_file)][-1] == "bus warning"


def test_logging_configure_twice_keeps_one_handler_and_others_alone(tmp_path: Path) -> None:
    root = logging.getLogger()
    theirs = logging.NullHandler()
    root.addHandler(theirs)
    configure_logging("INFO", log_file=tmp_path / LOG_FILE_NAME)
    configure_logging("DEBUG", log_file=tmp_path / LOG_FILE_NAME)
    names = [h.get_name() for h in root.handlers]
    assert names.count("pulsecast") == 1
    assert names.count("pulsecast-file") == 1
    assert theirs in root.handlers
    assert root.level == logging.DEBUG


def test_logging_file_rotates(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / LOG_FILE_NAME
    configure_logging("INFO", log_file=log_file, max_bytes=1024, backup_count=2)
    log = logging.getLogger("pulsecast.rotation")
    for i in range(100):
        log.info("line %03d %s", i, "x" * 40)
    assert sorted(p.name for p in log_file.parent.iterdir()) == [
        "pulsecast.log",
        "pulsecast.log.1",
        "pulsecast.log.2",
    ]
    for path in log_file.parent.iterdir():
        assert path.stat().st_size <= 1024
        assert all(r["logger"] == "pulsecast.rotation" for r in _records(path))
    assert _records(log_file)[-1]["message"].endswith("line 099 " + "x" * 40)  # type: ignore[union-attr]


REDACTIONS = [
    ("password=hunter2 user=app", "password=*** user=app"),
    ("PASSWORD: 'hunter 2'", "PASSWORD: '***'"),
    ('{"password": "hunter2", "user": "app"}', '{"password": "***", "user": "app"}'),
    ("token=abc&next=1", "token=***&next=1"),
    ("postgresql://app:s3cr3t@db:5432/pulsecast", "postgresql://app:***@db:5432/pulsecast"),
    ("sasl_ssl://svc:p@ss@broker:9096", "sasl_ssl://svc:***@broker:9096"),
    ("key pck_0a1b2c3d_Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1", "key pck_0a1b2c3d_***"),
    ("Authorization: Bearer eyJhbGciOi.J9.x-y_z", "Authorization: Bearer ***"),
    ("postgresql://app@db/pulsecast and http://host:8080/x", None),
    ("nothing secret, offset=41 partition=2", None),
]


@pytest.mark.parametrize(("text", "expected"), REDACTIONS)
def test_logging_redact_patterns(text: str, expected: str | None) -> None:
    assert redact(text) == (text if expected is None else expected)


def test_logging_redacting_filter_masks_args_extras_and_exceptions(tmp_path: Path) -> None:
    log_file = tmp_path / LOG_FILE_NAME
    configure_logging("INFO", log_file=log_file, secrets=["opaque-value-42"])
    log = logging.getLogger("pulsecast.security.test")
    log.info("got %s", "opaque-value-42", extra={"dsn": "postgresql://u:pw@h/db"})
    try:
        msg = "cannot use password=hunter2"
        raise RuntimeError(msg)
    except RuntimeError:
        log.exception("failed")
    text = log_file.read_text()
    for secret in ("opaque-value-42", "pw@", "hunter2"):
        assert secret not in text
    first, second = _records(log_file)
    assert first["message"] == "got ***"
    assert first["dsn"] == "postgresql://u:***@h/db"
    assert "password=***" in str(second["exc"])


def test_logging_redacting_filter_keeps_bad_args_records() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "two %s %s password=x", ("one",), None)
    assert RedactingFilter().filter(record) is True
    assert record.msg == "two %s %s password=***"


def test_logging_from_settings_masks_secret_settings_and_writes_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(
        tmp_path / "state",
        postgres={"dsn": "host=db user=app sslkey=opaque-dsn-part"},
        security={"master_key": "bWFzdGVyLWtleS1vcGFxdWUtdmFsdWUtMzItYnl0ZXM"},
        log={"levels": {"pulsecast.stream": "DEBUG"}, "format": "json"},
    )
    configure_from_settings(settings, level="WARNING")
    log = logging.getLogger("pulsecast.stream.test")
    log.debug("conninfo %s", settings.postgres.conninfo())
    log.warning("key %s", settings.security.master_key.get_secret_value())  # type: ignore[union-attr]
    log_file = settings.data_dir / "logs" / LOG_FILE_NAME
    assert [r["message"] for r in _records(log_file)] == ["conninfo ***", "key ***"]
    err = capsys.readouterr().err
    assert "opaque" not in err
    assert "bWFzdGVy" not in err
    assert [json.loads(line)["level"] for line in err.splitlines()] == ["DEBUG", "WARNING"]


def test_logging_from_settings_without_file(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "state", log={"to_file": False})
    configure_from_settings(settings)
    logging.getLogger("pulsecast.x").warning("only on stderr")
    assert not (settings.data_dir / "logs").exists()


def test_logging_levels_setting_from_env_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSECAST_LOG__LEVELS", '{"pulsecast.stream": "DEBUG"}')
    assert load_settings().log.levels == {"pulsecast.stream": "DEBUG"}
    monkeypatch.setenv("PULSECAST_LOG__LEVELS", '{"pulsecast.stream": "LOUD"}')
    with pytest.raises(ConfigError, match=r"^invalid setting log\.levels\.pulsecast\.stream"):
        load_settings()

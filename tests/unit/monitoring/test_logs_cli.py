from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pulsecast.cli import app
from pulsecast.monitoring.logs import (
    KNOWN_LOGS,
    UnknownLogError,
    as_json_line,
    follow,
    known_logs,
    list_logs,
    log_path,
    tail,
)

runner = CliRunner()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """The logs folder of the CLI's default data dir (tests run in tmp_path)."""
    folder = tmp_path / ".pulsecast" / "logs"
    folder.mkdir(parents=True)
    return folder


def _write(path: Path, *lines: str, end: str = "\n") -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(line + end for line in lines))


def _in_thread(work: Callable[[], None]) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield thread
    thread.join(timeout=5)
    assert not thread.is_alive()


# --- tail / list -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "count", "expected"),
    [
        ("a\nb\nc\n", 2, ["b", "c"]),
        ("a\nb\nc\n", 10, ["a", "b", "c"]),
        ("a\nb\nc", 2, ["b", "c"]),  # an unfinished last line is shown
        ("a\r\nb\r\n", 1, ["b"]),
        ("\n", 5, [""]),
        ("", 5, []),
        ("a\nb\n", 0, []),
    ],
)
def test_logs_tail(tmp_path: Path, content: str, count: int, expected: list[str]) -> None:
    path = tmp_path / "x.log"
    path.write_text(content)
    assert tail(path, count) == expected


def test_logs_tail_of_a_file_larger_than_one_block(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    _write(path, *(f"line {i:06d} " + "y" * 100 for i in range(3000)))
    got = tail(path, 1500)
    assert len(got) == 1500
    assert got[0].startswith("line 001500 ")
    assert got[-1].startswith("line 002999 ")


def test_logs_list_and_known(log_dir: Path) -> None:
    _write(log_dir / "kafka.log", "started")
    _write(log_dir / "custom-thing.log", "hi")
    (log_dir / "pulsecast.log.1").write_text("rotated\n")
    assert [f.service for f in list_logs(log_dir)] == ["custom-thing", "kafka"]
    assert list_logs(log_dir / "missing") == []
    assert known_logs(log_dir) == sorted({*KNOWN_LOGS, "custom-thing"})
    assert log_path(log_dir, "custom-thing") == log_dir / "custom-thing.log"
    assert log_path(log_dir, "hdfs-namenode") == log_dir / "hdfs-namenode.log"
    with pytest.raises(UnknownLogError, match=r"^unknown service 'nope'; known logs: alertm"):
        log_path(log_dir, "nope")


def test_logs_as_json_line() -> None:
    own = '{"time": "t", "level": "INFO", "message": "m"}'
    assert json.loads(as_json_line("pulsecast", own)) == {
        "service": "pulsecast",
        "time": "t",
        "level": "INFO",
        "message": "m",
    }
    assert json.loads(as_json_line("kafka", "[2026] INFO started")) == {
        "service": "kafka",
        "message": "[2026] INFO started",
    }
    assert json.loads(as_json_line("kafka", "42")) == {"service": "kafka", "message": "42"}


# --- follow ------------------------------------------------------------------------------


def _collect(
    path: Path, want: int, *, lines: int = 0, on_line: Callable[[str], None] = print
) -> list[str]:
    """Follow ``path`` until ``want`` lines arrived (or 5 s passed), then stop it."""
    done = threading.Event()
    deadline = time.monotonic() + 5
    got: list[str] = []
    for line in follow(
        path, stop=lambda: done.is_set() or time.monotonic() > deadline, lines=lines, poll_s=0.01
    ):
        got.append(line)
        on_line(line)
        if len(got) >= want:
            done.set()
    return got


def test_logs_follow_history_then_new_lines_across_rotation(tmp_path: Path) -> None:
    path = tmp_path / "pulsecast.log"
    _write(path, "old 1", "old 2", "old 3")

    def writer() -> None:
        time.sleep(0.05)
        _write(path, "new 1")
        _write(path, "new ", end="")  # a line written in two steps comes out whole
        time.sleep(0.05)
        _write(path, "2")
        path.rename(path.with_name("pulsecast.log.1"))  # what RotatingFileHandler does
        _write(path, "after rotation 1", "after rotation 2")

    for _ in _in_thread(writer):
        got = _collect(path, 6, lines=2)
    assert got == ["old 2", "old 3", "new 1", "new 2", "after rotation 1", "after rotation 2"]


def test_logs_follow_after_truncation(tmp_path: Path) -> None:
    path = tmp_path / "kafka.log"
    _write(path, "a", "b")
    seen_b = threading.Event()

    def writer() -> None:
        assert seen_b.wait(5)
        path.write_text("")  # copytruncate
        time.sleep(0.05)
        _write(path, "c")

    for _ in _in_thread(writer):
        got = _collect(path, 3, lines=5, on_line=lambda line: line == "b" and seen_b.set())
    assert got == ["a", "b", "c"]


def test_logs_follow_waits_for_the_file(tmp_path: Path) -> None:
    path = tmp_path / "later.log"

    def writer() -> None:
        time.sleep(0.05)
        _write(path, "first", "second")

    for _ in _in_thread(writer):
        got = _collect(path, 2, lines=10)
    assert got == ["first", "second"]


def test_logs_follow_stops_and_yields_the_unfinished_line(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    _write(path, "done")
    _write(path, "half", end="")
    assert list(follow(path, stop=lambda: True, lines=0, poll_s=0.01)) == ["half"]


# --- the command -------------------------------------------------------------------------


def test_logs_cli_lists_files(log_dir: Path) -> None:
    _write(log_dir / "kafka.log", "a", "b")
    _write(log_dir / "pulsecast.log", "{}")
    result = runner.invoke(app, ["logs"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["kafka", "pulsecast"]
    assert lines[0].endswith(str(log_dir / "kafka.log"))

    result = runner.invoke(app, ["logs", "--json"])
    listed = json.loads(result.stdout)["logs"]
    assert [(e["service"], e["size_bytes"]) for e in listed] == [("kafka", 4), ("pulsecast", 3)]


def test_logs_cli_lists_nothing_yet(tmp_path: Path) -> None:
    result = runner.invoke(app, ["logs"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == f"no log files yet in {tmp_path / '.pulsecast' / 'logs'}\n"


def test_logs_cli_prints_last_lines(log_dir: Path) -> None:
    _write(log_dir / "kafka.log", *(f"line {i}" for i in range(100)))
    result = runner.invoke(app, ["logs", "kafka", "--lines", "3"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "line 97\nline 98\nline 99\n"
    result = runner.invoke(app, ["logs", "kafka"])
    assert len(result.stdout.splitlines()) == 50


def test_logs_cli_json_lines(log_dir: Path) -> None:
    _write(log_dir / "pulsecast.log", json.dumps({"level": "INFO", "message": "m"}), "plain")
    result = runner.invoke(app, ["logs", "pulsecast", "--json", "-n", "2"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"service": "pulsecast", "level": "INFO", "message": "m"},
        {"service": "pulsecast", "message": "plain"},
    ]


def test_logs_cli_unknown_service_is_one_line(log_dir: Path) -> None:
    result = runner.invoke(app, ["logs", "nope"])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: unknown service 'nope'; known logs: alertmanager, hdfs-datanode, hdfs-namenode, "
        "ingest, kafka, monitor, postgres, prometheus, pulsecast, spark-master, spark-worker\n"
    )


def test_logs_cli_known_service_without_log(log_dir: Path) -> None:
    result = runner.invoke(app, ["logs", "postgres"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: no postgres log yet: {log_dir / 'postgres.log'} does not exist\n"
    )


def test_logs_cli_follow_until_max_seconds(log_dir: Path) -> None:
    path = log_dir / "pulsecast.log"
    _write(path, "history 1", "history 2")
    live = ["live 0", "live 1", "live 2"]

    def writer() -> None:
        for line in live:
            time.sleep(0.1)
            _write(path, line)
        path.rename(path.with_name("pulsecast.log.1"))
        _write(path, "rotated")

    started = time.monotonic()
    for _ in _in_thread(writer):
        result = runner.invoke(app, ["logs", "pulsecast", "-f", "-n", "1", "--max-seconds", "1.5"])
    assert result.exit_code == 0, result.output
    assert 1.5 <= time.monotonic() - started < 5
    printed = result.stdout.splitlines()
    # One line of history (normally "history 2"; a later one on a slow start), then every
    # line written since, none twice, the rotated file's included.
    everything = ["history 1", "history 2", *live, "rotated"]
    assert printed[0] != "history 1"
    assert printed == everything[everything.index(printed[0]) :]
    assert printed[-4:] == [*live, "rotated"] or printed[0] in live

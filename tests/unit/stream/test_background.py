"""The job's background steps: results, errors and when they end."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from pulsecast.stream.job import _Background


def test_a_background_step_gives_when_it_ended() -> None:
    done: list[int] = []
    release = threading.Event()

    def step(value: int, *, wait: threading.Event) -> None:
        wait.wait(5)
        done.append(value)

    before = datetime.now(UTC)
    background = _Background(step, 7, wait=release)
    assert done == []  # runs on its own thread
    release.set()
    ended = background.result()
    assert done == [7]
    assert before <= ended <= datetime.now(UTC)
    assert background.error is None


def test_a_failed_step_raises_its_error_from_result_and_keeps_it() -> None:
    def step() -> None:
        raise OSError("disk full")

    background = _Background(step)
    background.wait()  # returns however it ended
    assert isinstance(background.error, OSError)
    with pytest.raises(OSError, match="disk full"):
        background.result()

"""Shared fixtures: every test gets a clean PULSECAST_* environment and must not leak one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulsecast.config import Settings
from pulsecast.testing import settings_for

REPO = Path(__file__).resolve().parents[1]
NAB = REPO.parent / "shared" / "data" / "nab" / "data"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path) -> Iterator[None]:
    # Our own MonkeyPatch (not the test's): it is undone after the test's, so the
    # check below sees whatever the test left behind.
    patch = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith("PULSECAST_") or name == "JAVA_HOME":
            patch.delenv(name)
    patch.chdir(tmp_path)  # no stray ./pulsecast.toml is read
    before = dict(os.environ)
    yield
    after = dict(os.environ)
    patch.undo()
    leaked = {
        k
        for k in set(before) | set(after)
        if before.get(k) != after.get(k) and k != "PYTEST_CURRENT_TEST"
    }
    assert not leaked, f"test leaked environment changes: {sorted(leaked)}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings with state in the test's own folder."""
    return settings_for(tmp_path / "state")

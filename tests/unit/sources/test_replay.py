from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pulsecast.config import Settings
from pulsecast.events import Rejection, SchemaRegistry
from pulsecast.sources.errors import SourceError
from pulsecast.sources.produce import parse_speed
from pulsecast.sources.replay import discover, parse_time, replay_events
from pulsecast.sources.runner import time_paced


def nab_folder(tmp_path: Path) -> Path:
    root = tmp_path / "nab"
    (root / "realA").mkdir(parents=True)
    (root / "realA" / "one.csv").write_text(
        "timestamp,value\n2015-01-01 00:00:00,1.5\n2015-01-01 00:10:00,2\n"
    )
    (root / "realB").mkdir()
    (root / "realB" / "two.csv").write_text(
        "timestamp,value\n2015-01-01 00:05:00,7\n2015-01-01 00:15:00,oops\nnot-a-time,3\n"
    )
    return root


def test_replay_discovers_files_named_by_relative_path(tmp_path: Path) -> None:
    root = nab_folder(tmp_path)
    assert [name for _, name in discover([root])] == ["realA/one", "realB/two"]
    with pytest.raises(SourceError, match=r"nowhere: no such file or folder$"):
        discover([tmp_path / "nowhere"])


def test_replay_merges_files_in_event_time_and_keeps_bad_rows(
    tmp_path: Path, settings: Settings
) -> None:
    spec = settings.streams["series"]
    events = list(replay_events([nab_folder(tmp_path)], spec))
    keyed = [(e["payload"]["series_id"], e["payload"]["value"]) for _, e in events]
    assert keyed == [
        ("realA/one", "1.5"),
        ("realB/two", "7"),
        ("realA/one", "2"),
        ("realB/two", "oops"),
        ("realB/two", "3"),
    ]
    assert events[0][0] == datetime(2015, 1, 1, tzinfo=UTC)
    assert events[-1][0] is None  # unparseable time: passed on for validation to reject
    schema = SchemaRegistry(settings.streams)["series"]
    results = schema.validate_many([e for _, e in events], strict=False)
    reasons = [r.reason if isinstance(r, Rejection) else "ok" for r in results]
    assert reasons == ["ok", "ok", "ok", "wrong_type", "invalid_timestamp"]
    assert results[0].key == "realA/one"
    assert results[0].payload.value == 1.5


def test_replay_jsonl_envelopes_pass_through(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"event_time": "2026-01-01T00:00:01Z", "payload": {"series_id": "s", "value": 1}}\n'
        '{"ts": 1767225600, "value": 2, "series_id": "t"}\n'
        "[1]\n"
    )
    events = list(replay_events([path], settings.streams["series"]))  # one file: file order
    assert events[0][1]["payload"] == {"series_id": "s", "value": 1}
    assert events[1][1]["payload"] == {"series_id": "t", "value": 2}
    assert events[1][0] == datetime(2026, 1, 1, tzinfo=UTC)
    assert events[2][0] is None


def test_replay_missing_time_column_is_an_error(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "x.csv"
    path.write_text("when,value\n2020-01-01,1\n")
    with pytest.raises(SourceError, match=r"x.csv:2: no time column \(looked for event_time"):
        list(replay_events([path], settings.streams["series"]))
    events = list(replay_events([path], settings.streams["series"], time_field="when"))
    assert events[0][0] == datetime(2020, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2015-07-10 14:24:00", datetime(2015, 7, 10, 14, 24, tzinfo=UTC)),
        ("2015-07-10T14:24:00Z", datetime(2015, 7, 10, 14, 24, tzinfo=UTC)),
        (1436538240, datetime(2015, 7, 10, 14, 24, tzinfo=UTC)),
        (1436538240000, datetime(2015, 7, 10, 14, 24, tzinfo=UTC)),
        ("yesterday", None),
        (None, None),
    ],
)
def test_replay_parse_time(text: object, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_time_paced_releases_batches_in_event_time() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    events = [(t0.replace(second=s), {"n": s}) for s in (0, 0, 1)]
    batches = list(time_paced(iter(events), speed=50.0, batch=10))
    assert [[e["n"] for e in b] for b in batches] == [[0, 0], [1]]
    assert list(time_paced(iter(events), speed=None, batch=2)) == [[{"n": 0}, {"n": 0}], [{"n": 1}]]


@pytest.mark.parametrize(("text", "value"), [("max", None), ("realtime", 1.0), ("60", 60.0)])
def test_parse_speed(text: str, value: float | None) -> None:
    assert parse_speed(text) == value


def test_parse_speed_rejects_nonsense() -> None:
    with pytest.raises(SourceError, match="--speed must be 'max', 'realtime' or a positive number"):
        parse_speed("fast")

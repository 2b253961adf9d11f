"""What encrypting the job's small-table commits costs: plaintext against encrypted.

Builds a gold-like table of one day (one commit per hour, ``--rows-per-minute``
rows per minute: keys by metrics), then times, each ``--repeat`` times after
one untimed warm-up, what the streaming job does to gold every micro-batch:
an ``append_once`` of one minute's rows (as the pane state), a ``replace`` of
one minute's windows by the job's predicate, and a ``mark_final`` of one
minute's windows. The same rows go to a plaintext table (``crypto=None``) and
to an encrypted one (the lake key of a fresh local keystore). Prints the
median of each, in milliseconds. No Spark, no server.

    .venv/bin/python benchmarks/small_table_crypto_costs.py [--repeat N] [--rows-per-minute R]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from pulsecast.lake import small_tables
from pulsecast.security.lake_crypto import LakeCrypto
from pulsecast.stream.job import gold_partitions
from pulsecast.testing import settings_for

DAY = datetime(2026, 11, 29, tzinfo=UTC)
STAMP = pa.timestamp("us", tz="UTC")


def minute_rows(minute: int, per_minute: int, *, final: bool) -> pa.Table:
    """One minute's gold-like rows: ``per_minute`` (key, metric) windows starting then."""
    start = DAY + timedelta(minutes=minute)
    keys = [f"m-{i // 4:04d}" for i in range(per_minute)]
    metrics = [
        ("temperature_c", "cpu_util", "power_kw", "vibration_mm_s")[i % 4]
        for i in range(per_minute)
    ]
    return pa.table(
        {
            "key": keys,
            "metric": metrics,
            "window_start": pa.array([start] * per_minute, STAMP),
            "window_end": pa.array([start + timedelta(minutes=1)] * per_minute, STAMP),
            "count": pa.array([60] * per_minute, pa.int64()),
            "mean": [float(i) for i in range(per_minute)],
            "is_final": [final] * per_minute,
            "window_date": pa.array([start.date()] * per_minute, pa.date32()),
            "window_hour": pa.array([start.hour] * per_minute, pa.int32()),
        }
    )


def build(uri: str, per_minute: int, crypto: LakeCrypto | None) -> None:
    """A day of windows, one commit per hour, all final but the last minute's."""
    schema = minute_rows(0, 1, final=True).schema
    write_deltalake(uri, schema.empty_table(), partition_by=["window_date", "window_hour"])
    for hour in range(24):
        rows = pa.concat_tables(
            minute_rows(hour * 60 + m, per_minute, final=True) for m in range(60)
        )
        small_tables.append_once(uri, rows, "bench-build", hour, crypto=crypto)


def timed(repeat: int, action: Callable[[int], object]) -> float:
    """Median milliseconds of ``action(i)`` over ``repeat`` runs, after one warm-up."""
    action(-1)
    times = []
    for i in range(repeat):
        started = time.perf_counter()
        action(i)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def costs(root: Path, per_minute: int, repeat: int, crypto: LakeCrypto | None) -> dict[str, float]:
    uri = str(root / ("encrypted" if crypto else "plain") / "gold")
    build(uri, per_minute, crypto)
    panes = str(root / ("encrypted" if crypto else "plain") / "panes")
    write_deltalake(
        panes, minute_rows(0, 1, final=False).schema.empty_table(), partition_by=["window_date"]
    )
    last = 24 * 60 - 1
    keys = ", ".join(small_tables.quote(f"m-{i:04d}") for i in range(per_minute // 4))

    def append(i: int) -> object:
        rows = minute_rows(last, per_minute, final=False)
        return small_tables.append_once(panes, rows, "bench-panes", i + 1, crypto=crypto)

    def replace(_i: int) -> object:
        start = DAY + timedelta(minutes=last)
        predicate = gold_partitions(start, start) + f" AND key IN ({keys})"
        predicate += f" AND window_start IN ({small_tables.literal(start)})"
        rows = minute_rows(last, per_minute, final=False)
        return small_tables.replace(uri, rows, predicate, crypto=crypto)

    def mark_final(_i: int) -> object:
        replace(0)  # the minute is open again
        end = DAY + timedelta(minutes=last + 1)
        previous = end - timedelta(minutes=1)
        # As the job's _finalize: the windows the watermark passed since the last call.
        predicate = (
            f"window_end <= {small_tables.literal(end)}"
            f" AND {gold_partitions(previous - timedelta(minutes=1), end)}"
            f" AND window_end > {small_tables.literal(previous)}"
        )
        return small_tables.mark_final(uri, predicate, crypto=crypto)

    result = {"append_once": timed(repeat, append), "replace": timed(repeat, replace)}
    replace_ms = result["replace"]
    result["mark_final"] = timed(repeat, mark_final) - replace_ms  # without its reopening
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed commits of each kind")
    parser.add_argument("--rows-per-minute", type=int, default=200, help="windows per minute")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pulsecast-crypto-costs-"))
    crypto = LakeCrypto.from_settings(settings_for(root / "state", security={"encrypt_lake": True}))
    assert crypto is not None  # noqa: S101 (encrypt_lake is on)
    plain = costs(root, args.rows_per_minute, args.repeat, None)
    encrypted = costs(root, args.rows_per_minute, args.repeat, crypto)
    print(f"{'per commit (median ms)':<24} {'plaintext':>10} {'encrypted':>10}")
    for name in plain:
        print(f"{name:<24} {plain[name]:>10.1f} {encrypted[name]:>10.1f}")


if __name__ == "__main__":
    main()

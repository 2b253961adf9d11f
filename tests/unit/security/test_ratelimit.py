from __future__ import annotations

import pytest

from pulsecast.security.ratelimit import RateLimiter, TokenBucket
from pulsecast.testing import ManualClock


def test_ratelimit_burst_then_refill_at_the_rate() -> None:
    clock = ManualClock(1000.0)
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.check("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("k") == pytest.approx(0.5)
    clock.now += 0.25
    assert limiter.check("k") == pytest.approx(0.25)  # a refused request takes nothing
    clock.now += 0.25
    assert limiter.check("k") == 0.0
    assert limiter.check("k") == pytest.approx(0.5)
    clock.now += 100  # never more than the burst
    assert [limiter.check("k") for _ in range(4)][-1] > 0


def test_ratelimit_keys_are_independent() -> None:
    clock = ManualClock(1000.0)
    limiter = RateLimiter(1.0, 1, clock=clock)
    assert limiter.check("a") == 0.0
    assert limiter.check("a") > 0
    assert limiter.check("b") == 0.0


def test_ratelimit_zero_rate_disables() -> None:
    limiter = RateLimiter(0.0, 1, clock=ManualClock(1000.0))
    assert not limiter.enabled
    assert all(limiter.check("k") == 0.0 for _ in range(1000))


def test_ratelimit_bounded_number_of_buckets() -> None:
    clock = ManualClock(1000.0)
    limiter = RateLimiter(1.0, 1, max_keys=2, clock=clock)
    for key in ("a", "b", "c"):
        limiter.check(key)
    assert list(limiter._buckets) == ["b", "c"]


def test_ratelimit_pending_does_not_count() -> None:
    clock = ManualClock(1000.0)
    limiter = RateLimiter(1.0, 2, clock=clock)
    assert limiter.pending("k") == 0.0
    limiter.check("k")
    assert limiter.pending("k") == 0.0
    limiter.check("k")
    assert limiter.pending("k") == pytest.approx(1.0)
    assert limiter.pending("k") == pytest.approx(1.0)
    clock.now += 1
    assert limiter.pending("k") == 0.0


def test_ratelimit_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [RateLimiter.retry_after(w) for w in (0.01, 1.0, 1.2, 59.9)] == ["1", "1", "2", "60"]


def test_ratelimit_bucket_validates() -> None:
    with pytest.raises(ValueError, match="rate must be > 0 and burst >= 1; got rate=0, burst=1"):
        TokenBucket(0, 1, 0.0)

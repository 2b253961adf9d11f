"""Token-bucket rate limits, per key (API key, client address), with an injectable clock.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per
second; a request takes one token or is refused with the seconds until one is
there (the ``Retry-After`` of a 429). The number of buckets is bounded: the
least recently used ones are dropped first, so a flood of distinct addresses
cannot grow memory without limit (a dropped bucket comes back full, which only
errs towards letting a request through).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RateLimiter", "TokenBucket"]


class TokenBucket:
    """One bucket.

    Args:
        rate: Tokens added per second (> 0).
        burst: Most tokens held (>= 1); a new bucket is full.
        now: The current time, seconds, from the limiter's clock.
    """

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            msg = f"rate must be > 0 and burst >= 1; got rate={rate}, burst={burst}"
            raise ValueError(msg)
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens if there are; returns 0, or the seconds until there will be."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class RateLimiter:
    """A token bucket per key.

    Args:
        rate: Requests per second per key; 0 disables the limit.
        burst: Requests one key may make at once.
        max_keys: Most buckets kept (least recently used dropped first).
        clock: Monotonic seconds; default :func:`time.monotonic` (tests inject theirs).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether the limit applies."""
        return self.rate > 0

    def check(self, key: str) -> float:
        """Count one request of ``key``: 0 when allowed, else seconds to wait."""
        if not self.enabled:
            return 0.0
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
            return bucket.take(now)

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """A ``Retry-After`` value (whole seconds, at least 1) for a wait."""
        return str(max(1, math.ceil(wait_s)))

    def pending(self, key: str) -> float:
        """Seconds until ``key`` may make a request, without counting one (0: it may now)."""
        if not self.enabled:
            return 0.0
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                return 0.0
            now = self.clock()
            tokens = min(bucket.burst, bucket.tokens + max(0.0, now - bucket.updated) * bucket.rate)
            return 0.0 if tokens >= 1 else (1 - tokens) / bucket.rate

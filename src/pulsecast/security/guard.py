"""Who may call the HTTP ingest, and how often: API keys, roles and rate limits.

:class:`IngestGuard` is framework-free: it looks at a request's headers and
client address and answers None (let it through) or a :class:`Refusal` (401
without a valid key, 403 without the role, 429 with ``Retry-After`` over a
rate limit). Order: the per-address limit first (cheap, and it bounds what an
anonymous client costs), then a stricter per-address budget of failed key
checks (a key check costs a scrypt), then the key and its role, then the
per-key limit. Refusals go to the audit trail through a
:class:`~pulsecast.security.audit.RefusalAuditor`, so a flood of them writes
a bounded number of records. The client address is the TCP peer's: headers
such as ``X-Forwarded-For`` are not trusted. The dashboard's login
(:mod:`pulsecast.security.sessions`) checks keys through a guard of its own,
for the ``read`` role.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pulsecast.security._files import security_dir
from pulsecast.security.apikeys import ApiKey, ApiKeyStore, Role
from pulsecast.security.audit import RefusalAuditor, audit_log
from pulsecast.security.ratelimit import RateLimiter

if TYPE_CHECKING:
    from pulsecast.config import Settings

__all__ = ["IngestGuard", "Refusal"]

#: Failed key checks one address may make: a burst of 10, then one per second.
_FAILURE_RATE_PER_S = 1.0
_FAILURE_BURST = 10


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: status, message for the client, extra headers."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The API key in ``Authorization: Bearer <key>`` or ``X-API-Key``, if any."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class IngestGuard:
    """API keys and rate limits of one endpoint.

    Args:
        store: The API keys.
        per_key: Rate limit per API key id.
        per_address: Rate limit per client address.
        auditor: Where refusals are recorded (None: not recorded).
        clock: Monotonic seconds for the failure budget (tests inject theirs).
    """

    def __init__(
        self,
        store: ApiKeyStore,
        *,
        per_key: RateLimiter,
        per_address: RateLimiter,
        auditor: RefusalAuditor | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.per_key = per_key
        self.per_address = per_address
        self.failures = RateLimiter(
            _FAILURE_RATE_PER_S, _FAILURE_BURST, clock=clock or per_address.clock
        )
        self.auditor = auditor
        # One check at a time: scrypt checks use one core at most, state stays consistent.
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestGuard | None:
        """The guard ``security`` settings ask for; None when security is off."""
        if not settings.security.enabled:
            return None
        return cls.build(settings)

    @classmethod
    def build(
        cls, settings: Settings, *, name: str = "ingest", clock: Callable[[], float] | None = None
    ) -> IngestGuard:
        """A guard with the ``security`` settings' limits, whether security is on or not.

        Args:
            settings: The platform's settings (``security.*``).
            name: The endpoint, the target of the audit trail's per-minute summaries.
            clock: Monotonic seconds for the rate limits (tests inject theirs).
        """
        sec = settings.security
        auditor = None
        if sec.audit:
            auditor = RefusalAuditor(
                audit_log(settings), per_minute=sec.audit_refusals_per_minute, name=name
            )
        tick = clock or time.monotonic
        return cls(
            ApiKeyStore(security_dir(settings) / "apikeys.json"),
            per_key=RateLimiter(sec.key_rate_per_s, sec.key_burst, clock=tick),
            per_address=RateLimiter(sec.address_rate_per_s, sec.address_burst, clock=tick),
            auditor=auditor,
        )

    def check(
        self, headers: Mapping[str, str], address: str, role: Role, *, target: str
    ) -> Refusal | None:
        """None when the request may proceed, else why not (recorded in the audit trail).

        Blocking (a key seen for the first time costs one scrypt): call it from a
        worker thread in async code.
        """
        answer = self.admit(headers, address, role, target=target)
        return answer if isinstance(answer, Refusal) else None

    def admit(
        self,
        headers: Mapping[str, str],
        address: str,
        role: Role,
        *,
        target: str,
        action: str = "http.refused",
    ) -> ApiKey | Refusal:
        """The key the request presents, when it may proceed; else why not (audited).

        Like :meth:`check`, blocking. ``action`` names a refusal in the audit trail
        (the dashboard's login records ``dashboard.login.failed``).
        """
        with self._lock:
            answer, actor = self._decide(headers, address, role)
            if self.auditor is not None:
                if isinstance(answer, Refusal):
                    self.auditor.refused(
                        answer.status,
                        actor=actor,
                        target=target,
                        reason=answer.message,
                        action=action,
                    )
                else:
                    self.auditor.tick()
            return answer

    def refuse(self, refusal: Refusal, *, address: str, target: str) -> Refusal:
        """Record a refusal decided elsewhere (a request with no key and no session); returns it."""
        with self._lock:
            if self.auditor is not None:
                self.auditor.refused(
                    refusal.status,
                    actor=f"address:{address}",
                    target=target,
                    reason=refusal.message,
                )
        return refusal

    def key(self, key_id: str) -> ApiKey | None:
        """The record of ``key_id`` as the store has it now (revoked or not), or None."""
        with self._lock:
            return self.store.get(key_id)

    def _decide(
        self, headers: Mapping[str, str], address: str, role: Role
    ) -> tuple[ApiKey | Refusal, str]:
        actor = f"address:{address}"
        wait = self.per_address.check(address)
        if wait:
            return self._too_many(wait, "rate limit of this client address exceeded"), actor
        presented = presented_key(headers)
        if presented is None:
            return Refusal(
                401,
                "API key required (Authorization: Bearer <key> or X-API-Key)",
                {"WWW-Authenticate": "Bearer"},
            ), actor
        wait = self.failures.pending(address)
        if wait:  # refused before the costly check
            return self._too_many(wait, "too many failed API key checks"), actor
        key = self.store.verify(presented)
        if key is None:
            wait = self.failures.check(address)
            if wait:
                return self._too_many(wait, "too many failed API key checks"), actor
            return Refusal(401, "invalid or revoked API key", {"WWW-Authenticate": "Bearer"}), actor
        actor = f"apikey:{key.key_id}"
        if not key.allows(role):
            return Refusal(403, f"API key {key.key_id} lacks the {role} role"), actor
        wait = self.per_key.check(key.key_id)
        if wait:
            return self._too_many(wait, "rate limit of this API key exceeded"), actor
        return key, actor

    @staticmethod
    def _too_many(wait_s: float, message: str) -> Refusal:
        return Refusal(429, message, {"Retry-After": RateLimiter.retry_after(wait_s)})

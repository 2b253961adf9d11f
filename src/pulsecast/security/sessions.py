"""Logins to the dashboard: an API key with the ``read`` role, traded for a session.

:class:`DashboardAuth` is framework-free, like the ingest's
:class:`~pulsecast.security.guard.IngestGuard`, which it uses to check keys: the
same hashed store, the same per-address limit and budget of failed key checks
(10 at once, then one a second: a 429 with ``Retry-After`` past it), the same
bounded audit of refusals. A login with a key that may read opens a
:class:`Session`: a random token of 256 bits, which only the browser's cookie
holds; the server keeps its SHA-256, the key's id and the expiry, in memory
(a restart of the dashboard ends every session). No server secret is needed,
so none is stored anywhere. Every request of a session looks the key up again
(cheap while ``apikeys.json`` is unchanged), so revoking the key ends the
session from its next request. Scripts skip the session and send the key on
every request (``Authorization: Bearer``).

Recorded in the audit trail: ``dashboard.login`` and ``dashboard.logout`` (actor
``apikey:<id>``), ``dashboard.login.failed`` and ``http.refused`` (within the
per-minute budget of refusals). Never the key or the token.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pulsecast.security.apikeys import ApiKey
from pulsecast.security.audit import AuditLog, audit_log
from pulsecast.security.errors import AuditError
from pulsecast.security.guard import IngestGuard, Refusal, presented_key

if TYPE_CHECKING:
    from pulsecast.config import Settings

__all__ = ["SESSION_COOKIE", "DashboardAuth", "Session", "SessionStore"]

log = logging.getLogger(__name__)

#: The session cookie's name.
SESSION_COOKIE = "pulsecast_session"
_LOGIN_REQUIRED = "login required: log in at /login, or send Authorization: Bearer <key>"
_EXPIRED = "session expired or ended; log in again"


@dataclass(frozen=True)
class Session:
    """One login: whose key it is and when it ends (monotonic seconds)."""

    key_id: str
    expires: float


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class SessionStore:
    """Open sessions, in memory, by the SHA-256 of their token.

    Args:
        max_age_s: Seconds a session lasts from its login.
        max_sessions: Most sessions kept; past it the oldest ends first.
        clock: Monotonic seconds (tests inject theirs).
    """

    def __init__(
        self,
        *,
        max_age_s: float,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age_s <= 0 or max_sessions < 1:
            msg = f"max_age_s must be > 0 and max_sessions >= 1; got {max_age_s}, {max_sessions}"
            raise ValueError(msg)
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, key_id: str) -> str:
        """Open a session for ``key_id``; returns its token (the cookie's value)."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock()
            for digest in [d for d, s in self._sessions.items() if s.expires <= now]:
                del self._sessions[digest]
            self._sessions[_digest(token)] = Session(key_id, now + self.max_age_s)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return token

    def get(self, token: str) -> Session | None:
        """The open session of ``token``; None when unknown or expired (then forgotten)."""
        digest = _digest(token)
        with self._lock:
            session = self._sessions.get(digest)
            if session is not None and session.expires <= self.clock():
                del self._sessions[digest]
                return None
            return session

    def close(self, token: str) -> Session | None:
        """End the session of ``token`` (idempotent); returns it if it was open."""
        with self._lock:
            return self._sessions.pop(_digest(token), None)


class DashboardAuth:
    """Who may read the dashboard: logins, sessions and keys sent by scripts.

    Args:
        guard: Checks keys (role ``read``), limits and audits refusals.
        sessions: The open sessions.
        audit: Where logins and logouts are recorded (None: not recorded).
    """

    def __init__(
        self, guard: IngestGuard, sessions: SessionStore, *, audit: AuditLog | None = None
    ) -> None:
        self.guard = guard
        self.sessions = sessions
        self.audit = audit

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Callable[[], float] | None = None
    ) -> DashboardAuth | None:
        """The login ``dashboard.auth`` asks for (on in secure mode); None when it is off.

        Args:
            settings: The platform's settings (``dashboard.*``, ``security.*``).
            clock: Monotonic seconds for sessions and rate limits (tests inject theirs).
        """
        if not settings.dashboard.auth:
            return None
        guard = IngestGuard.build(settings, name="dashboard", clock=clock)
        sessions = SessionStore(
            max_age_s=settings.dashboard.session_max_age_s, clock=clock or time.monotonic
        )
        audit = audit_log(settings) if settings.security.audit else None
        return cls(guard, sessions, audit=audit)

    @property
    def max_age_s(self) -> float:
        """Seconds a session lasts (the cookie's ``Max-Age``)."""
        return self.sessions.max_age_s

    def login(self, key: str, address: str) -> tuple[str, ApiKey] | Refusal:
        """Check ``key`` for the ``read`` role; the new session's token and the key, or why not.

        Blocking (one scrypt for a key not seen before): call it from a worker
        thread in async code. A refusal is recorded as ``dashboard.login.failed``;
        a success as ``dashboard.login``.
        """
        headers = {"authorization": f"Bearer {key}"} if key.strip() else {}
        answer = self.guard.admit(
            headers, address, "read", target="dashboard", action="dashboard.login.failed"
        )
        if isinstance(answer, Refusal):
            return answer
        token = self.sessions.open(answer.key_id)
        self._record(
            "dashboard.login",
            answer.key_id,
            {"address": address, "roles": list(answer.roles), "max_age_s": self.max_age_s},
        )
        log.info("dashboard login with API key %s from %s", answer.key_id, address)
        return token, answer

    def authenticate(
        self, token: str | None, headers: Mapping[str, str], address: str, *, target: str
    ) -> ApiKey | Refusal:
        """Who makes a request: a session's key, or a key in its headers; else why not.

        Blocking like :meth:`login`. Refusals are recorded (``http.refused``).
        """
        if token:
            session = self.sessions.get(token)
            if session is not None:
                key = self.guard.key(session.key_id)
                if key is not None and key.active and key.allows("read"):
                    return key
                self.sessions.close(token)  # the key was revoked since the login
        if presented_key(headers) is not None:
            return self.guard.admit(headers, address, "read", target=target)
        refusal = Refusal(
            401, _EXPIRED if token else _LOGIN_REQUIRED, {"WWW-Authenticate": "Bearer"}
        )
        return self.guard.refuse(refusal, address=address, target=target)

    def logout(self, token: str | None, address: str) -> bool:
        """End the session of ``token``; whether one was open (then recorded)."""
        session = self.sessions.close(token) if token else None
        if session is None:
            return False
        self._record("dashboard.logout", session.key_id, {"address": address})
        return True

    def _record(self, action: str, key_id: str, details: dict[str, object]) -> None:
        if self.audit is None:
            return
        try:
            self.audit.append(action, "dashboard", actor=f"apikey:{key_id}", details=details)
        except (AuditError, OSError) as exc:
            log.error("cannot record %s in the audit log: %s", action, exc)

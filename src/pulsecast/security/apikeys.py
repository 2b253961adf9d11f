"""API keys of the HTTP endpoints: created once, stored hashed, checked in constant time.

A key reads ``pck_<id>_<secret>``: the id (public, 8 hex digits) finds the
record, the secret (256 random bits) proves possession. Only a salted scrypt
hash of the secret is stored (``<security dir>/apikeys.json``, ``0600``); the
key itself is shown once, when it is created. Each key has roles: ``ingest``
(send events), ``read`` (query), ``admin`` (everything).

Checking a key costs one scrypt (tens of ms); a running endpoint remembers the
keys it has already verified, by a SHA-256 of the presented key, until the
store file changes (a revocation by ``pulsecast security apikey revoke`` in
another process is seen on the next request).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from pulsecast.security._files import write_private
from pulsecast.security.errors import SecurityError, UnknownApiKeyError

__all__ = ["ROLES", "ApiKey", "ApiKeyStore", "Role"]

log = logging.getLogger(__name__)

Role = Literal["ingest", "read", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

_PREFIX = "pck"
_KEY_RE = re.compile(r"^pck_([0-9a-f]{8})_([A-Za-z0-9_-]{20,100})$")
#: scrypt cost: n=2**14, r=8 uses 16 MiB and tens of milliseconds per check.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class ApiKey:
    """An API key's record (never its secret)."""

    key_id: str
    name: str
    roles: tuple[Role, ...]
    created: str
    revoked: str | None = None

    @property
    def active(self) -> bool:
        """Whether the key is not revoked."""
        return self.revoked is None

    def allows(self, role: Role) -> bool:
        """Whether the key has ``role`` (``admin`` has every role)."""
        return role in self.roles or "admin" in self.roles

    def as_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready mapping."""
        return {
            "id": self.key_id,
            "name": self.name,
            "roles": list(self.roles),
            "created": self.created,
            "revoked": self.revoked,
        }


def _hash(secret: str, salt: bytes, cost: dict[str, int]) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, dklen=32, maxmem=64 * 1024 * 1024, **cost)


class ApiKeyStore:
    """The API keys in one JSON file.

    Args:
        path: The store file (created on the first key).
        cost: scrypt parameters (``n``, ``r``, ``p``); tests lower them.
    """

    def __init__(self, path: Path, *, cost: dict[str, int] | None = None) -> None:
        self.path = path
        self.cost = dict(cost or _SCRYPT)
        self._stamp: tuple[int, int] | None = None
        self._records: dict[str, dict[str, Any]] = {}
        self._verified: dict[bytes, str] = {}

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data: dict[str, dict[str, Any]] = json.loads(self.path.read_text())["keys"]
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError) as exc:
            msg = f"{self.path}: unreadable API key store: {exc}"
            raise SecurityError(msg) from exc
        return data

    def _write(self, records: dict[str, dict[str, Any]]) -> None:
        write_private(self.path, json.dumps({"keys": records}, indent=2, sort_keys=True).encode())

    def _fresh(self) -> dict[str, dict[str, Any]]:
        """The records, re-read when the file changed since the last look."""
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp or stamp is None:
            self._records = self._read()
            self._verified.clear()
            self._stamp = stamp
        return self._records

    @staticmethod
    def _record(key_id: str, entry: dict[str, Any]) -> ApiKey:
        return ApiKey(
            key_id=key_id,
            name=entry["name"],
            roles=tuple(entry["roles"]),
            created=entry["created"],
            revoked=entry.get("revoked"),
        )

    def create(self, name: str, roles: list[Role]) -> tuple[ApiKey, str]:
        """Create a key.

        Returns:
            The record and the key itself: show it once, it is not stored.

        Raises:
            ValueError: No role, or a role that is not one of :data:`ROLES`.
        """
        bad = [r for r in roles if r not in ROLES]
        if not roles or bad:
            msg = f"roles must be some of {', '.join(ROLES)}; got {', '.join(roles) or 'none'}"
            raise ValueError(msg)
        records = self._read()
        key_id = secrets.token_hex(4)
        while key_id in records:
            key_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        salt = os.urandom(16)
        records[key_id] = {
            "name": name,
            "roles": sorted(set(roles), key=ROLES.index),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "revoked": None,
            "salt": salt.hex(),
            "hash": _hash(secret, salt, self.cost).hex(),
            "cost": self.cost,
        }
        self._write(records)
        log.info("created API key %s (%s)", key_id, name)
        return self._record(key_id, records[key_id]), f"{_PREFIX}_{key_id}_{secret}"

    def keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        records = self._read()
        keys = [self._record(k, e) for k, e in records.items()]
        return sorted(keys, key=lambda k: (k.created, k.key_id))

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (idempotent); it is refused from the next request on.

        Raises:
            UnknownApiKeyError: No key has this id.
        """
        records = self._read()
        entry = records.get(key_id)
        if entry is None:
            raise UnknownApiKeyError(key_id)
        if entry.get("revoked") is None:
            entry["revoked"] = datetime.now(UTC).isoformat(timespec="seconds")
            self._write(records)
            log.info("revoked API key %s", key_id)
        return self._record(key_id, entry)

    def get(self, key_id: str) -> ApiKey | None:
        """The record of ``key_id`` (revoked or not), or None; cheap while the file is unchanged.

        A running endpoint asks on every request of a session, so a revocation
        made in another process ends the session from its next request.
        """
        entry = self._fresh().get(key_id)
        return None if entry is None else self._record(key_id, entry)

    def has_active(self) -> bool:
        """Whether at least one key is not revoked."""
        return any(k.active for k in self.keys())

    def verify(self, presented: str) -> ApiKey | None:
        """The active key ``presented`` is, or None (unknown, malformed, wrong or revoked)."""
        match = _KEY_RE.match(presented)
        if match is None:
            return None
        key_id, secret = match.groups()
        records = self._fresh()
        entry = records.get(key_id)
        if entry is None or entry.get("revoked") is not None:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        if self._verified.get(digest) == key_id:
            return self._record(key_id, entry)
        expected = bytes.fromhex(entry["hash"])
        actual = _hash(secret, bytes.fromhex(entry["salt"]), entry.get("cost", _SCRYPT))
        if not hmac.compare_digest(expected, actual):
            return None
        self._verified[digest] = key_id
        return self._record(key_id, entry)

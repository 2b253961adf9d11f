"""``pulsecast security check``: what is protected now, and what is not.

Reports findings by area (certificates, keystore, API keys, rate limits, audit
trail, and the network hops and lake that are not protected yet) with a
status: ``ok``, ``warn``, ``off`` (not protected, by choice or not built yet)
or ``fail`` (something is wrong). Reads files only: it creates nothing.
"""

from __future__ import annotations

import json
import stat
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pulsecast.security._files import security_dir
from pulsecast.security.apikeys import ApiKeyStore
from pulsecast.security.audit import audit_log
from pulsecast.security.certs import certificate_status
from pulsecast.security.errors import KeystoreError, SecurityError
from pulsecast.security.keys import decode_master_key, key_fingerprint

if TYPE_CHECKING:
    from pulsecast.config import Settings

__all__ = ["Finding", "Status", "security_check"]

Status = Literal["ok", "warn", "off", "fail"]


@dataclass(frozen=True)
class Finding:
    """One line of the report."""

    area: str
    status: Status
    text: str

    def as_dict(self) -> dict[str, str]:
        """The finding as a JSON-ready mapping."""
        return asdict(self)


def _loose(paths: list[Path]) -> list[Path]:
    """Those of ``paths`` that others than their owner may read or write."""
    return [p for p in paths if p.exists() and stat.S_IMODE(p.stat().st_mode) & 0o077]


def _certificates(settings: Settings, root: Path, now: datetime) -> list[Finding]:
    infos = certificate_status(root)
    if not infos:
        return [Finding("certificates", "off", "none yet: run `pulsecast security init`")]
    findings: list[Finding] = []
    renew = settings.security.renew_before_days
    for info in infos:
        left = info.days_left(now)
        label = f"{info.kind} {info.name}"
        if left <= 0:
            findings.append(Finding("certificates", "fail", f"{label} expired; run rotate"))
        elif not info.issued_by_ca:
            findings.append(Finding("certificates", "fail", f"{label} not issued by the CA"))
        elif left < renew:
            findings.append(Finding("certificates", "warn", f"{label} expires in {left:.0f} days"))
    if not findings:
        soonest = min(infos, key=lambda i: i.not_after)
        findings.append(
            Finding(
                "certificates",
                "ok",
                f"{len(infos)} present (CA + {len(infos) - 1} leaves), first expiry "
                f"{soonest.kind} {soonest.name} in {soonest.days_left(now):.0f} days",
            )
        )
    keys = sorted(root.glob("ca/ca.key")) + sorted(root.glob("*s/*/key.pem"))
    keys += sorted(root.glob("*s/*/keystore.*"))
    loose = _loose(keys)
    if loose:
        findings.append(
            Finding("certificates", "fail", f"readable by others: {', '.join(map(str, loose))}")
        )
    return findings


def _keystore(settings: Settings, root: Path) -> list[Finding]:
    folder = root / "keys"
    secret = settings.security.master_key
    master_file = folder / "master.key"
    findings: list[Finding] = []
    try:
        if secret is not None:
            source, master_id = (
                "environment",
                key_fingerprint(decode_master_key(secret.get_secret_value())),
            )
        elif master_file.is_file():
            source, master_id = (
                str(master_file),
                key_fingerprint(decode_master_key(master_file.read_text())),
            )
        else:
            return [Finding("keystore", "off", "no master key yet: run `pulsecast security init`")]
    except KeystoreError as exc:
        return [Finding("keystore", "fail", str(exc))]
    stored = None
    count = 0
    store = folder / "keystore.json"
    if store.is_file():
        try:
            data = json.loads(store.read_text())
            stored, count = data.get("master_id"), len(data.get("keys", {}))
        except (OSError, ValueError) as exc:
            return [Finding("keystore", "fail", f"{store}: unreadable: {exc}")]
    if stored is not None and stored != master_id:
        findings.append(
            Finding("keystore", "fail", f"data keys were wrapped by another master key ({stored})")
        )
    else:
        findings.append(
            Finding("keystore", "ok", f"master key from {source}; {count} data key(s) wrapped")
        )
    loose = _loose([master_file, store])
    if loose:
        findings.append(
            Finding("keystore", "fail", f"readable by others: {', '.join(map(str, loose))}")
        )
    return findings


def _http(settings: Settings, root: Path) -> list[Finding]:
    sec = settings.security
    if not sec.enabled:
        return [
            Finding("api keys", "off", "security.enabled is false: HTTP ingest takes anyone"),
            Finding("rate limits", "off", "security.enabled is false: no rate limits"),
        ]
    try:
        keys = ApiKeyStore(root / "apikeys.json").keys()
    except SecurityError as exc:
        return [Finding("api keys", "fail", str(exc))]
    active = [k for k in keys if k.active]
    ingest = [k for k in active if k.allows("ingest")]
    status: Status = "ok" if ingest else "warn"
    text = (
        f"required for ingest POSTs; {len(active)} active key(s), {len(ingest)} may ingest"
        if ingest
        else "required for ingest POSTs, but no active key may ingest: "
        "`pulsecast security apikey create NAME --role ingest`"
    )
    limits = [
        f"per key {sec.key_rate_per_s:g}/s (burst {sec.key_burst})"
        if sec.key_rate_per_s
        else "per key: none",
        f"per address {sec.address_rate_per_s:g}/s (burst {sec.address_burst})"
        if sec.address_rate_per_s
        else "per address: none",
    ]
    return [
        Finding("api keys", status, text),
        Finding("rate limits", "ok", f"HTTP ingest: {', '.join(limits)}; 429 with Retry-After"),
    ]


def _audit(settings: Settings) -> Finding:
    if not settings.security.audit:
        return Finding("audit trail", "off", "security.audit is false: nothing is recorded")
    result = audit_log(settings).verify()
    if not result.ok:
        line, problem = result.problems[0]
        return Finding("audit trail", "fail", f"chain broken at line {line}: {problem}")
    return Finding("audit trail", "ok", f"{result.records} record(s), chain intact")


def security_check(settings: Settings, *, now: datetime | None = None) -> list[Finding]:
    """Every finding, in report order."""
    root = security_dir(settings)
    now = now or datetime.now(UTC)
    return [
        *_certificates(settings, root, now),
        *_keystore(settings, root),
        *_http(settings, root),
        _audit(settings),
        # Built in a later step of issue 7; stated so nobody assumes otherwise.
        Finding("kafka", "off", "plaintext listener, no authentication, no ACLs (not yet)"),
        Finding("postgresql", "off", "no TLS, no per-role passwords (not yet)"),
        Finding("http", "off", "HTTP ingest and dashboard serve plain HTTP, no TLS (not yet)"),
        Finding("lake", "off", "files on disk are not encrypted (not yet)"),
    ]

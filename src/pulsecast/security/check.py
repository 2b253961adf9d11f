"""``pulsecast security check``: what is protected now, and what is not.

Reports findings by area (certificates, keystore, API keys, rate limits, the
dashboard's login, audit trail, Kafka, PostgreSQL, HTTPS, the lake at rest and, when
the lake or the checkpoints are on it or it was started, the local HDFS) with a
status: ``ok``, ``warn``, ``off`` (not protected, by choice or not built yet)
or ``fail`` (something is wrong). The audit trail is ``ok`` when its chain is
intact and was checked with the audit key (or is empty), ``warn`` when intact
but unkeyed. Reads files only: it creates nothing.
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
from pulsecast.security.kafka_acl import PRINCIPALS, kafka_security_dir, password_file
from pulsecast.security.keys import decode_master_key, key_fingerprint, keystore_for

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
        if settings.security.kms == "aws":
            # Read-only: DescribeKey, and no data key is created or opened.
            source = "AWS KMS"
            master_id = keystore_for(settings, create=False).master_id
        elif secret is not None:
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
        where = f"in AWS KMS {master_id}" if source == "AWS KMS" else f"from {source}"
        findings.append(
            Finding("keystore", "ok", f"master key {where}; {count} data key(s) wrapped")
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


def _dashboard(settings: Settings, root: Path) -> Finding:
    """Whether the dashboard asks for a login, and whether anyone can log in."""
    dash = settings.dashboard
    if not dash.auth:
        return Finding("dashboard", "off", "no login: whoever reaches it reads it (dashboard.auth)")
    try:
        readers = [
            k for k in ApiKeyStore(root / "apikeys.json").keys() if k.active and k.allows("read")
        ]
    except SecurityError as exc:
        return Finding("dashboard", "fail", str(exc))
    if not dash.tls:
        return Finding(
            "dashboard",
            "warn",
            "login required, but over plain HTTP: keys and session cookies cross the network "
            "in clear (dashboard.tls)",
        )
    if not readers:
        return Finding(
            "dashboard",
            "warn",
            "login required, but no active key may read: "
            "`pulsecast security apikey create NAME --role read`",
        )
    hours = dash.session_max_age_s / 3600
    return Finding(
        "dashboard",
        "ok",
        f"login required (API keys with the read role: {len(readers)} active); sessions of "
        f"{hours:g} h in HttpOnly, Secure, SameSite=Strict cookies; failed logins limited per "
        "address; 401 for the API without a session or key",
    )


def _properties(path: Path) -> dict[str, str]:
    """A Java properties file as a mapping (comments and blank lines skipped)."""
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}


def _kafka(settings: Settings) -> list[Finding]:
    """SASL_SSL, ACLs and client certificates of the local broker, from its server.properties."""
    if not settings.kafka.is_local:
        return [
            Finding(
                "kafka",
                "warn" if settings.security.enabled else "off",
                "external cluster: its listeners and ACLs are not checked here",
            )
        ]
    if not settings.security.enabled:
        return [Finding("kafka", "off", "security.enabled is false: plaintext, no auth, no ACLs")]
    server = settings.data_dir / "kafka" / "server.properties"
    if not server.is_file():
        return [Finding("kafka", "warn", "SASL_SSL configured, broker not started yet")]
    props = _properties(server)
    listeners = props.get("listeners", "")
    secure = (
        f"SASL_SSL://{settings.kafka.host}:{settings.kafka.port}" in listeners
        and "PLAINTEXT://" not in listeners
        and props.get("listener.security.protocol.map", "").startswith("CONTROLLER:SSL")
        and props.get("authorizer.class.name", "").endswith("StandardAuthorizer")
        and props.get("allow.everyone.if.no.acl.found") == "false"
    )
    if not secure:
        return [
            Finding(
                "kafka",
                "fail",
                f"broker last started without SASL_SSL and ACLs ({server}); restart it",
            )
        ]
    required = props.get("listener.name.sasl_ssl.ssl.client.auth") == "required"
    certs = (
        "client certificates from the local CA required" if required else "no client certificates"
    )
    findings = [
        Finding(
            "kafka",
            "ok",
            f"SASL_SSL (SCRAM-SHA-512) on port {settings.kafka.port}, {certs}, no plaintext "
            "listener; controller mutual TLS; StandardAuthorizer, deny unless an ACL allows",
        )
    ]
    wanted = settings.security.kafka_client_certs
    if wanted != required:
        said = "on" if wanted else "off"
        did = "without" if wanted else "with"
        findings.append(
            Finding(
                "kafka",
                "warn",
                f"security.kafka_client_certs is {said} but the broker last started {did} "
                "requiring client certificates; restart it",
            )
        )
    files = [password_file(settings, p) for p in PRINCIPALS]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        findings.append(Finding("kafka", "fail", f"no password for {', '.join(missing)}"))
    loose = _loose([*files, kafka_security_dir(settings) / "broker.properties"])
    if loose:
        findings.append(
            Finding("kafka", "fail", f"readable by others: {', '.join(map(str, loose))}")
        )
    return findings


def _audit(settings: Settings) -> Finding:
    if not settings.security.audit:
        return Finding("audit trail", "off", "security.audit is false: nothing is recorded")
    result = audit_log(settings).verify()
    if not result.ok:
        line, problem = result.problems[0]
        return Finding("audit trail", "fail", f"chain broken at line {line}: {problem}")
    # An unkeyed chain can be recomputed by whoever can write the files.
    status: Status = "ok" if result.keyed or not result.records else "warn"
    return Finding("audit trail", status, result.summary)


def security_check(settings: Settings, *, now: datetime | None = None) -> list[Finding]:
    """Every finding, in report order."""
    root = security_dir(settings)
    now = now or datetime.now(UTC)
    return [
        *_certificates(settings, root, now),
        *_keystore(settings, root),
        *_http(settings, root),
        _dashboard(settings, root),
        _audit(settings),
        *_kafka(settings),
        *_postgres(settings),
        _https(settings),
        _lake(settings),
        *_hdfs(settings),
    ]


def _lake(settings: Settings) -> Finding:
    from pulsecast.security.lake_crypto import lake_encrypted

    if not lake_encrypted(settings):
        return Finding("lake", "off", "files on disk are not encrypted (security.encrypt_lake)")
    return Finding(
        "lake",
        "warn",
        "every table's data files encrypted (Parquet modular encryption, keystore key "
        "'lake'); the Delta logs (file names, partition values, row counts, bronze and "
        "silver's batch_id min/max) are not",
    )


def _postgres(settings: Settings) -> list[Finding]:
    from pulsecast.services.errors import ServiceError
    from pulsecast.services.postgres import server_bin_dir
    from pulsecast.warehouse.access import ROLES, password_file

    if not settings.security.enabled:
        return [Finding("postgresql", "off", "security.enabled is false: no TLS, one superuser")]
    if not settings.postgres.is_local:
        text = f"external server: clients use sslmode={settings.security.postgres_sslmode}"
        return [Finding("postgresql", "warn", text)]
    try:
        server_bin_dir(settings)
    except ServiceError as exc:
        return [Finding("postgresql", "warn", str(exc))]
    files = [password_file(settings, role) for role in ROLES]
    if loose := _loose(files):
        return [Finding("postgresql", "fail", f"readable by others: {', '.join(map(str, loose))}")]
    if missing := [f.stem for f in files if not f.is_file()]:
        text = f"TLS configured, no password yet for {', '.join(missing)}: server not started"
        return [Finding("postgresql", "warn", text)]
    text = (
        f"TLS only (hostssl, SCRAM-SHA-256), clients sslmode={settings.security.postgres_sslmode};"
        " roles admin, writer, analyst with their own passwords"
    )
    return [Finding("postgresql", "ok", text)]


def _https(settings: Settings) -> Finding:
    from pulsecast.security.tls import server_files

    servers = [name for name in ("ingest", "dashboard") if getattr(settings, name).tls]
    if not servers:
        return Finding("http", "off", "HTTP ingest and dashboard serve plain HTTP")
    try:
        for name in servers:
            server_files(settings, name)
    except SecurityError as exc:
        return Finding("http", "fail", str(exc))
    text = f"HTTPS with the local CA's certificates: {', '.join(servers)}"
    if len(servers) < 2:
        return Finding("http", "warn", f"{text}; the other serves plain HTTP")
    return Finding("http", "ok", text)


def _hadoop_properties(path: Path) -> dict[str, str]:
    """A Hadoop ``*-site.xml`` as a mapping (empty when missing or unreadable)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()  # noqa: S314 (written by pulsecast's launcher)
    except (OSError, ET.ParseError):
        return {}
    return {p.findtext("name", ""): p.findtext("value", "") for p in root.iter("property")}


def _hdfs(settings: Settings) -> list[Finding]:
    """Wire encryption, HTTPS and the lake's ACLs of the local HDFS, from its last config."""
    from pulsecast.services.hdfs import CIPHER_SUITE, READER_ZONES, HdfsService

    hdfs = settings.hdfs
    uris = (settings.lake_uri, settings.checkpoint_uri)
    service = HdfsService(settings)
    site_file = service.conf_dir / "hdfs-site.xml"
    on_hdfs = [u for u in uris if u.startswith("hdfs://")]
    if not on_hdfs and not site_file.is_file():
        return []  # HDFS is neither used nor started: nothing to report
    if on_hdfs and not any(hdfs.serves(u) for u in on_hdfs):
        return [
            Finding(
                "hdfs",
                "warn" if settings.security.enabled else "off",
                "external HDFS: its wire encryption and permissions are not checked here",
            )
        ]
    if not settings.security.enabled:
        return [
            Finding(
                "hdfs",
                "off",
                "security.enabled is false: block data in plaintext, web UI over HTTP, "
                "the lake readable by every HDFS user",
            )
        ]
    if not site_file.is_file():
        return [Finding("hdfs", "warn", "secure mode configured, HDFS not started yet")]
    site = _hadoop_properties(site_file)
    core = _hadoop_properties(service.conf_dir / "core-site.xml")
    wanted = {
        "dfs.encrypt.data.transfer": "true",
        "dfs.block.access.token.enable": "true",
        "dfs.encrypt.data.transfer.cipher.suites": CIPHER_SUITE,
        "dfs.http.policy": "HTTPS_ONLY",
        "dfs.namenode.acls.enabled": "true",
        "dfs.permissions.enabled": "true",
    }
    missing = [k for k, v in wanted.items() if site.get(k) != v]
    if core.get("hadoop.http.authentication.simple.anonymous.allowed") != "false":
        missing.append("hadoop.http.authentication.simple.anonymous.allowed")
    if missing:
        text = f"last started without {', '.join(missing)} ({site_file}); restart it"
        return [Finding("hdfs", "fail", text)]
    findings = []
    loose = _loose([service.conf_dir / "ssl-server.xml"])
    if loose:
        text = f"readable by others: {', '.join(map(str, loose))}"
        findings.append(Finding("hdfs", "fail", text))
    readers = ", ".join(hdfs.readers) or "nobody"
    findings += [
        Finding(
            "hdfs",
            "ok",
            f"block data encrypted on the wire ({CIPHER_SUITE}, block access tokens); web UI, "
            "JMX and WebHDFS HTTPS only; lake and checkpoints owner-only (0700, default "
            f"ACLs), read-only for {readers} on {' and '.join(READER_ZONES)}",
        ),
        Finding(
            "hdfs",
            "warn",
            "RPC to the NameNode (paths, file names, permissions; no file data) is plaintext "
            "on loopback, and user names are claimed, not proven (simple auth, no Kerberos)",
        ),
    ]
    return findings

"""``pulsecast security`` and ``pulsecast audit``: the command line of :mod:`pulsecast.security`.

Registered in :mod:`pulsecast.cli`; each command calls one function of the
security modules and records what it did in the audit trail. Secrets (API
keys, a new master key) are printed once on stdout, never logged; everything
else goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from pulsecast.config import Settings
from pulsecast.errors import PulsecastError
from pulsecast.security._files import security_dir
from pulsecast.security.apikeys import ROLES, ApiKeyStore, Role
from pulsecast.security.audit import AUDIT_KEY, AuditKey, audit_log, record
from pulsecast.security.aws_kms import AwsKmsKeystore
from pulsecast.security.certs import rotate_certificates
from pulsecast.security.check import security_check
from pulsecast.security.errors import AuditError
from pulsecast.security.keys import LocalKeystore, keystore_for
from pulsecast.security.mode import initialise

__all__ = ["audit_app", "security_app"]

security_app = typer.Typer(
    help="Certificates, keys, API keys; `check` says what is protected.", no_args_is_help=True
)
apikey_app = typer.Typer(help="API keys of the HTTP ingest (stored hashed).", no_args_is_help=True)
security_app.add_typer(apikey_app, name="apikey")
audit_app = typer.Typer(
    help="The hash-chained audit trail of control actions.", no_args_is_help=True
)


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.find_root().obj
    return settings


def _say(text: str) -> None:
    typer.echo(text, err=True)


@security_app.command("init")
def security_init(ctx: typer.Context) -> None:
    """Create the local CA, certificates, the keystore and the audit key (idempotent)."""
    settings = _settings(ctx)
    root = security_dir(settings)
    # The audit key first, so that the security.init record is already keyed.
    store = keystore_for(settings)
    new_audit_key = AUDIT_KEY not in store.names()
    store.data_key(AUDIT_KEY)
    created, master_id = initialise(settings)
    if created:
        _say(f"created in {root}: {', '.join(created)}")
    else:
        _say(f"{root}: everything present, nothing created")
    _say(f"keystore: master key {master_id}")
    if new_audit_key:
        _say(f"created the keystore's {AUDIT_KEY!r} key: audit records are MACed from now on")
        earlier = sum(1 for r in audit_log(settings).records() if "mac" not in r)
        if earlier:
            _say(
                f"the {earlier} earlier audit record(s) carry no MAC: secure mode will not "
                "verify them; archive audit.jsonl and audit.jsonl.head to start a keyed log"
            )


@security_app.command("rotate")
def security_rotate(
    ctx: typer.Context,
    ca: Annotated[
        bool, typer.Option("--ca", help="Also issue a new CA (the old stays trusted).")
    ] = False,
    master_key: Annotated[
        bool,
        typer.Option(
            "--master-key",
            help="Rotate the keystore's master key instead of certificates (re-wraps data keys).",
        ),
    ] = False,
) -> None:
    """Re-issue every server and client certificate with new keys (or rotate the master key)."""
    settings = _settings(ctx)
    sec = settings.security
    root = security_dir(settings)
    if master_key:
        # Keep the audit key in memory first: with the master key in the environment,
        # this process's key goes stale by the rotation, and the record must stay keyed.
        with contextlib.suppress(AuditError):
            AuditKey(settings).get()
        store = keystore_for(settings)
        if isinstance(store, AwsKmsKeystore):
            _rewrap_in_kms(settings, store)
            return
        if not isinstance(store, LocalKeystore):
            msg = f"cannot rotate the master key of a {type(store).__name__}"
            raise PulsecastError(msg)
        old = store.master_id
        count = store.rotate_master()
        record(
            settings,
            "security.rotate_master_key",
            str(root / "keys"),
            details={"from": old, "to": store.master_id, "data_keys": count},
        )
        _say(f"master key {old} -> {store.master_id}; {count} data key(s) re-wrapped")
        if sec.master_key is not None:
            _say("set PULSECAST_SECURITY__MASTER_KEY to the new key printed on stdout")
            typer.echo(store.export_master())
        return
    rotated = rotate_certificates(
        root, ca=ca, ca_days=sec.ca_validity_days, leaf_days=sec.cert_validity_days
    )
    record(settings, "security.rotate", str(root), details={"rotated": rotated})
    _say(f"re-issued: {', '.join(rotated)}")


def _rewrap_in_kms(settings: Settings, store: AwsKmsKeystore) -> None:
    """AWS KMS rotates its keys itself; re-wrap only when the configured key id changed."""
    old, count = store.rewrap()
    if old == store.master_id:
        _say(
            f"master key {store.master_id} is in AWS KMS, which rotates it itself (turn on "
            "automatic key rotation on the key); nothing to re-wrap"
        )
        return
    record(
        settings,
        "security.rotate_master_key",
        str(store.folder),
        details={"from": old, "to": store.master_id, "data_keys": count},
    )
    _say(f"master key {old} -> {store.master_id} (AWS KMS); {count} data key(s) re-wrapped")


@security_app.command("check")
def security_check_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Findings as JSON.")] = False,
) -> None:
    """Report what is and is not protected now; exit 1 when something is wrong."""
    findings = security_check(_settings(ctx))
    if as_json:
        typer.echo(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        width = max(len(f.area) for f in findings)
        for f in findings:
            typer.echo(f"{f.status.upper():4}  {f.area:{width}}  {f.text}")
    if any(f.status == "fail" for f in findings):
        raise typer.Exit(1)


def _store(settings: Settings) -> ApiKeyStore:
    return ApiKeyStore(security_dir(settings) / "apikeys.json")


@apikey_app.command("create")
def apikey_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who or what uses the key (a label).")],
    role: Annotated[
        list[str],
        typer.Option("--role", "-r", help=f"Role, repeatable: {', '.join(ROLES)}."),
    ],
) -> None:
    """Create an API key; the key is printed once on stdout and not stored."""
    settings = _settings(ctx)
    bad = [r for r in role if r not in ROLES]
    if bad:
        msg = f"unknown role {bad[0]!r}; roles: {', '.join(ROLES)}"
        raise PulsecastError(msg)
    roles: list[Role] = [r for r in ROLES if r in role]
    key, secret = _store(settings).create(name, roles)
    record(settings, "security.apikey.create", key.key_id, details={"name": name, "roles": roles})
    _say(f"API key {key.key_id} ({name}, roles {', '.join(key.roles)}); shown once:")
    typer.echo(secret)


@apikey_app.command("list")
def apikey_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """List API keys (ids, names, roles; never the keys)."""
    keys = _store(_settings(ctx)).keys()
    if as_json:
        typer.echo(json.dumps([k.as_dict() for k in keys], indent=2))
        return
    if not keys:
        _say("no API keys")
    for k in keys:
        state = f"revoked {k.revoked}" if k.revoked else "active"
        typer.echo(f"{k.key_id}  {k.name}  {','.join(k.roles)}  created {k.created}  {state}")


@apikey_app.command("revoke")
def apikey_revoke(
    ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="The key's id.")]
) -> None:
    """Revoke an API key; running endpoints refuse it from their next request."""
    settings = _settings(ctx)
    key = _store(settings).revoke(key_id)
    record(settings, "security.apikey.revoke", key.key_id, details={"name": key.name})
    _say(f"revoked {key.key_id} ({key.name})")


_DURATION = re.compile(r"^(\d+)([smhd])$")


def _since(text: str) -> datetime:
    match = _DURATION.match(text)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
        return datetime.now(UTC) - timedelta(**{unit: int(match[1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        msg = f"--since {text!r}: expected a duration (30m, 2h, 7d) or an ISO date/time"
        raise PulsecastError(msg) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@audit_app.command("show")
def audit_show(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help="Only records from then on: 30m, 2h, 7d or an ISO time.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Records as JSON Lines.")] = False,
) -> None:
    """Show the audit trail, oldest first."""
    log = audit_log(_settings(ctx))
    start = _since(since) if since else None
    for rec in log.records():
        if start is not None and datetime.fromisoformat(rec["time"]) < start:
            continue
        if as_json:
            typer.echo(json.dumps(rec, sort_keys=True))
        else:
            details = json.dumps(rec["details"], sort_keys=True) if rec["details"] else ""
            typer.echo(
                f"{rec['seq']:>6} {rec['time']} {rec['actor']} {rec['action']} "
                f"{rec['target']} {details}".rstrip()
            )


@audit_app.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Check the hash chain and MACs; names the first line edited, deleted, inserted or reordered.

    Says whether the chain was checked with the audit key (keyed) or not
    (unkeyed, and which records carry no MAC). In secure mode a missing key or
    MAC is a failure.
    """
    log = audit_log(_settings(ctx))
    result = log.verify()
    if result.ok:
        _say(f"{log.path}: {result.summary}")
        return
    line, problem = result.problems[0]
    _say(f"{log.path}: line {line}: {problem}")
    raise typer.Exit(1)

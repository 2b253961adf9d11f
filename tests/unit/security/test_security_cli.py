from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pulsecast.security.audit as audit_module
from pulsecast.cli import app
from pulsecast.security.keys import new_master_key

runner = CliRunner()
STATE = Path(".pulsecast") / "security"  # the default data dir, under the test's cwd


@pytest.mark.parametrize(
    "args",
    [
        ["security"],
        ["security", "init"],
        ["security", "rotate"],
        ["security", "check"],
        ["security", "apikey", "create"],
        ["security", "apikey", "list"],
        ["security", "apikey", "revoke"],
        ["audit"],
        ["audit", "show"],
        ["audit", "verify"],
    ],
    ids=" ".join,
)
def test_security_cli_every_command_has_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: pulsecast" in result.output


def test_security_cli_init_is_idempotent_and_audited() -> None:
    first = runner.invoke(app, ["security", "init"])
    assert first.exit_code == 0, first.output
    assert "created in" in first.stderr and "server/kafka" in first.stderr
    assert (STATE / "ca" / "ca.pem").is_file() and (STATE / "keys" / "master.key").is_file()
    second = runner.invoke(app, ["security", "init"])
    assert second.exit_code == 0
    assert "everything present, nothing created" in second.stderr
    shown = runner.invoke(app, ["audit", "show", "--json"])
    records = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [r["action"] for r in records] == ["security.init"]


def test_security_cli_apikeys_create_list_revoke() -> None:
    created = runner.invoke(app, ["security", "apikey", "create", "gw", "--role", "ingest"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    key_id = key.split("_")[1]
    assert key.startswith(f"pck_{key_id}_") and key not in created.stderr
    listed = runner.invoke(app, ["security", "apikey", "list", "--json"])
    assert json.loads(listed.stdout)[0] | {"created": None} == {
        "id": key_id,
        "name": "gw",
        "roles": ["ingest"],
        "created": None,
        "revoked": None,
    }
    assert key.split("_", 2)[2] not in listed.stdout  # the secret may hold "_" itself
    revoked = runner.invoke(app, ["security", "apikey", "revoke", key_id])
    assert revoked.exit_code == 0 and f"revoked {key_id} (gw)" in revoked.stderr
    plain = runner.invoke(app, ["security", "apikey", "list"])
    assert "revoked" in plain.stdout
    unknown = runner.invoke(app, ["security", "apikey", "revoke", "deadbeef"])
    assert unknown.exit_code == 1
    assert unknown.stderr == "error: no API key with id 'deadbeef'\n"
    bad = runner.invoke(app, ["security", "apikey", "create", "x", "--role", "root"])
    assert bad.exit_code == 1
    assert bad.stderr == "error: unknown role 'root'; roles: ingest, read, admin\n"
    shown = runner.invoke(app, ["audit", "show"])
    assert "security.apikey.create" in shown.stdout and "security.apikey.revoke" in shown.stdout
    assert key.split("_")[2] not in shown.stdout


def test_security_cli_rotate_and_master_key() -> None:
    assert runner.invoke(app, ["security", "rotate"]).exit_code == 1
    runner.invoke(app, ["security", "init"])
    old = (STATE / "servers" / "kafka" / "cert.pem").read_bytes()
    rotated = runner.invoke(app, ["security", "rotate", "--ca"])
    assert rotated.exit_code == 0 and rotated.stderr.startswith("re-issued: ca, server/kafka")
    assert (STATE / "servers" / "kafka" / "cert.pem").read_bytes() != old
    master = (STATE / "keys" / "master.key").read_text()
    again = runner.invoke(app, ["security", "rotate", "--master-key"])
    assert again.exit_code == 0 and "2 data key(s) re-wrapped" in again.stderr  # default, audit
    assert (STATE / "keys" / "master.key").read_text() != master
    assert again.stdout == ""  # a file master key is never printed
    actions = [
        json.loads(x)["action"]
        for x in runner.invoke(app, ["audit", "show", "--json"]).stdout.splitlines()
    ]
    assert actions == ["security.init", "security.rotate", "security.rotate_master_key"]


def test_security_cli_audit_verify_detects_tampering() -> None:
    runner.invoke(app, ["security", "init"])
    runner.invoke(app, ["security", "apikey", "create", "gw", "--role", "ingest"])
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0 and "2 record(s), chain intact" in ok.stderr
    path = STATE / "audit" / "audit.jsonl"
    path.write_text(path.read_text().replace("gw", "gx"))
    bad = runner.invoke(app, ["audit", "verify"])
    assert bad.exit_code == 1
    assert bad.stderr == (
        f"{path.resolve()}: line 2: record was modified (its hash does not match its content)\n"
    )


def test_security_cli_audit_show_since() -> None:
    runner.invoke(app, ["security", "init"])
    assert runner.invoke(app, ["audit", "show", "--since", "1h"]).stdout.count("\n") == 1
    assert runner.invoke(app, ["audit", "show", "--since", "2999-01-01"]).stdout == ""
    bad = runner.invoke(app, ["audit", "show", "--since", "yesterday"])
    assert bad.exit_code == 1
    assert bad.stderr == (
        "error: --since 'yesterday': expected a duration (30m, 2h, 7d) or an ISO date/time\n"
    )


def test_security_cli_check_reports_honestly(monkeypatch: pytest.MonkeyPatch) -> None:
    before = runner.invoke(app, ["security", "check"])
    assert before.exit_code == 0, before.output
    assert "OFF   certificates  none yet: run `pulsecast security init`" in before.stdout
    assert "OFF   api keys" in before.stdout
    runner.invoke(app, ["security", "init"])
    monkeypatch.setenv("PULSECAST_SECURITY__ENABLED", "true")
    after = runner.invoke(app, ["security", "check", "--json"])
    findings = {(f["area"], f["status"]) for f in json.loads(after.stdout)}
    assert ("certificates", "ok") in findings and ("keystore", "ok") in findings
    assert ("api keys", "warn") in findings  # required, but nobody may ingest yet
    assert ("audit trail", "ok") in findings
    # Servers not started yet: their passwords do not exist.
    assert {("kafka", "warn"), ("postgresql", "warn"), ("http", "ok"), ("lake", "warn")} <= findings
    (STATE / "ca" / "ca.key").chmod(0o644)
    loose = runner.invoke(app, ["security", "check"])
    assert loose.exit_code == 1 and "FAIL  certificates  readable by others" in loose.stdout


def test_security_cli_smoke_real_entry_point(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("pulsecast")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSECAST_")}
    init = subprocess.run(
        [str(exe), "security", "init"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert init.returncode == 0, init.stderr
    check = subprocess.run(
        [str(exe), "security", "check", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert {
        "area": "audit trail",
        "status": "ok",
        "text": "1 record(s), chain intact; keyed: every record's MAC checked",
    } in json.loads(check.stdout)


def test_security_cli_init_creates_the_audit_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # A record written before the key existed: plain mode, no keystore yet.
    runner.invoke(app, ["security", "apikey", "create", "gw", "--role", "ingest"])
    assert not (STATE / "keys").exists()
    init = runner.invoke(app, ["security", "init"])
    assert init.exit_code == 0, init.output
    assert "created the keystore's 'audit' key: audit records are MACed from now on" in init.stderr
    assert "the 1 earlier audit record(s) carry no MAC" in init.stderr
    assert "audit" in json.loads((STATE / "keys" / "keystore.json").read_text())["keys"]
    shown = runner.invoke(app, ["audit", "show", "--json"]).stdout.splitlines()
    assert ["mac" in json.loads(line) for line in shown] == [False, True]
    plain = runner.invoke(app, ["audit", "verify"])
    assert plain.exit_code == 0
    assert plain.stderr.endswith(
        "2 record(s), chain intact; unkeyed: no MAC on line(s) 1 "
        "(written without the audit key), other MACs checked\n"
    )
    monkeypatch.setenv("PULSECAST_SECURITY__ENABLED", "true")
    secure = runner.invoke(app, ["audit", "verify"])
    assert secure.exit_code == 1
    assert secure.stderr.endswith(
        "line 1: no MAC: written without the audit key, or its MAC was removed\n"
    )
    again = runner.invoke(app, ["security", "init"])
    assert again.exit_code == 0 and "'audit' key" not in again.stderr


def test_security_cli_secure_init_and_env_master_rotation_stay_keyed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULSECAST_SECURITY__ENABLED", "true")
    monkeypatch.setenv("PULSECAST_SECURITY__MASTER_KEY", new_master_key())
    assert runner.invoke(app, ["security", "init"]).exit_code == 0
    monkeypatch.setattr(audit_module, "_KEYS", {})  # each command a process of its own
    rotated = runner.invoke(app, ["security", "rotate", "--master-key"])
    assert rotated.exit_code == 0, rotated.output
    monkeypatch.setenv("PULSECAST_SECURITY__MASTER_KEY", rotated.stdout.strip())
    monkeypatch.setattr(audit_module, "_KEYS", {})
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0, verified.stderr
    assert verified.stderr.endswith(
        "2 record(s), chain intact; keyed: every record's MAC checked\n"
    )


def test_security_cli_check_says_whether_the_audit_chain_is_keyed() -> None:
    runner.invoke(app, ["security", "apikey", "create", "gw", "--role", "ingest"])
    unkeyed = runner.invoke(app, ["security", "check", "--json"])
    (finding,) = [f for f in json.loads(unkeyed.stdout) if f["area"] == "audit trail"]
    assert finding["status"] == "warn"
    assert finding["text"].startswith(
        "1 record(s), chain intact; unkeyed: MACs not checked (audit key not readable: "
        "no master key in "
    )
    assert not (STATE / "keys").exists()  # check creates nothing
    (STATE / "audit" / "audit.jsonl").unlink()
    (STATE / "audit" / "audit.jsonl.head").unlink()
    runner.invoke(app, ["security", "init"])
    keyed = runner.invoke(app, ["security", "check"])
    assert (
        "OK    audit trail   1 record(s), chain intact; keyed: every record's MAC checked"
        in keyed.stdout
    )

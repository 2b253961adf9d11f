"""The AWS KMS master key, against moto's in-process KMS emulator (no network, no AWS account)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pydantic
import pytest
from moto import mock_aws
from typer.testing import CliRunner

import pulsecast.security.audit as audit_module
from pulsecast.cli import app
from pulsecast.config import Settings
from pulsecast.security import aws_kms
from pulsecast.security.audit import AUDIT_KEY, AuditKey
from pulsecast.security.aws_kms import AwsKmsKeystore, AwsKmsMaster
from pulsecast.security.errors import AuditError, KeystoreError, UnwrapError
from pulsecast.security.keys import LocalKeystore, decode_master_key, keystore_for, new_master_key
from pulsecast.security.lake_crypto import LAKE_KEY, lake_key
from pulsecast.testing import settings_for

REGION = "eu-west-1"
runner = CliRunner()
STATE = Path(".pulsecast") / "security"


@pytest.fixture
def kms() -> Iterator[Any]:
    """A KMS client on moto's emulator (with its fake credentials), for the test's duration."""
    with mock_aws():
        yield boto3.client("kms", region_name=REGION)


def _key(kms: Any) -> str:
    key_id: str = kms.create_key(Description="pulsecast test")["KeyMetadata"]["KeyId"]
    return key_id


def _settings(tmp_path: Path, key_id: str) -> Settings:
    return settings_for(
        tmp_path / "state",
        security={"kms": "aws", "aws_kms_key_id": key_id, "aws_region": REGION},
    )


def test_aws_kms_data_keys_are_wrapped_by_kms(kms: Any, tmp_path: Path) -> None:
    key_id = _key(kms)
    store = keystore_for(_settings(tmp_path, key_id))
    assert isinstance(store, AwsKmsKeystore)
    plaintext = store.data_key("lake")
    assert len(plaintext) == 32
    # Another process (a new keystore) gets the same key back from keystore.json.
    assert keystore_for(_settings(tmp_path, key_id)).data_key("lake") == plaintext
    path = tmp_path / "state" / "security" / "keys" / "keystore.json"
    text = path.read_text()
    data = json.loads(text)
    assert data["master_id"] == kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    assert plaintext.hex() not in text
    assert base64.urlsafe_b64encode(plaintext).decode() not in text
    wrapped = base64.urlsafe_b64decode(data["keys"]["lake"]["wrapped"])
    # KMS ciphertext: KMS opens it with the name as context...
    opened = kms.decrypt(CiphertextBlob=wrapped, EncryptionContext={"pulsecast-data-key": "lake"})
    assert opened["Plaintext"] == plaintext
    # ...and it is not the local format (AES-GCM under a local master).
    local = LocalKeystore(tmp_path / "local", master_key=decode_master_key(new_master_key()))
    with pytest.raises(UnwrapError):
        local.unwrap("lake", wrapped)
    assert not (tmp_path / "state" / "security" / "keys" / "master.key").exists()


def test_aws_kms_alias_and_envelope_round_trip(kms: Any, tmp_path: Path) -> None:
    key_id = _key(kms)
    kms.create_alias(AliasName="alias/pulsecast", TargetKeyId=key_id)
    store = keystore_for(_settings(tmp_path, "alias/pulsecast"))
    blob = store.encrypt("default", b"temperature 61.5")
    assert store.decrypt("default", blob) == b"temperature 61.5"
    assert store.names() == ["default"]
    assert store.master_id.endswith(key_id)  # the alias resolves to the key's ARN


def test_aws_kms_swapped_name_does_not_unwrap(kms: Any, tmp_path: Path) -> None:
    store = keystore_for(_settings(tmp_path, _key(kms)))
    store.data_key("lake")
    store.data_key("audit")
    path = tmp_path / "state" / "security" / "keys" / "keystore.json"
    data = json.loads(path.read_text())
    data["keys"]["audit"]["wrapped"] = data["keys"]["lake"]["wrapped"]
    path.write_text(json.dumps(data))
    with pytest.raises(UnwrapError) as err:
        store.data_key("audit")
    assert str(err.value) == "cannot decrypt 'audit': wrong key or tampered data"


def test_aws_kms_unknown_key_is_one_line(kms: Any, tmp_path: Path) -> None:
    missing = "11111111-2222-3333-4444-555555555555"
    with pytest.raises(KeystoreError) as err:
        keystore_for(_settings(tmp_path, missing))
    assert str(err.value) == (
        f"AWS KMS key {missing}: not found in region {REGION}: check "
        "security.aws_kms_key_id and security.aws_region"
    )
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_aws_kms_disabled_key_is_refused(kms: Any, tmp_path: Path) -> None:
    key_id = _key(kms)
    kms.disable_key(KeyId=key_id)
    with pytest.raises(KeystoreError) as err:
        keystore_for(_settings(tmp_path, key_id))
    assert str(err.value) == (
        f"AWS KMS key {key_id} is Disabled, usage ENCRYPT_DECRYPT: "
        "it must be an enabled symmetric encryption key"
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "AccessDeniedException",
            "AWS KMS key k1: access denied (Decrypt): the credentials need kms:Encrypt, "
            "kms:Decrypt, kms:GenerateDataKey and kms:DescribeKey",
        ),
        (
            "UnrecognizedClientException",
            "AWS KMS key k1: credentials rejected (UnrecognizedClientException): check the "
            "AWS credentials in use",
        ),
        (
            "DisabledException",
            "AWS KMS key k1: disabled or pending deletion (Decrypt): enable it in KMS",
        ),
        ("ThrottlingException", "AWS KMS key k1: Decrypt failed: ThrottlingException"),
    ],
)
def test_aws_kms_client_errors_are_one_line(code: str, expected: str) -> None:
    from botocore.exceptions import ClientError

    class Client:
        class meta:  # boto3's attribute name
            region_name = REGION

        def describe_key(self, **_: Any) -> dict[str, Any]:
            meta = {"KeyState": "Enabled", "KeyUsage": "ENCRYPT_DECRYPT", "Arn": "arn:k1"}
            return {"KeyMetadata": meta}

        def decrypt(self, **_: Any) -> None:
            raise ClientError({"Error": {"Code": code, "Message": "secret-ish"}}, "Decrypt")

    master = AwsKmsMaster("k1", client=Client())
    with pytest.raises(KeystoreError) as err:
        master.unwrap("lake", b"x")
    assert str(err.value) == expected


def test_aws_kms_no_credentials_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role lookup
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    with pytest.raises(KeystoreError) as err:
        AwsKmsMaster("k1", region=REGION, endpoint_url="http://127.0.0.1:9")
    assert str(err.value) == (
        "AWS KMS key k1: no AWS credentials found: set them in the environment, a profile "
        "or an instance role"
    )


def test_aws_kms_no_region_or_bad_endpoint_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(KeystoreError) as err:
        AwsKmsMaster("k1")
    assert str(err.value) == "AWS KMS key k1: no AWS region: set security.aws_region or AWS_REGION"
    with pytest.raises(KeystoreError) as err:
        AwsKmsMaster("k1", region=REGION, endpoint_url="not a url")
    assert str(err.value) == (
        "AWS KMS key k1: invalid endpoint not a url: check security.aws_endpoint_url"
    )


def test_aws_kms_unreachable_endpoint_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setitem(aws_kms.CLIENT_OPTIONS, "retries", {"max_attempts": 1})
    with pytest.raises(KeystoreError) as err:
        AwsKmsMaster("k1", region=REGION, endpoint_url="http://127.0.0.1:9")
    assert str(err.value) == (
        "AWS KMS key k1: cannot reach http://127.0.0.1:9: check the network and "
        "security.aws_endpoint_url"
    )


def test_aws_kms_without_boto3_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 -> ImportError
    with pytest.raises(KeystoreError) as err:
        keystore_for(_settings(tmp_path, "k1"))
    assert str(err.value) == "security.kms = 'aws' needs boto3: pip install 'pulsecast[aws]'"


def test_aws_kms_importing_pulsecast_needs_no_boto3() -> None:
    code = (
        "import sys; sys.modules['boto3'] = sys.modules['botocore'] = None; "
        "import pulsecast.cli, pulsecast.security.aws_kms, pulsecast.security.lake_crypto"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_aws_kms_settings_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pydantic.ValidationError, match=r"needs security\.aws_kms_key_id"):
        settings_for(tmp_path, security={"kms": "aws"})
    with pytest.raises(pydantic.ValidationError, match="unset one of them"):
        settings_for(tmp_path, security={"kms": "aws", "aws_kms_key_id": "k", "master_key": "x"})
    monkeypatch.setenv("PULSECAST_SECURITY__KMS", "aws")
    monkeypatch.setenv("PULSECAST_SECURITY__AWS_KMS_KEY_ID", "alias/p")
    monkeypatch.setenv("PULSECAST_SECURITY__AWS_REGION", REGION)
    monkeypatch.setenv("PULSECAST_SECURITY__AWS_ENDPOINT_URL", "http://kms.local")
    sec = settings_for(tmp_path).security
    assert (sec.kms, sec.aws_kms_key_id, sec.aws_region, sec.aws_endpoint_url) == (
        "aws",
        "alias/p",
        REGION,
        "http://kms.local",
    )


def test_aws_kms_lake_and_audit_keys(
    kms: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, _key(kms))
    lake = lake_key(settings)
    assert keystore_for(settings).existing_key(LAKE_KEY) == lake
    monkeypatch.setattr(audit_module, "_KEYS", {})
    with pytest.raises(AuditError, match="no 'audit' key in "):
        AuditKey(settings).get()  # read-only: it creates no audit key
    audit = keystore_for(settings).data_key(AUDIT_KEY)
    monkeypatch.setattr(audit_module, "_KEYS", {})
    assert AuditKey(settings).get() == audit


@pytest.fixture
def aws_env(kms: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    key_id = _key(kms)
    monkeypatch.setenv("PULSECAST_SECURITY__KMS", "aws")
    monkeypatch.setenv("PULSECAST_SECURITY__AWS_KMS_KEY_ID", key_id)
    monkeypatch.setenv("PULSECAST_SECURITY__AWS_REGION", REGION)
    monkeypatch.setattr(audit_module, "_KEYS", {})
    arn: str = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    return arn


def test_aws_kms_cli_init_check_rotate(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    init = runner.invoke(app, ["security", "init"])
    assert init.exit_code == 0, init.output
    assert f"keystore: master key {aws_env}\n" in init.stderr
    assert not (STATE / "keys" / "master.key").exists()
    check = runner.invoke(app, ["security", "check"])
    assert f"OK    keystore      master key in AWS KMS {aws_env}; 2 data key(s) wrapped" in (
        check.stdout
    )
    before = (STATE / "keys" / "keystore.json").read_text()
    rotated = runner.invoke(app, ["security", "rotate", "--master-key"])
    assert rotated.exit_code == 0, rotated.output
    assert rotated.stderr == (
        f"master key {aws_env} is in AWS KMS, which rotates it itself (turn on automatic key "
        "rotation on the key); nothing to re-wrap\n"
    )
    assert rotated.stdout == ""
    assert (STATE / "keys" / "keystore.json").read_text() == before


def test_aws_kms_cli_rotate_rewraps_under_a_new_key_id(
    aws_env: str, kms: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(app, ["security", "init"]).exit_code == 0
    settings = Settings()
    old_default = keystore_for(settings).data_key("default")
    new_key = _key(kms)
    new_arn = kms.describe_key(KeyId=new_key)["KeyMetadata"]["Arn"]
    monkeypatch.setenv("PULSECAST_SECURITY__AWS_KMS_KEY_ID", new_key)
    stale = runner.invoke(app, ["security", "check"])
    assert stale.exit_code == 1
    assert f"FAIL  keystore      data keys were wrapped by another master key ({aws_env})" in (
        stale.stdout
    )
    monkeypatch.setattr(audit_module, "_KEYS", {})
    rotated = runner.invoke(app, ["security", "rotate", "--master-key"])
    assert rotated.exit_code == 0, rotated.output
    assert (
        rotated.stderr == f"master key {aws_env} -> {new_arn} (AWS KMS); 2 data key(s) re-wrapped\n"
    )
    data = json.loads((STATE / "keys" / "keystore.json").read_text())
    assert data["master_id"] == new_arn
    assert keystore_for(Settings()).data_key("default") == old_default
    monkeypatch.setattr(audit_module, "_KEYS", {})
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0, verified.stderr


def test_aws_kms_cli_unknown_key_is_one_line(kms: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSECAST_SECURITY__KMS", "aws")
    monkeypatch.setenv("PULSECAST_SECURITY__AWS_KMS_KEY_ID", "alias/missing")
    monkeypatch.setenv("PULSECAST_SECURITY__AWS_REGION", REGION)
    result = runner.invoke(app, ["security", "init"])
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines() == [
        "error: AWS KMS key alias/missing: not found in region eu-west-1: check "
        "security.aws_kms_key_id and security.aws_region"
    ]
    check = runner.invoke(app, ["security", "check"])
    assert check.exit_code == 1
    assert (
        "FAIL  keystore      AWS KMS key alias/missing: not found in region eu-west-1"
        in check.stdout
    )

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from pulsecast.security import apikeys
from pulsecast.security.apikeys import ApiKeyStore
from pulsecast.security.errors import UnknownApiKeyError

CHEAP = {"n": 16, "r": 1, "p": 1}  # the real cost is 2**14: tests only need the scheme


@pytest.fixture
def store(tmp_path: Path) -> ApiKeyStore:
    return ApiKeyStore(tmp_path / "apikeys.json", cost=CHEAP)


def test_apikeys_create_shows_the_key_once_and_stores_a_salted_hash(
    store: ApiKeyStore, tmp_path: Path
) -> None:
    key, secret = store.create("fleet-gateway", ["ingest"])
    assert re.fullmatch(rf"pck_{key.key_id}_[A-Za-z0-9_-]{{43}}", secret)
    text = (tmp_path / "apikeys.json").read_text()
    assert secret.split("_", 2)[2] not in text and secret not in text
    assert stat.S_IMODE((tmp_path / "apikeys.json").stat().st_mode) == 0o600
    _, other = store.create("fleet-gateway", ["ingest"])
    records = json.loads(text)["keys"][key.key_id]
    assert len(bytes.fromhex(records["salt"])) == 16 and len(bytes.fromhex(records["hash"])) == 32
    assert other != secret


def test_apikeys_default_cost_is_scrypt_2_14() -> None:
    assert apikeys._SCRYPT == {"n": 2**14, "r": 8, "p": 1}


def test_apikeys_verify_accepts_the_key_and_nothing_else(store: ApiKeyStore) -> None:
    key, secret = store.create("a", ["ingest"])
    assert store.verify(secret) == key
    prefix, key_id, rest = secret.split("_", 2)
    wrong = f"{prefix}_{key_id}_{'A' * len(rest)}"
    for bad in (wrong, "", "Bearer x", secret + "x", f"pck_00000000_{rest}", secret[:-1]):
        assert store.verify(bad) is None, bad


def test_apikeys_roles(store: ApiKeyStore) -> None:
    ingest, _ = store.create("i", ["ingest"])
    reader, _ = store.create("r", ["read"])
    admin, _ = store.create("a", ["admin"])
    assert ingest.allows("ingest") and not ingest.allows("read") and not ingest.allows("admin")
    assert reader.allows("read") and not reader.allows("ingest")
    assert all(admin.allows(r) for r in apikeys.ROLES)
    both, _ = store.create("b", ["read", "ingest", "read"])
    assert both.roles == ("ingest", "read")


def test_apikeys_bad_roles_are_refused(store: ApiKeyStore) -> None:
    with pytest.raises(ValueError, match="roles must be some of ingest, read, admin; got root"):
        store.create("x", ["root"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="got none"):
        store.create("x", [])


def test_apikeys_revoke_is_seen_by_a_running_store(store: ApiKeyStore, tmp_path: Path) -> None:
    key, secret = store.create("a", ["ingest"])
    assert store.verify(secret) is not None
    other_process = ApiKeyStore(tmp_path / "apikeys.json", cost=CHEAP)
    revoked = other_process.revoke(key.key_id)
    assert revoked.revoked is not None and not revoked.active
    assert store.verify(secret) is None
    assert other_process.revoke(key.key_id).revoked == revoked.revoked  # idempotent
    assert [k.active for k in store.keys()] == [False]
    assert not store.has_active()


def test_apikeys_revoke_unknown_id(store: ApiKeyStore) -> None:
    with pytest.raises(UnknownApiKeyError) as err:
        store.revoke("deadbeef")
    assert str(err.value) == "no API key with id 'deadbeef'"


def test_apikeys_verified_keys_are_not_rehashed(
    store: ApiKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, secret = store.create("a", ["ingest"])
    calls = []
    real = apikeys._hash

    def counting(*args: object, **kwargs: object) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(apikeys, "_hash", counting)
    for _ in range(5):
        assert store.verify(secret) is not None
    assert len(calls) == 1
    prefix, key_id, rest = secret.split("_", 2)
    for _ in range(3):  # a wrong secret is hashed each time, never cached
        assert store.verify(f"{prefix}_{key_id}_{'B' * len(rest)}") is None
    assert len(calls) == 4


def test_apikeys_list_never_shows_secrets(store: ApiKeyStore) -> None:
    store.create("a", ["ingest"])
    (listed,) = store.keys()
    assert set(listed.as_dict()) == {"id", "name", "roles", "created", "revoked"}

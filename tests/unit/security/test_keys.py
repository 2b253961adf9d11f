from __future__ import annotations

import base64
import json
import logging
import multiprocessing
import stat
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from pulsecast.security.errors import KeystoreError, UnwrapError
from pulsecast.security.keys import (
    DataKey,
    KeyManagementService,
    LocalKeystore,
    decode_master_key,
    key_fingerprint,
    keystore_for,
    new_master_key,
)
from pulsecast.testing import settings_for


def test_keys_envelope_round_trip(tmp_path: Path) -> None:
    store = LocalKeystore(tmp_path / "keys")
    blob = store.encrypt("lake", b"temperature 61.5")
    assert b"temperature" not in blob
    assert store.decrypt("lake", blob) == b"temperature 61.5"
    # A new instance (another process) reads the same data key from disk.
    assert LocalKeystore(tmp_path / "keys").decrypt("lake", blob) == b"temperature 61.5"
    assert store.names() == ["lake"]


def test_keys_only_wrapped_keys_are_stored(tmp_path: Path) -> None:
    store = LocalKeystore(tmp_path / "keys")
    plaintext = store.data_key("lake")
    text = (tmp_path / "keys" / "keystore.json").read_text()
    data = json.loads(text)
    assert data["master_id"] == store.master_id
    assert plaintext.hex() not in text
    assert (
        store.unwrap("lake", base64.urlsafe_b64decode(data["keys"]["lake"]["wrapped"])) == plaintext
    )


def test_keys_master_file_is_generated_owner_only(tmp_path: Path) -> None:
    store = LocalKeystore(tmp_path / "keys")
    store.data_key("x")
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    for name in ("master.key", "keystore.json"):
        assert stat.S_IMODE((tmp_path / "keys" / name).stat().st_mode) == 0o600
    assert len(decode_master_key((tmp_path / "keys" / "master.key").read_text())) == 32


def test_keys_wrong_master_key_fails(tmp_path: Path) -> None:
    store = LocalKeystore(tmp_path / "keys")
    blob = store.encrypt("lake", b"secret")
    other = LocalKeystore(tmp_path / "keys", master_key=decode_master_key(new_master_key()))
    with pytest.raises(KeystoreError, match="was wrapped by master key"):
        other.decrypt("lake", blob)
    wrapped = store.wrap("lake", b"k" * 32)
    with pytest.raises(UnwrapError) as err:
        other.unwrap("lake", wrapped)
    assert str(err.value) == "cannot decrypt 'lake': wrong key or tampered data"


def test_keys_tampering_and_wrong_names_fail(tmp_path: Path) -> None:
    store = LocalKeystore(tmp_path / "keys")
    blob = bytearray(store.encrypt("lake", b"secret"))
    blob[-1] ^= 1
    with pytest.raises(UnwrapError):
        store.decrypt("lake", bytes(blob))
    good = store.encrypt("lake", b"secret")
    with pytest.raises(UnwrapError):
        store.decrypt("other", good)  # bound to its name
    with pytest.raises(UnwrapError):
        store.unwrap("b", store.wrap("a", b"k" * 32))
    with pytest.raises(UnwrapError):
        store.decrypt("lake", b"short")


def test_keys_master_rotation_keeps_data_readable(tmp_path: Path) -> None:
    store = LocalKeystore(tmp_path / "keys")
    blobs = {name: store.encrypt(name, name.encode() * 3) for name in ("lake", "audit", "pg")}
    old_master = (tmp_path / "keys" / "master.key").read_text()
    old_wrapped = json.loads((tmp_path / "keys" / "keystore.json").read_text())["keys"]
    old_id = store.master_id
    assert store.rotate_master() == 3
    assert store.master_id != old_id
    assert (tmp_path / "keys" / "master.key").read_text() != old_master
    new_wrapped = json.loads((tmp_path / "keys" / "keystore.json").read_text())["keys"]
    assert all(new_wrapped[n]["wrapped"] != old_wrapped[n]["wrapped"] for n in blobs)
    reopened = LocalKeystore(tmp_path / "keys")
    assert reopened.master_id == store.master_id
    for name, blob in blobs.items():  # the data was not touched, and still opens
        assert reopened.decrypt(name, blob) == name.encode() * 3
    with pytest.raises(KeystoreError):
        LocalKeystore(tmp_path / "keys", master_key=decode_master_key(old_master)).data_key("lake")
    assert not (tmp_path / "keys" / "master.key.new").exists()


def test_keys_interrupted_rotation_is_completed(tmp_path: Path) -> None:
    store = LocalKeystore(tmp_path / "keys")
    blob = store.encrypt("lake", b"v")
    new = decode_master_key(new_master_key())
    # Simulate a crash after the keystore was re-wrapped, before the key file moved.
    (tmp_path / "keys" / "master.key").rename(tmp_path / "keys" / "master.key.old")
    store._from_file = False
    store.rotate_master(new)
    (tmp_path / "keys" / "master.key.old").rename(tmp_path / "keys" / "master.key")
    (tmp_path / "keys" / "master.key.new").write_text(base64.urlsafe_b64encode(new).decode())
    reopened = LocalKeystore(tmp_path / "keys")
    assert reopened.master_id == key_fingerprint(new)
    assert reopened.decrypt("lake", blob) == b"v"


def test_keys_master_key_from_settings(tmp_path: Path) -> None:
    key = new_master_key()
    settings = settings_for(tmp_path, security={"master_key": key})
    store = keystore_for(settings)
    assert store.master_id == key_fingerprint(decode_master_key(key))
    store.data_key("x")
    assert not (tmp_path / "security" / "keys" / "master.key").exists()
    assert key not in repr(settings)


def test_keys_bad_master_key_does_not_echo_it() -> None:
    with pytest.raises(KeystoreError) as err:
        decode_master_key("not-a-key-at-all")
    assert str(err.value) == "master key must be 32 bytes in base64url"


def test_keys_data_key_repr_hides_the_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pulsecast.security")
    store = LocalKeystore(tmp_path / "keys")
    key = store.generate_data_key("x")
    assert key.plaintext.hex() not in repr(key) and "32 bytes" in repr(key)
    store.rotate_master()
    master = (tmp_path / "keys" / "master.key").read_text()
    assert master not in caplog.text and key.plaintext.hex() not in caplog.text


def test_keys_local_keystore_is_a_kms(tmp_path: Path) -> None:
    kms: KeyManagementService = LocalKeystore(tmp_path / "keys")
    key = kms.generate_data_key("lake")
    assert kms.unwrap("lake", key.wrapped) == key.plaintext and len(key.plaintext) == 32


def _first_use(folder: str, barrier: Barrier, out: Queue[str]) -> None:
    barrier.wait()
    out.put(LocalKeystore(Path(folder)).data_key("lake").hex())


def test_keys_data_key_is_created_once_across_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate = LocalKeystore.generate_data_key

    def slowly(self: LocalKeystore, name: str) -> DataKey:
        time.sleep(0.3)  # widen the window between reading and writing the keystore
        return generate(self, name)

    monkeypatch.setattr(LocalKeystore, "generate_data_key", slowly)
    context = multiprocessing.get_context("fork")  # the children inherit the slow generator
    barrier, out = context.Barrier(3), context.Queue()
    workers = [
        context.Process(target=_first_use, args=(str(tmp_path / "keys"), barrier, out))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    keys = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert len(set(keys)) == 1
    assert LocalKeystore(tmp_path / "keys").data_key("lake").hex() == keys[0]


def test_keys_read_only_keystore_creates_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    with pytest.raises(KeystoreError) as err:
        LocalKeystore(folder, create=False)
    assert str(err.value) == f"no master key in {folder}: run `pulsecast security init`"
    master = decode_master_key(new_master_key())
    assert LocalKeystore(folder, master_key=master, create=False).existing_key("audit") is None
    assert not folder.exists()
    key = LocalKeystore(folder).data_key("audit")
    reader = LocalKeystore(folder, create=False)
    assert reader.existing_key("audit") == key and reader.existing_key("lake") is None
    LocalKeystore(folder).rotate_master()  # by another process: the reader follows it
    assert reader.existing_key("audit") == key
    assert sorted(p.name for p in folder.iterdir()) == [
        "keystore.json",
        "keystore.lock",
        "master.key",
    ]


def test_keys_read_only_keystore_follows_an_interrupted_rotation(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    store = LocalKeystore(folder)
    key = store.data_key("audit")
    new = decode_master_key(new_master_key())
    (folder / "master.key").rename(folder / "master.key.old")
    store._from_file = False
    store.rotate_master(new)  # the keystore re-wrapped, the key file not moved yet
    (folder / "master.key.old").rename(folder / "master.key")
    (folder / "master.key.new").write_text(base64.urlsafe_b64encode(new).decode())
    assert LocalKeystore(folder, create=False).existing_key("audit") == key
    assert (folder / "master.key.new").is_file()  # read-only: the rotation is not completed


def test_keys_malformed_keystore_is_one_clear_error(tmp_path: Path) -> None:
    store = LocalKeystore(tmp_path / "keys")
    store.data_key("audit")
    store.path.write_text("[]")
    with pytest.raises(KeystoreError) as err:
        store.existing_key("audit")
    assert str(err.value) == f"{store.path}: unreadable keystore: no 'keys' mapping"
    store.path.write_text(json.dumps({"master_id": store.master_id, "keys": {"audit": {}}}))
    for read in (store.existing_key, store.data_key):
        with pytest.raises(KeystoreError) as err:
            read("audit")
        assert str(err.value) == f"{store.path}: malformed entry for data key 'audit'"

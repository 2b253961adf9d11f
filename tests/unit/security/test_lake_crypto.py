from __future__ import annotations

import base64
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pulsecast.config import Settings
from pulsecast.security.errors import UnwrapError
from pulsecast.security.keys import key_fingerprint, keystore_for
from pulsecast.security.lake_crypto import (
    KEYS_PROPERTY,
    LAKE_KEY,
    LakeCrypto,
    encryption_config,
    hadoop_conf,
    lake_encrypted,
    lake_key,
    readable_dataset,
    spark_sql_conf,
    unwrap_key_locally,
    wrap_key_locally,
)
from pulsecast.testing import settings_for

MARKER = "pulsecast-unit-secret-4711"


def secure(tmp_path: Path, **security: object) -> Settings:
    return settings_for(tmp_path, security={"enabled": True, **security})


SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


def encrypted_dataset(path: Path) -> ds.Dataset:
    """A dataset over an encrypted file; its schema given, as delta-rs gives it from the log."""
    return ds.dataset(str(path), schema=SCHEMA)


def write_encrypted(settings: Settings, path: Path) -> pa.Table:
    table = pa.table({"id": [1, 2, 3], "name": [MARKER, "b", "c"]}, schema=SCHEMA)
    factory, kms, config = encryption_config(settings)
    pq.write_table(
        table, path, encryption_properties=factory.file_encryption_properties(kms, config)
    )
    return table


def test_lake_crypto_on_by_default_in_secure_mode(tmp_path: Path) -> None:
    assert lake_encrypted(secure(tmp_path))
    assert not lake_encrypted(settings_for(tmp_path))
    assert not lake_encrypted(secure(tmp_path, encrypt_lake=False))
    assert lake_encrypted(settings_for(tmp_path, security={"encrypt_lake": True}))


def test_lake_crypto_local_wrap_round_trip() -> None:
    master, key = AESGCM.generate_key(bit_length=256), AESGCM.generate_key(bit_length=128)
    wrapped = wrap_key_locally(key, master, LAKE_KEY)
    assert unwrap_key_locally(wrapped, master, LAKE_KEY) == key
    assert wrapped != wrap_key_locally(key, master, LAKE_KEY)  # a fresh nonce each time


def test_lake_crypto_wrap_format_is_keytoolkits() -> None:
    """base64(nonce 12 | AES-GCM ciphertext | tag 16), the master key id as associated data."""
    master, key = AESGCM.generate_key(bit_length=256), b"k" * 16
    blob = base64.b64decode(wrap_key_locally(key, master, "lake"))
    assert len(blob) == 12 + len(key) + 16
    assert AESGCM(master).decrypt(blob[:12], blob[12:], b"lake") == key


@pytest.mark.parametrize("case", ["other key", "other id", "tampered", "not base64", "short"])
def test_lake_crypto_unwrap_refuses(case: str) -> None:
    master = AESGCM.generate_key(bit_length=256)
    wrapped = wrap_key_locally(b"k" * 16, master, LAKE_KEY)
    key, name = master, LAKE_KEY
    if case == "other key":
        key = AESGCM.generate_key(bit_length=256)
    elif case == "other id":
        name = "lake2"
    elif case == "tampered":
        raw = bytearray(base64.b64decode(wrapped))
        raw[-1] ^= 1
        wrapped = base64.b64encode(bytes(raw)).decode()
    elif case == "not base64":
        wrapped = "%%%"
    else:
        wrapped = base64.b64encode(b"x" * 20).decode()
    with pytest.raises(UnwrapError, match=f"cannot decrypt '{name}': wrong key or tampered data"):
        unwrap_key_locally(wrapped, key, name)


def test_lake_crypto_hadoop_conf_encrypts_every_column(tmp_path: Path) -> None:
    key = lake_key(secure(tmp_path))
    conf = hadoop_conf(key)
    assert conf["parquet.crypto.factory.class"] == "pulsecast.security.LakeCryptoFactory"
    assert conf["parquet.encryption.kms.client.class"] == "pulsecast.security.LakeKmsClient"
    assert conf["parquet.encryption.uniform.key"] == LAKE_KEY
    assert conf["parquet.encryption.data.key.length.bits"] == "256"
    assert "parquet.encryption.column.keys" not in conf
    # Every zone of the lake: the job's own tables are encrypted too (lake/encrypted.py).
    assert conf["pulsecast.lake.encrypt.zones"] == "bronze,silver,gold,state"
    # Spark redacts properties named like secrets in its UI and logs.
    assert "secret" in KEYS_PROPERTY
    assert conf[KEYS_PROPERTY] == f"{LAKE_KEY}:{base64.b64encode(key).decode()}"
    # parquet-mr's caches (KMS clients, wrapped key-encryption keys) are per token
    # and instance: another key must never share them.
    other = hadoop_conf(b"x" * 32)
    for name in ("parquet.encryption.kms.instance.id", "parquet.encryption.key.access.token"):
        assert conf[name] == f"pulsecast-{key_fingerprint(key)}"
        assert other[name] != conf[name]


def test_lake_crypto_statistics_limited_unless_configured(tmp_path: Path) -> None:
    name = "spark.databricks.delta.properties.defaults.dataSkippingStatsColumns"
    assert spark_sql_conf(secure(tmp_path)) == {name: "batch_id"}
    chosen = secure(tmp_path).model_copy(deep=True)
    chosen.spark.conf[name] = "batch_id,event_time"
    assert spark_sql_conf(chosen) == {}


def test_lake_crypto_lake_key_is_stored_wrapped(tmp_path: Path) -> None:
    settings = secure(tmp_path)
    key = lake_key(settings)
    assert lake_key(settings) == key
    text = keystore_for(settings).path.read_text()
    assert LAKE_KEY in keystore_for(settings).names()
    assert base64.b64encode(key).decode() not in text
    assert base64.urlsafe_b64encode(key).decode() not in text


def test_lake_crypto_pyarrow_round_trip(tmp_path: Path) -> None:
    settings = secure(tmp_path)
    path = tmp_path / "f.parquet"
    table = write_encrypted(settings, path)
    assert MARKER.encode() not in path.read_bytes()
    assert path.read_bytes()[:4] == b"PARE"
    with pytest.raises(OSError, match="encrypted"):
        pq.read_table(path)
    dataset = readable_dataset(encrypted_dataset(path), settings)
    assert dataset.to_table().equals(table)


def test_lake_crypto_plain_files_still_open(tmp_path: Path) -> None:
    settings = secure(tmp_path)
    path = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"id": [1]}), path)
    assert readable_dataset(ds.dataset(str(path)), settings).to_table().to_pylist() == [{"id": 1}]


def test_lake_crypto_dataset_unchanged_when_off(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"id": [1]}), path)
    dataset = ds.dataset(str(path))
    assert readable_dataset(dataset, settings_for(tmp_path)) is dataset


def test_lake_crypto_another_keystore_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    write_encrypted(secure(tmp_path / "a"), path)
    other = readable_dataset(encrypted_dataset(path), secure(tmp_path / "b"))
    with pytest.raises(UnwrapError, match="cannot decrypt 'lake': wrong key or tampered data"):
        other.to_table()


def test_lake_crypto_reads_after_master_key_rotation(tmp_path: Path) -> None:
    settings = secure(tmp_path)
    path = tmp_path / "f.parquet"
    table = write_encrypted(settings, path)
    before = path.read_bytes()
    keystore = keystore_for(settings)
    old = keystore.master_id
    assert keystore.rotate_master() == 1
    assert keystore_for(settings).master_id != old
    assert path.read_bytes() == before
    assert readable_dataset(encrypted_dataset(path), settings).to_table().equals(table)


def test_lake_crypto_object_writes_what_readable_dataset_opens(tmp_path: Path) -> None:
    """LakeCrypto (the job's pyarrow writers) and the settings' readers share the scheme."""
    settings = secure(tmp_path)
    crypto = LakeCrypto.from_settings(settings)
    assert crypto is not None
    assert crypto.key == lake_key(settings)
    assert LakeCrypto.from_settings(settings_for(tmp_path / "plain")) is None
    assert "key=" not in repr(crypto)  # never printed
    table = pa.table({"id": [1, 2, 3], "name": [MARKER, "b", "c"]}, schema=SCHEMA)
    folder = tmp_path / "written"
    options = ds.ParquetFileFormat().make_write_options(encryption_config=crypto.write_config())
    ds.write_dataset(table, folder, format="parquet", file_options=options)
    path = next(folder.glob("*.parquet"))
    assert MARKER.encode() not in path.read_bytes()
    with pytest.raises(OSError, match="encrypted"):
        pq.read_table(path)
    assert readable_dataset(encrypted_dataset(path), settings).to_table().equals(table)


def test_lake_crypto_check_names_what_is_encrypted(tmp_path: Path) -> None:
    from pulsecast.security.check import _lake

    finding = _lake(secure(tmp_path))
    assert (finding.area, finding.status) == ("lake", "warn")
    assert finding.text == (
        "every table's data files encrypted (Parquet modular encryption, keystore key "
        "'lake'); the Delta logs (file names, partition values, row counts, bronze and "
        "silver's batch_id min/max) are not"
    )

"""Encryption at rest for the lake: Parquet modular encryption with keys from the keystore.

Every Parquet data file Spark writes into the lake (Delta tables included) is
encrypted with Parquet modular encryption (AES-GCM, footer and every column),
through parquet-mr's properties-driven key tools: each file gets random data
keys, wrapped in the file by a key-encryption key, itself wrapped by a *master
key*. That master key is the keystore's ``lake`` data key
(:data:`LAKE_KEY`), which is stored wrapped by the keystore's master key
(envelope encryption, :mod:`pulsecast.security.keys`). Rotating the keystore's
master key re-wraps the ``lake`` key in ``keystore.json`` and rewrites no
Parquet file.

Every data file of every lake table is encrypted: those Spark writes, and
those the job commits from its driver with delta-rs (gold, pane state, scores,
forecast errors, batch statistics), which pyarrow writes encrypted and delta-rs
only commits. The Delta logs (file names, partition values, row counts) are not.

Three parts, one per reader and writer:

- Spark: :func:`enable_on_session` adds two small Java classes (the KMS client
  and a crypto factory that encrypts the files of :data:`ENCRYPTED_ZONES`, the
  lake's zones, and never the Delta log's checkpoints, because delta-rs must
  read those), compiled once with the Janino compiler
  that Spark ships (a JRE suffices), and sets the Hadoop properties of
  :func:`hadoop_conf` on the session. Reading, it decrypts any encrypted file,
  in whatever folder, and opens plaintext ones. It also limits the Delta log's
  column statistics of new tables to :data:`STATS_COLUMNS`, which would
  otherwise copy min/max *values* in plaintext into ``_delta_log``.
- pyarrow / DuckDB: :class:`LakeCrypto` holds the crypto factory and KMS
  client whose keys unwrap exactly as parquet-mr's ``KeyToolkit.encryptKeyLocally``
  wrapped them (:func:`wrap_key_locally`, :func:`unwrap_key_locally`): it
  writes files as Spark does (:mod:`pulsecast.lake.encrypted`) and rebuilds a
  ``deltalake`` dataset so that it decrypts (:func:`readable_dataset`).
- :func:`lake_encrypted` says whether the lake is to be encrypted
  (``security.encrypt_lake``, default ``security.enabled``).

The lake key travels to the JVM in the Hadoop property :data:`KEYS_PROPERTY`,
whose name contains ``secret`` so that Spark redacts it in its UI and logs.
See docs/security.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pulsecast.security.errors import SecurityError, UnwrapError
from pulsecast.security.keys import key_fingerprint, keystore_for

if TYPE_CHECKING:
    from pulsecast.config import Settings

__all__ = [
    "ENCRYPTED_ZONES",
    "KEYS_PROPERTY",
    "LAKE_KEY",
    "STATS_COLUMNS",
    "LakeCrypto",
    "crypto_jar",
    "decryption_config",
    "disable_on_session",
    "enable_on_session",
    "encryption_config",
    "hadoop_conf",
    "kms_client_factory",
    "lake_encrypted",
    "lake_key",
    "readable_dataset",
    "spark_sql_conf",
    "unwrap_key_locally",
    "wrap_key_locally",
]

log = logging.getLogger(__name__)

#: Name of the lake's key in the keystore, and its master key id in every Parquet file.
LAKE_KEY = "lake"
#: Hadoop property carrying the lake keys to the JVM's KMS client ("id:base64,...").
KEYS_PROPERTY = "pulsecast.lake.keys.secret"
#: Lake zones (folders) whose Parquet files Spark encrypts: all of them. (The tables of gold
#: and state that delta-rs commits are encrypted by :class:`LakeCrypto`'s writers.)
ENCRYPTED_ZONES = ("bronze", "silver", "gold", "state")
#: Columns whose min/max the Delta log keeps (non-sensitive): the job's micro-batch id.
STATS_COLUMNS = ("batch_id",)

_STATS_DEFAULT = "spark.databricks.delta.properties.defaults.dataSkippingStatsColumns"
_FACTORY_CLASS = "pulsecast.security.LakeCryptoFactory"
_KMS_CLASS = "pulsecast.security.LakeKmsClient"
_JAVA_SOURCES = ("LakeKmsClient.java", "LakeCryptoFactory.java")
_JAR_NAME = "pulsecast-lake-crypto.jar"
_NONCE_BYTES = 12
_TAG_BYTES = 16


def lake_encrypted(settings: Settings) -> bool:
    """Whether lake files are encrypted: ``security.encrypt_lake``, default ``security.enabled``."""
    security = settings.security
    return security.enabled if security.encrypt_lake is None else security.encrypt_lake


def lake_key(settings: Settings) -> bytes:
    """The plaintext of the keystore's lake key (created, stored wrapped, on first use).

    Raises:
        KeystoreError: The keystore was wrapped by another master key.
        UnwrapError: The stored key does not open (tampered).
    """
    return keystore_for(settings).data_key(LAKE_KEY)


# -- the key wrapping format of parquet-mr's KeyToolkit ------------------------------------------


def wrap_key_locally(key: bytes, master: bytes, master_id: str) -> str:
    """Wrap ``key`` with ``master`` as parquet-mr's ``KeyToolkit.encryptKeyLocally`` does.

    Base64 of nonce (12 bytes), AES-GCM ciphertext and tag, with the master key
    id (UTF-8) as associated data.
    """
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(master).encrypt(nonce, key, master_id.encode())
    return base64.b64encode(nonce + sealed).decode()


def unwrap_key_locally(wrapped: str, master: bytes, master_id: str) -> bytes:
    """Open what :func:`wrap_key_locally` (or ``KeyToolkit.encryptKeyLocally``) returned.

    Raises:
        UnwrapError: Wrong master key, wrong id or tampered bytes.
    """
    try:
        blob = base64.b64decode(wrapped, validate=True)
    except (binascii.Error, ValueError):
        raise UnwrapError(master_id) from None
    if len(blob) < _NONCE_BYTES + _TAG_BYTES:
        raise UnwrapError(master_id)
    try:
        return AESGCM(master).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], master_id.encode())
    except InvalidTag:
        raise UnwrapError(master_id) from None


# -- Spark ------------------------------------------------------------------------------------


def hadoop_conf(key: bytes) -> dict[str, str]:
    """Hadoop properties that make Spark encrypt its Parquet files with the lake key ``key``.

    Uniform encryption: the footer and every column under the one master key
    :data:`LAKE_KEY`, 256-bit file keys, key material inside each file. The KMS
    instance id and the access token are the key's fingerprint: parquet-mr
    caches its KMS clients by both, and the key-encryption keys it wraps with
    the master key by token and master key id, for the JVM's lifetime. With a
    fixed token, a session that switched keystores (the test suite's, or a
    process serving two data directories) kept wrapping new files' keys with
    the first keystore's lake key.
    """
    encoded = base64.b64encode(key).decode()
    fingerprint = f"pulsecast-{key_fingerprint(key)}"
    return {
        "parquet.crypto.factory.class": _FACTORY_CLASS,
        "parquet.encryption.kms.client.class": _KMS_CLASS,
        "parquet.encryption.kms.instance.id": fingerprint,
        "parquet.encryption.key.access.token": fingerprint,
        KEYS_PROPERTY: f"{LAKE_KEY}:{encoded}",
        "parquet.encryption.uniform.key": LAKE_KEY,
        "parquet.encryption.data.key.length.bits": "256",
        # The lake's zones: not the Parquet files Spark writes elsewhere (model data, say).
        "pulsecast.lake.encrypt.zones": ",".join(ENCRYPTED_ZONES),
    }


def spark_sql_conf(settings: Settings) -> dict[str, str]:
    """Session configuration that goes with encryption: Delta statistics of :data:`STATS_COLUMNS`.

    Delta copies each file's min/max values of the first columns into
    ``_delta_log`` in plaintext; new tables keep them for the micro-batch id
    only. A value set in ``spark.conf`` wins.
    """
    if _STATS_DEFAULT in settings.spark.conf:
        return {}
    return {_STATS_DEFAULT: ",".join(STATS_COLUMNS)}


def _java_sources() -> dict[str, str]:
    folder = resources.files("pulsecast.security").joinpath("jvm")
    return {name: folder.joinpath(name).read_text() for name in _JAVA_SOURCES}


def _pyspark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def crypto_jar(settings: Settings, *, java: Path) -> Path:
    """The jar of pulsecast's Parquet KMS client and crypto factory, compiled on first use.

    Compiled by Janino (in pyspark's jars) with ``java`` against pyspark's
    jars, into ``<jvm.lib_dir>/lake-crypto-<digest>/`` (a changed source or
    pyspark compiles again).

    Raises:
        SecurityError: The classes do not compile.
    """
    sources = _java_sources()
    jars = sorted(_pyspark_jars().glob("*.jar"))
    digest = hashlib.sha256()
    for name, text in sorted(sources.items()):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    digest.update("\0".join(j.name for j in jars).encode())
    base = settings.jvm.lib_dir or Path("~/.cache/pulsecast/jvm").expanduser()
    target = base / f"lake-crypto-{digest.hexdigest()[:12]}" / _JAR_NAME
    if target.is_file():
        return target
    janino = [j for j in jars if j.name.startswith(("janino-", "commons-compiler-"))]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        work = Path(tmp)
        paths = []
        for name, text in sources.items():
            (work / name).write_text(text)
            paths.append(str(work / name))
        command = [
            str(java),
            "-cp",
            os.pathsep.join(str(j) for j in janino),
            "org.codehaus.commons.compiler.samples.CompilerDemo",
            "-d",
            str(work / "classes"),
            "-classpath",
            os.pathsep.join(str(j) for j in jars),
            *paths,
        ]
        (work / "classes").mkdir()
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        classes = sorted((work / "classes").rglob("*.class"))
        if done.returncode != 0 or not classes:
            lines = (done.stderr or done.stdout).strip().splitlines()
            msg = f"cannot compile the lake encryption classes: {lines[-1] if lines else '?'}"
            raise SecurityError(msg)
        staging = work / _JAR_NAME
        with zipfile.ZipFile(staging, "w") as jar:
            for path in classes:
                jar.write(path, path.relative_to(work / "classes").as_posix())
        staging.replace(target)
    log.info("compiled the lake encryption classes into %s", target)
    return target


def enable_on_session(session: Any, settings: Settings) -> None:
    """Make ``session`` encrypt the Parquet files it writes and decrypt those it reads.

    Idempotent; applies to the running session (its SparkContext's Hadoop
    configuration), so a session created before works too. The key is read
    from the keystore now: restart the session after changing the lake key
    (a master key rotation does not change it).

    Raises:
        SecurityError: The classes do not compile, or the keystore cannot be used.
    """
    jvm = session._jvm
    java = Path(jvm.java.lang.System.getProperty("java.home")) / "bin" / "java"
    jar = crypto_jar(settings, java=java)
    context = session.sparkContext._jsc.sc()
    if f"/{_JAR_NAME}" not in str(context.listJars().mkString(",")):
        session.sql(f"ADD JAR '{jar}'")
    hadoop = session.sparkContext._jsc.hadoopConfiguration()
    # Parquet finds the factory and KMS classes through the configuration's class
    # loader, which predates ADD JAR: give it the session's, which has the jar.
    hadoop.setClassLoader(session._jsparkSession.sharedState().jarClassLoader())
    key = lake_key(settings)
    for name, value in hadoop_conf(key).items():
        hadoop.set(name, value)
    for name, value in spark_sql_conf(settings).items():
        session.conf.set(name, value)
    log.info("lake encryption on (key %s)", key_fingerprint(key))


def disable_on_session(session: Any) -> None:
    """Undo :func:`enable_on_session`: new files are written in plaintext (tests, benchmarks)."""
    hadoop = session.sparkContext._jsc.hadoopConfiguration()
    for name in hadoop_conf(bytes(32)):
        hadoop.unset(name)
    if session.conf.get(_STATS_DEFAULT, None) == ",".join(STATS_COLUMNS):
        session.conf.unset(_STATS_DEFAULT)
    log.info("lake encryption off")


# -- pyarrow (DuckDB) -------------------------------------------------------------------------


def kms_client_factory(keys: Mapping[str, bytes]) -> Callable[[Any], Any]:
    """A pyarrow ``KmsClient`` factory over ``keys`` (master key id → key), parquet-mr's format."""
    import pyarrow.parquet.encryption as pe

    class _LakeKmsClient(pe.KmsClient):  # type: ignore[misc]
        """Wraps and unwraps file keys locally, with the master keys it was given."""

        def _master(self, master_id: str) -> bytes:
            key = keys.get(master_id)
            if key is None:
                raise UnwrapError(master_id)
            return key

        def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
            return wrap_key_locally(
                key_bytes, self._master(master_key_identifier), master_key_identifier
            )

        def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
            return unwrap_key_locally(
                wrapped_key, self._master(master_key_identifier), master_key_identifier
            )

    def make(_config: Any) -> Any:
        return _LakeKmsClient()

    return make


@dataclass(frozen=True)
class LakeCrypto:
    """Encrypts and decrypts the lake's Parquet files from Python (pyarrow), as Spark does.

    Built once from the settings (:meth:`from_settings`) and passed to the
    writers and readers of the lake's small tables: its crypto factory caches
    the key-encryption keys, so files written with one object share them.

    Args:
        key: The plaintext lake key (:func:`lake_key`).
    """

    key: bytes = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeCrypto | None:
        """The lake's encryption; None when the lake is not encrypted (:func:`lake_encrypted`).

        Raises:
            KeystoreError: The keystore was wrapped by another master key.
            UnwrapError: The stored lake key does not open (tampered).
        """
        return cls(lake_key(settings)) if lake_encrypted(settings) else None

    @cached_property
    def factory(self) -> Any:
        """A ``pyarrow.parquet.encryption.CryptoFactory`` over the lake key."""
        import pyarrow.parquet.encryption as pe

        return pe.CryptoFactory(kms_client_factory({LAKE_KEY: self.key}))

    @cached_property
    def kms(self) -> Any:
        """The ``KmsConnectionConfig``: the key's fingerprint as instance id, as Spark's."""
        import pyarrow.parquet.encryption as pe

        return pe.KmsConnectionConfig(kms_instance_id=f"pulsecast-{key_fingerprint(self.key)}")

    @property
    def config(self) -> Any:
        """The ``EncryptionConfiguration`` of :func:`hadoop_conf`: uniform, 256-bit file keys."""
        import pyarrow.parquet.encryption as pe

        return pe.EncryptionConfiguration(
            footer_key=LAKE_KEY, uniform_encryption=True, data_key_length_bits=256
        )

    def write_config(self) -> Any:
        """A ``pyarrow.dataset.ParquetEncryptionConfig`` for ``pyarrow.dataset.write_dataset``."""
        import pyarrow.dataset as ds

        return ds.ParquetEncryptionConfig(self.factory, self.kms, self.config)

    def decryption(self) -> Any:
        """A ``pyarrow.dataset.ParquetDecryptionConfig`` (plaintext files open too)."""
        import pyarrow.dataset as ds
        import pyarrow.parquet.encryption as pe

        return ds.ParquetDecryptionConfig(self.factory, self.kms, pe.DecryptionConfiguration())

    def readable(self, dataset: Any) -> Any:
        """``dataset`` (from ``DeltaTable.to_pyarrow_dataset``) over a Parquet format that decrypts.

        The same files, partition values, schema and file system (so a file
        system that counts what it opens still does).
        """
        import pyarrow.dataset as ds

        scan = ds.ParquetFragmentScanOptions(pre_buffer=True, decryption_config=self.decryption())
        fmt = ds.ParquetFileFormat(
            read_options=dataset.format.read_options, default_fragment_scan_options=scan
        )
        fragments = [
            fmt.make_fragment(
                fragment.path,
                filesystem=dataset.filesystem,
                partition_expression=fragment.partition_expression,
            )
            for fragment in dataset.get_fragments()
        ]
        return ds.FileSystemDataset(fragments, dataset.schema, fmt, dataset.filesystem)


def decryption_config(settings: Settings) -> Any:
    """A ``pyarrow.dataset.ParquetDecryptionConfig`` that opens the lake's files.

    Plaintext files (written before encryption was on) open too.
    """
    return LakeCrypto(lake_key(settings)).decryption()


def encryption_config(settings: Settings) -> tuple[Any, Any, Any]:
    """``(crypto_factory, kms_connection_config, encryption_config)`` to write as Spark does.

    For ``pyarrow.parquet`` writers: ``factory.file_encryption_properties(kms, config)``.
    """
    crypto = LakeCrypto(lake_key(settings))
    return crypto.factory, crypto.kms, crypto.config


def readable_dataset(dataset: Any, settings: Settings) -> Any:
    """``dataset`` (from ``DeltaTable.to_pyarrow_dataset``), decrypting when the lake is encrypted.

    See :meth:`LakeCrypto.readable`. Unchanged when encryption is off.
    """
    crypto = LakeCrypto.from_settings(settings)
    return dataset if crypto is None else crypto.readable(dataset)

"""Key management: a KMS interface and the local keystore with envelope encryption.

Data is encrypted with *data keys* (AES-256-GCM); data keys are stored only
*wrapped* (encrypted) by a *master key*. Rotating the master key re-wraps the
data keys and touches no data: what they encrypted stays readable. This is
the scheme of AWS KMS's ``GenerateDataKey``. :class:`Keystore` keeps the wrapped
data keys and leaves the master key to a subclass: :class:`LocalKeystore`, the
default, holds it locally; :class:`~pulsecast.security.aws_kms.AwsKmsKeystore`
(``security.kms = "aws"``, the ``aws`` extra) leaves it in AWS KMS.
:func:`keystore_for` picks one from the settings.

The master key (32 bytes) comes from ``security.master_key``
(``PULSECAST_SECURITY__MASTER_KEY``, base64url) or from the ``0600`` file
``<security dir>/keys/master.key`` made on first use. Wrapped data keys live
in ``keys/keystore.json``, each bound (as GCM associated data) to its name, so
a wrapped key copied under another name does not open. Keys are never logged.

Every read-modify-write of ``keystore.json`` (creating a data key or the
master key file, rotating) holds an exclusive ``flock`` on ``keys/keystore.lock``,
so two processes creating the same key get the same key. A keystore opened
with ``create=False`` (the audit trail's) writes nothing: it reads under a
shared lock and re-reads a file master key on every read, so it follows a
rotation made by another process.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pulsecast.security._files import private_dir, security_dir, write_private
from pulsecast.security.errors import KeystoreError, UnwrapError

if TYPE_CHECKING:
    from pulsecast.config import Settings

__all__ = [
    "DataKey",
    "KeyManagementService",
    "Keystore",
    "LocalKeystore",
    "decode_master_key",
    "key_fingerprint",
    "keystore_for",
    "new_master_key",
]

log = logging.getLogger(__name__)

_KEY_BYTES = 32
_NONCE_BYTES = 12
_FORMAT = 1  # first byte of every ciphertext this module writes


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode())


def new_master_key() -> str:
    """A fresh random master key, base64url (the form ``PULSECAST_SECURITY__MASTER_KEY`` takes)."""
    return _b64(AESGCM.generate_key(bit_length=256))


def decode_master_key(text: str) -> bytes:
    """The 32 bytes of a base64url master key.

    Raises:
        KeystoreError: It is not base64 of 32 bytes (the message never shows the value).
    """
    try:
        key = base64.urlsafe_b64decode(text.strip().encode())
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != _KEY_BYTES:
        msg = f"master key must be {_KEY_BYTES} bytes in base64url"
        raise KeystoreError(msg)
    return key


def key_fingerprint(key: bytes) -> str:
    """A public identifier of a key: enough to tell keys apart, useless to an attacker."""
    return hashlib.sha256(b"pulsecast-key-id\0" + key).hexdigest()[:16]


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return bytes([_FORMAT]) + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes, name: str) -> bytes:
    if len(blob) < 1 + _NONCE_BYTES + 16 or blob[0] != _FORMAT:
        raise UnwrapError(name)
    nonce, body = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except InvalidTag:
        raise UnwrapError(name) from None


@dataclass(frozen=True)
class DataKey:
    """A data key: its plaintext (keep in memory only) and its wrapped form (safe to store)."""

    name: str
    plaintext: bytes
    wrapped: bytes

    def __repr__(self) -> str:
        return f"DataKey(name={self.name!r}, plaintext=<{len(self.plaintext)} bytes>)"


class KeyManagementService(ABC):
    """Wraps and unwraps data keys with a master key the caller never sees.

    Implementations: :class:`LocalKeystore`, and
    :class:`~pulsecast.security.aws_kms.AwsKmsMaster` (``wrap`` = ``Encrypt``,
    ``unwrap`` = ``Decrypt``, ``generate_data_key`` = ``GenerateDataKey``, the
    name as encryption context). Calls block; wrapping is not deterministic, so
    the same key wrapped twice gives different bytes that both unwrap.
    """

    @abstractmethod
    def wrap(self, name: str, plaintext: bytes) -> bytes:
        """Encrypt a data key under the master key, bound to ``name``."""

    @abstractmethod
    def unwrap(self, name: str, wrapped: bytes) -> bytes:
        """Decrypt a wrapped data key.

        Raises:
            UnwrapError: Wrong master key, wrong name or tampered bytes.
        """

    def generate_data_key(self, name: str) -> DataKey:
        """A new random AES-256 data key, in plaintext and wrapped."""
        plaintext = AESGCM.generate_key(bit_length=256)
        return DataKey(name, plaintext, self.wrap(name, plaintext))


class Keystore(KeyManagementService):
    """Named data keys stored wrapped in ``<folder>/keystore.json``; a subclass holds the master.

    The file is ``{"version": 1, "master_id": ..., "keys": {name: {"wrapped":
    base64url, "created": ISO time}}}``. Subclasses supply :attr:`master_id`,
    ``wrap`` and ``unwrap``; every read-modify-write of the file holds an
    exclusive ``flock`` on ``keystore.lock``, reads a shared one.

    Args:
        folder: Where ``keystore.json`` lives.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def path(self) -> Path:
        """The keystore file."""
        return self.folder / "keystore.json"

    @property
    @abstractmethod
    def master_id(self) -> str:
        """A public identifier of the master key in use, stored as ``master_id``."""

    @contextmanager
    def _lock(self, *, shared: bool = False) -> Iterator[None]:
        """Hold ``keystore.lock``: exclusive around read-modify-write, shared around reads.

        A shared lock never creates anything: without a lock file (nothing was
        ever written through one) the read goes ahead unlocked.
        """
        path = self.folder / "keystore.lock"
        if shared:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                yield
                return
        else:
            private_dir(self.folder)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _refresh_master(self, data: dict[str, Any]) -> None:
        """Follow a master key changed by another process, under the lock (default: nothing)."""

    def _load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": 1, "master_id": None, "keys": {}}
        except (OSError, ValueError) as exc:
            msg = f"{self.path}: unreadable keystore: {exc}"
            raise KeystoreError(msg) from exc
        if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
            msg = f"{self.path}: unreadable keystore: no 'keys' mapping"
            raise KeystoreError(msg)
        return data

    def _save(self, data: dict[str, Any]) -> None:
        write_private(self.path, json.dumps(data, indent=2, sort_keys=True).encode())

    def _check_master(self, data: dict[str, Any]) -> None:
        stored = data.get("master_id")
        if stored is not None and stored != self.master_id:
            msg = (
                f"{self.path} was wrapped by master key {stored}, "
                f"not by the one given ({self.master_id})"
            )
            raise KeystoreError(msg)

    # -- named keys ------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Names of the stored data keys."""
        return sorted(self._load()["keys"])

    def _wrapped(self, name: str, entry: Any) -> bytes:
        """The wrapped bytes of a keystore entry (a mapping with ``wrapped``)."""
        try:
            return _unb64(entry["wrapped"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            msg = f"{self.path}: malformed entry for data key {name!r}"
            raise KeystoreError(msg) from exc

    def _unwrap_entry(self, name: str, entry: Any) -> bytes:
        """The plaintext of a keystore entry (a mapping with ``wrapped``)."""
        return self.unwrap(name, self._wrapped(name, entry))

    def _stored(self, data: dict[str, Any], name: str) -> bytes | None:
        """The plaintext of stored key ``name``, or None when there is none."""
        entry = data["keys"].get(name)
        return None if entry is None else self._unwrap_entry(name, entry)

    def existing_key(self, name: str) -> bytes | None:
        """The plaintext of data key ``name`` if it is stored; never creates or writes anything.

        A file master key is re-read first, so a rotation made by another
        process since this keystore was opened is followed.

        Raises:
            KeystoreError: The keystore is unreadable or malformed, or was
                wrapped by another master key.
            UnwrapError: The stored wrapped key does not open (tampered).
        """
        if not self.path.is_file():
            return None
        with self._lock(shared=True):
            data = self._load()
            if name not in data["keys"]:
                return None
            self._refresh_master(data)
            self._check_master(data)
            return self._stored(data, name)

    def data_key(self, name: str) -> bytes:
        """The plaintext of data key ``name``, created and stored (wrapped) on first use.

        Safe across processes: the read-modify-write of the keystore holds its
        exclusive lock, so concurrent first uses all get the key stored first.

        Raises:
            KeystoreError: The keystore was wrapped by another master key.
            UnwrapError: The stored wrapped key does not open (tampered).
        """
        with self._lock():
            data = self._load()
            self._refresh_master(data)
            self._check_master(data)
            stored = self._stored(data, name)
            if stored is not None:
                return stored
            key = self.generate_data_key(name)
            data["master_id"] = self.master_id
            data["keys"][name] = {
                "wrapped": _b64(key.wrapped),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            self._save(data)
        log.info("created data key %s", name)
        return key.plaintext

    def encrypt(self, name: str, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` with data key ``name`` (AES-256-GCM, name bound)."""
        return _seal(self.data_key(name), plaintext, b"data\0" + name.encode())

    def decrypt(self, name: str, blob: bytes) -> bytes:
        """Decrypt what :meth:`encrypt` returned.

        Raises:
            UnwrapError: Wrong key, wrong name or tampered bytes.
        """
        return _open(self.data_key(name), blob, b"data\0" + name.encode(), name)


class LocalKeystore(Keystore):
    """Named data keys wrapped by a local master key, in ``<folder>/keystore.json``.

    Args:
        folder: Where ``keystore.json`` (and ``master.key`` when no key is given) live.
        master_key: The master key's 32 bytes; default: read ``master.key``,
            creating it (``0600``) when absent.
        create: ``False`` opens the keystore read-only: no master key file is
            created (a missing one is an error), an interrupted rotation is
            followed but not completed, and only :meth:`existing_key` should be
            used.

    Raises:
        KeystoreError: The master key is malformed, or missing when ``create`` is false.
    """

    def __init__(
        self, folder: Path, *, master_key: bytes | None = None, create: bool = True
    ) -> None:
        super().__init__(folder)
        self._from_file = master_key is None
        if master_key is not None:
            self._master = master_key
        elif create:
            with self._lock():
                self._finish_rotation()
                self._master = self._file_master()
        else:
            with self._lock(shared=True):
                self._master = self._read_master(self._load())
        if len(self._master) != _KEY_BYTES:
            msg = f"master key must be {_KEY_BYTES} bytes"
            raise KeystoreError(msg)

    @property
    def master_file(self) -> Path:
        """The master key file (used when no key is given)."""
        return self.folder / "master.key"

    @property
    def master_id(self) -> str:
        """Fingerprint of the master key in use."""
        return key_fingerprint(self._master)

    def export_master(self) -> str:
        """The master key, base64url: only to hand it to whoever keeps it (after a rotation)."""
        return _b64(self._master)

    def _refresh_master(self, data: dict[str, Any]) -> None:
        """Re-read a file master key: another process may have rotated it."""
        if self._from_file:
            self._master = self._read_master(data)

    def _read_master(self, data: dict[str, Any]) -> bytes:
        """The file master key the keystore was wrapped by, creating nothing.

        After a rotation interrupted before ``master.key`` was replaced, that is
        the pending ``master.key.new``.
        """
        pending = self.folder / "master.key.new"
        if pending.is_file():
            key = decode_master_key(pending.read_text())
            if key_fingerprint(key) == data.get("master_id"):
                return key
        try:
            text = self.master_file.read_text()
        except FileNotFoundError:
            msg = f"no master key in {self.folder}: run `pulsecast security init`"
            raise KeystoreError(msg) from None
        except OSError as exc:
            msg = f"{self.master_file}: unreadable master key: {exc.strerror}"
            raise KeystoreError(msg) from exc
        return decode_master_key(text)

    def _file_master(self) -> bytes:
        if not self.master_file.is_file():
            private_dir(self.folder)
            write_private(self.master_file, new_master_key().encode())
            log.info("created a master key in %s", self.master_file)
        return decode_master_key(self.master_file.read_text())

    def _finish_rotation(self) -> None:
        """Complete a rotation interrupted between writing the keystore and the key file."""
        pending = self.folder / "master.key.new"
        if not (self._from_file and pending.is_file()):
            return
        new_id = key_fingerprint(decode_master_key(pending.read_text()))
        if self._load().get("master_id") == new_id:
            pending.replace(self.master_file)
        else:
            pending.unlink()

    # -- KMS interface ----------------------------------------------------------------------

    def wrap(self, name: str, plaintext: bytes) -> bytes:
        """See base class."""
        return _seal(self._master, plaintext, b"data-key\0" + name.encode())

    def unwrap(self, name: str, wrapped: bytes) -> bytes:
        """See base class."""
        return _open(self._master, wrapped, b"data-key\0" + name.encode(), name)

    def rotate_master(self, new_master: bytes | None = None) -> int:
        """Re-wrap every data key under a new master key; data encrypted before stays readable.

        Args:
            new_master: The new key's 32 bytes; default a random one. With a
                file master the file is replaced; with a key given by the
                environment the caller must put the new key there.

        Returns:
            How many data keys were re-wrapped.
        """
        new = new_master if new_master is not None else AESGCM.generate_key(bit_length=256)
        if len(new) != _KEY_BYTES:
            msg = f"master key must be {_KEY_BYTES} bytes"
            raise KeystoreError(msg)
        with self._lock():
            data = self._load()
            self._check_master(data)
            plain = {n: self._unwrap_entry(n, e) for n, e in data["keys"].items()}
            pending = self.folder / "master.key.new"
            if self._from_file:
                write_private(pending, _b64(new).encode())
            self._master = new
            for name, key in plain.items():
                data["keys"][name]["wrapped"] = _b64(self.wrap(name, key))
            data["master_id"] = self.master_id
            data["rotated"] = datetime.now(UTC).isoformat(timespec="seconds")
            self._save(data)
            if self._from_file:
                pending.replace(self.master_file)
        log.info("rotated the master key; re-wrapped %d data keys", len(plain))
        return len(plain)


def keystore_for(settings: Settings, *, create: bool = True) -> Keystore:
    """The keystore of these settings (``<security dir>/keys``), with the configured master key.

    With ``security.kms = "aws"`` the master key is the AWS KMS key
    ``security.aws_kms_key_id`` (see :mod:`pulsecast.security.aws_kms`; it
    needs the ``aws`` extra). Otherwise it is ``security.master_key`` when set,
    else the key file (created on first use, unless ``create`` is false: then
    the keystore is read-only, see :class:`LocalKeystore`).

    Raises:
        KeystoreError: The master key is malformed or missing, or AWS KMS cannot be used.
    """
    sec = settings.security
    folder = security_dir(settings) / "keys"
    if sec.kms == "aws":
        # Imported here: the AWS backend imports this module.
        from pulsecast.security.aws_kms import AwsKmsKeystore, AwsKmsMaster

        master = AwsKmsMaster(
            sec.aws_kms_key_id or "", region=sec.aws_region, endpoint_url=sec.aws_endpoint_url
        )
        return AwsKmsKeystore(folder, master)
    secret = sec.master_key
    key = decode_master_key(secret.get_secret_value()) if secret is not None else None
    return LocalKeystore(folder, master_key=key, create=create)

"""The keystore's master key in AWS KMS: data keys wrapped by ``Encrypt``, opened by ``Decrypt``.

With ``security.kms = "aws"``, :func:`pulsecast.security.keys.keystore_for`
returns an :class:`AwsKmsKeystore`: the same ``keystore.json`` of wrapped data
keys as the local keystore, but each key wrapped by the KMS key
``security.aws_kms_key_id`` (:class:`AwsKmsMaster`: ``GenerateDataKey`` for a
new key, ``Decrypt`` to open one, with ``{"pulsecast-data-key": name}`` as
encryption context, so a wrapped key copied under another name does not open).
The master key never leaves KMS; plaintext data keys exist only in memory.

KMS rotates its own key material (automatic key rotation keeps the old material
for ``Decrypt``), so nothing is re-wrapped for that. When the configured key id
changes, :meth:`AwsKmsKeystore.rewrap` re-wraps every data key under the new key.

Needs the ``aws`` extra (boto3), imported only when a keystore is made.
Credentials come from the standard AWS chain (environment, profile, instance
role), never from pulsecast's settings. KMS failures become one-line
:class:`~pulsecast.security.errors.KeystoreError` errors naming the key and
what to check; keys and credentials are never logged or shown.
"""

from __future__ import annotations

import base64
import importlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pulsecast.security.errors import KeystoreError, UnwrapError
from pulsecast.security.keys import DataKey, KeyManagementService, Keystore

__all__ = ["CONTEXT_KEY", "AwsKmsKeystore", "AwsKmsMaster"]

log = logging.getLogger(__name__)

#: Encryption-context key binding a wrapped data key to its name.
CONTEXT_KEY = "pulsecast-data-key"
#: botocore client options: a few retries, and no minute-long hang on an unreachable endpoint.
CLIENT_OPTIONS: dict[str, Any] = {
    "retries": {"max_attempts": 3, "mode": "standard"},
    "connect_timeout": 5,
    "read_timeout": 15,
}
_PERMISSIONS = "kms:Encrypt, kms:Decrypt, kms:GenerateDataKey and kms:DescribeKey"


def _kms_errors() -> tuple[type[Exception], ...]:
    """What a boto3 call raises: botocore's ``ClientError`` and ``BotoCoreError``."""
    try:
        exceptions = importlib.import_module("botocore.exceptions")
    except ImportError:  # a client given without botocore (a test double)
        return (Exception,)
    return (exceptions.ClientError, exceptions.BotoCoreError)


def _boto3() -> Any:
    try:
        return importlib.import_module("boto3")
    except ImportError:
        msg = "security.kms = 'aws' needs boto3: pip install 'pulsecast[aws]'"
        raise KeystoreError(msg) from None


class AwsKmsMaster(KeyManagementService):
    """A master key in AWS KMS: wraps and unwraps data keys, never shows itself.

    Construction calls ``DescribeKey``: the key must exist, be enabled and be a
    symmetric encryption key. Every call blocks on KMS.

    Args:
        key_id: Key id, key ARN, ``alias/<name>`` or alias ARN.
        region: The key's region; default the AWS chain's.
        endpoint_url: A KMS-compatible endpoint; default AWS's own.
        client: A boto3 KMS client to use instead of making one (tests).

    Raises:
        KeystoreError: boto3 is missing, or the key cannot be used (one line saying what to check).
    """

    def __init__(
        self,
        key_id: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        if not key_id:
            msg = "security.kms = 'aws' needs security.aws_kms_key_id"
            raise KeystoreError(msg)
        self.key_id = key_id
        self.region = region or "(the AWS chain's)"
        self._endpoint = endpoint_url or "AWS KMS"
        if client is None:
            boto3 = _boto3()
            config = importlib.import_module("botocore.config").Config(**CLIENT_OPTIONS)
            # No region, or a malformed endpoint URL (ValueError).
            failures: tuple[type[Exception], ...] = (*_kms_errors(), ValueError)
            try:
                client = boto3.client(
                    "kms", region_name=region, endpoint_url=endpoint_url, config=config
                )
            except failures as exc:
                action = "connecting"
                raise self._error(action, exc) from None
        self._client = client
        self._errors = _kms_errors()
        self.region = str(client.meta.region_name)
        meta = self._call("DescribeKey", "describe_key", KeyId=key_id)["KeyMetadata"]
        state, usage = meta.get("KeyState"), meta.get("KeyUsage", "ENCRYPT_DECRYPT")
        if state != "Enabled" or usage != "ENCRYPT_DECRYPT":
            msg = (
                f"AWS KMS key {key_id} is {state}, usage {usage}: "
                "it must be an enabled symmetric encryption key"
            )
            raise KeystoreError(msg)
        self.key_arn: str = meta["Arn"]

    @property
    def master_id(self) -> str:
        """The key's ARN: what ``keystore.json`` records as ``master_id``."""
        return self.key_arn

    def _error(self, action: str, exc: Exception, *, name: str | None = None) -> KeystoreError:
        """One line saying what failed and what to check; no secrets, no stack trace."""
        code = ""
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
        kind = type(exc).__name__
        where = f"AWS KMS key {self.key_id}"
        if code in {"InvalidCiphertextException", "IncorrectKeyException"} and name is not None:
            return UnwrapError(name)
        if code == "NotFoundException":
            text = f"{where}: not found in region {self.region}: check security.aws_kms_key_id"
            text += " and security.aws_region"
        elif code in {"AccessDeniedException", "AccessDenied"}:
            text = f"{where}: access denied ({action}): the credentials need {_PERMISSIONS}"
        elif code in {"DisabledException", "KMSInvalidStateException"}:
            text = f"{where}: disabled or pending deletion ({action}): enable it in KMS"
        elif code in {
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "ExpiredTokenException",
        }:
            text = f"{where}: credentials rejected ({code}): check the AWS credentials in use"
        elif kind in {"NoCredentialsError", "PartialCredentialsError"}:
            text = (
                f"{where}: no AWS credentials found: set them in the environment, a profile "
                "or an instance role"
            )
        elif isinstance(exc, ValueError):
            text = f"{where}: invalid endpoint {self._endpoint}: check security.aws_endpoint_url"
        elif kind == "NoRegionError":
            text = f"{where}: no AWS region: set security.aws_region or AWS_REGION"
        elif kind in {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"}:
            text = (
                f"{where}: cannot reach {self._endpoint}: check the network and "
                "security.aws_endpoint_url"
            )
        else:
            text = f"{where}: {action} failed: {code or kind}"
        return KeystoreError(text)

    def _call(self, action: str, method: str, *, name: str | None = None, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, method)(**kwargs)
        except self._errors as exc:
            raise self._error(action, exc, name=name) from None

    def wrap(self, name: str, plaintext: bytes) -> bytes:
        """See base class (``Encrypt``)."""
        reply = self._call(
            "Encrypt",
            "encrypt",
            KeyId=self.key_arn,
            Plaintext=plaintext,
            EncryptionContext={CONTEXT_KEY: name},
        )
        return bytes(reply["CiphertextBlob"])

    def unwrap(self, name: str, wrapped: bytes, *, key_id: str | None = None) -> bytes:
        """See base class (``Decrypt``); ``key_id`` names another key that wrapped it."""
        reply = self._call(
            "Decrypt",
            "decrypt",
            name=name,
            KeyId=key_id or self.key_arn,
            CiphertextBlob=wrapped,
            EncryptionContext={CONTEXT_KEY: name},
        )
        return bytes(reply["Plaintext"])

    def generate_data_key(self, name: str) -> DataKey:
        """See base class (``GenerateDataKey``, AES-256)."""
        reply = self._call(
            "GenerateDataKey",
            "generate_data_key",
            KeyId=self.key_arn,
            KeySpec="AES_256",
            EncryptionContext={CONTEXT_KEY: name},
        )
        return DataKey(name, bytes(reply["Plaintext"]), bytes(reply["CiphertextBlob"]))


class AwsKmsKeystore(Keystore):
    """Named data keys in ``<folder>/keystore.json``, wrapped by an AWS KMS key.

    The file format, locking and methods are :class:`Keystore`'s; it never
    creates a master key, so it is read-only until :meth:`data_key` is called.

    Args:
        folder: Where ``keystore.json`` lives.
        master: The KMS key.
    """

    def __init__(self, folder: Path, master: AwsKmsMaster) -> None:
        super().__init__(folder)
        self.master = master

    @property
    def master_id(self) -> str:
        """See base class: the KMS key's ARN."""
        return self.master.master_id

    def wrap(self, name: str, plaintext: bytes) -> bytes:
        """See base class."""
        return self.master.wrap(name, plaintext)

    def unwrap(self, name: str, wrapped: bytes) -> bytes:
        """See base class."""
        return self.master.unwrap(name, wrapped)

    def generate_data_key(self, name: str) -> DataKey:
        """See base class."""
        return self.master.generate_data_key(name)

    def rewrap(self) -> tuple[str, int]:
        """Re-wrap every data key under the configured KMS key if another KMS key wrapped them.

        Returns:
            The master id the keys were wrapped by, and how many were re-wrapped
            (0 when they already are under the configured key: KMS rotates its
            key material itself).

        Raises:
            KeystoreError: The keys were wrapped by a local master key, or KMS refused.
        """
        with self._lock():
            data = self._load()
            old = data.get("master_id")
            if old is None or old == self.master_id:
                return self.master_id, 0
            if not str(old).startswith("arn:"):
                msg = (
                    f"{self.path} was wrapped by the local master key {old}: moving it to "
                    "AWS KMS is not supported; start a new keystore"
                )
                raise KeystoreError(msg)
            plain = {
                n: self.master.unwrap(n, self._wrapped(n, e), key_id=str(old))
                for n, e in data["keys"].items()
            }
            for name, key in plain.items():
                data["keys"][name]["wrapped"] = base64.urlsafe_b64encode(
                    self.wrap(name, key)
                ).decode()
            data["master_id"] = self.master_id
            data["rotated"] = datetime.now(UTC).isoformat(timespec="seconds")
            self._save(data)
        log.info("re-wrapped %d data keys under AWS KMS key %s", len(plain), self.master_id)
        return str(old), len(plain)

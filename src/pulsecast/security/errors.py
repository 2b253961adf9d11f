"""Errors of the security modules: certificates, keys, API keys and the audit trail."""

from __future__ import annotations

from pulsecast.errors import PulsecastError

__all__ = [
    "AuditError",
    "CertificateError",
    "KeystoreError",
    "SecurityError",
    "UnknownApiKeyError",
    "UnwrapError",
]


class SecurityError(PulsecastError):
    """Root of the security errors."""


class CertificateError(SecurityError):
    """The local CA or a certificate is missing or unusable."""


class KeystoreError(SecurityError):
    """The keystore or its master key is missing, malformed or cannot be used."""


class UnwrapError(KeystoreError):
    """A wrapped key or ciphertext does not open with the key given (wrong key or tampered).

    Attributes:
        name: The data key (or ciphertext context) that did not open.
    """

    def __init__(self, name: str) -> None:
        super().__init__(f"cannot decrypt {name!r}: wrong key or tampered data")
        self.name = name


class UnknownApiKeyError(SecurityError):
    """No API key has this id.

    Attributes:
        key_id: The id asked for.
    """

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key with id {key_id!r}")
        self.key_id = key_id


class AuditError(SecurityError):
    """The audit log cannot be read or written."""

"""Security: certificates, keys, API keys, rate limits and the audit trail.

Cross-cutting: every stage may import it, it imports no stage. What each
module protects today, and what is still to come (TLS on Kafka, PostgreSQL
and HTTP), is in docs/security.md.
"""

from __future__ import annotations

from pulsecast.security._files import security_dir as security_dir
from pulsecast.security._files import write_private as write_private
from pulsecast.security.errors import (
    AuditError as AuditError,
)
from pulsecast.security.errors import (
    CertificateError as CertificateError,
)
from pulsecast.security.errors import (
    KeystoreError as KeystoreError,
)
from pulsecast.security.errors import (
    SecurityError as SecurityError,
)
from pulsecast.security.errors import (
    UnknownApiKeyError as UnknownApiKeyError,
)
from pulsecast.security.errors import (
    UnwrapError as UnwrapError,
)

__all__ = [
    "AuditError",
    "CertificateError",
    "KeystoreError",
    "SecurityError",
    "UnknownApiKeyError",
    "UnwrapError",
    "security_dir",
    "write_private",
]

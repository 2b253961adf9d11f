"""Alerts received from Alertmanager's webhook, recorded to a JSON Lines file.

Alertmanager posts each notification (a group of firing or resolved alerts,
webhook payload version 4) to the monitor's ``POST /alerts``
(:mod:`pulsecast.monitoring.monitor`); :func:`parse_notification` turns it
into :class:`RecordedAlert` rows and :class:`AlertLog` appends them, one JSON
object a line, to ``<data_dir>/monitoring/alerts.jsonl``. :func:`read_alerts`
reads them back, newest last, for the dashboard's alert feed and for tests.
The file is append-only; a line that cannot be read (a crash mid-write) is
skipped with a warning.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from pulsecast.config import Settings

__all__ = ["AlertLog", "RecordedAlert", "alerts_file", "parse_notification", "read_alerts"]

log = logging.getLogger(__name__)


class RecordedAlert(msgspec.Struct, frozen=True, kw_only=True):
    """One alert of one notification, as recorded.

    Attributes:
        received_at: When the monitor received it (RFC 3339, UTC).
        status: ``firing`` or ``resolved``.
        alertname: The rule's name (``PulsecastComponentDown``).
        severity: The rule's ``severity`` label (``critical``, ``warning``), or "".
        labels: Every label of the alert.
        annotations: Its summary, description and runbook.
        starts_at: When it started firing (RFC 3339).
        ends_at: When it resolved (RFC 3339; Alertmanager's zero time while firing).
        fingerprint: Alertmanager's id of the alert (the same for firing and resolved).
        receiver: The Alertmanager receiver that sent it.
    """

    received_at: str
    status: str
    alertname: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    fingerprint: str
    receiver: str


class _Alert(msgspec.Struct, rename="camel"):
    status: str
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    starts_at: str = ""
    ends_at: str = ""
    fingerprint: str = ""


class _Notification(msgspec.Struct):
    alerts: list[_Alert]
    receiver: str = ""
    status: str = ""


_notification = msgspec.json.Decoder(_Notification)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(RecordedAlert)


def parse_notification(body: bytes, *, now: datetime | None = None) -> list[RecordedAlert]:
    """The alerts of one Alertmanager webhook notification.

    Args:
        body: The JSON body Alertmanager posted.
        now: The reception time (default: now).

    Returns:
        One row per alert of the notification.

    Raises:
        ValueError: The body is not an Alertmanager notification.
    """
    try:
        notification = _notification.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        msg = f"not an Alertmanager webhook notification: {exc}"
        raise ValueError(msg) from exc
    received = (now or datetime.now(UTC)).isoformat()
    return [
        RecordedAlert(
            received_at=received,
            status=alert.status,
            alertname=alert.labels.get("alertname", ""),
            severity=alert.labels.get("severity", ""),
            labels=alert.labels,
            annotations=alert.annotations,
            starts_at=alert.starts_at,
            ends_at=alert.ends_at,
            fingerprint=alert.fingerprint,
            receiver=notification.receiver,
        )
        for alert in notification.alerts
    ]


def alerts_file(settings: Settings) -> Path:
    """Where the monitor records alerts: ``<data_dir>/monitoring/alerts.jsonl``."""
    return settings.data_dir / "monitoring" / "alerts.jsonl"


class AlertLog:
    """The append-only file of recorded alerts.

    Args:
        path: The JSON Lines file (created with its folder on first append).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, alerts: list[RecordedAlert]) -> None:
        """Record ``alerts`` at the end of the file (one line each, in one write)."""
        if not alerts:
            return
        data = b"".join(_encoder.encode(alert) + b"\n" for alert in alerts)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as out:
                out.write(data)

    def read(self, *, limit: int | None = None, status: str | None = None) -> list[RecordedAlert]:
        """The recorded alerts, oldest first.

        Args:
            limit: Only the latest this many.
            status: Only those with this status (``firing`` or ``resolved``).
        """
        kept: deque[RecordedAlert] = deque(maxlen=limit)
        try:
            with self.path.open("rb") as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    try:
                        alert = _decoder.decode(line)
                    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                        log.warning("skipped unreadable line %s of %s: %s", number, self.path, exc)
                        continue
                    if status is None or alert.status == status:
                        kept.append(alert)
        except FileNotFoundError:
            return []
        return list(kept)


def read_alerts(
    settings: Settings, *, limit: int | None = None, status: str | None = None
) -> list[RecordedAlert]:
    """The alerts the monitor recorded for this data directory, oldest first.

    Args:
        settings: The platform's settings (the data directory).
        limit: Only the latest this many.
        status: Only those with this status (``firing`` or ``resolved``).
    """
    return AlertLog(alerts_file(settings)).read(limit=limit, status=status)

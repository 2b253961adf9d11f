"""The monitor: Alertmanager's webhook receiver and the probes' ``/metrics``, in one process.

``pulsecast up --with prometheus`` starts it beside Prometheus and
Alertmanager (:mod:`pulsecast.services.prometheus`) as
``python -m pulsecast.monitoring.monitor [--config FILE] --data-dir DIR``, on
``monitoring.host:monitoring.monitor_port``:

- ``POST /alerts``: Alertmanager's webhook; each alert is recorded
  (:mod:`pulsecast.monitoring.webhook`);
- ``GET /alerts?limit=N&status=firing``: the recorded alerts, newest last;
- ``GET /metrics``: the probes (:mod:`pulsecast.monitoring.probes`) and the
  count of alerts received, for Prometheus to scrape;
- ``GET /healthz``: liveness.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from pulsecast.config import PathsSettings, Settings, load_settings
from pulsecast.errors import PulsecastError
from pulsecast.logging import configure_from_settings
from pulsecast.monitoring import metrics
from pulsecast.monitoring.probes import Probes
from pulsecast.monitoring.webhook import AlertLog, alerts_file, parse_notification

__all__ = ["create_app", "main"]

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """Build the monitor's application for ``settings``."""
    alert_log = AlertLog(alerts_file(settings))
    probes = Probes(settings)
    probe_registry = CollectorRegistry(auto_describe=False)
    probe_registry.register(probes)
    app = FastAPI(title="pulsecast monitor", version="1")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the monitor is serving."""
        return {"status": "ok"}

    @app.post("/alerts")
    async def receive(request: Request) -> Response:
        """Record the alerts of one Alertmanager notification."""
        try:
            alerts = parse_notification(await request.body())
        except ValueError as exc:
            return Response(str(exc), 400, media_type="text/plain")
        await asyncio.to_thread(alert_log.append, alerts)
        for alert in alerts:
            metrics.ALERTS_RECEIVED.labels(alert.status).inc()
            log.info("alert %s %s %s", alert.alertname, alert.status, alert.fingerprint)
        return Response(status_code=204)

    @app.get("/alerts")
    async def recorded(limit: int = 100, status: str | None = None) -> Response:
        """The recorded alerts, newest last."""
        alerts = await asyncio.to_thread(alert_log.read, limit=limit, status=status)
        return Response(msgspec.json.encode(alerts), media_type="application/json")

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Probes (measured now) and the process's own metrics, in Prometheus's text format."""
        probed = await asyncio.to_thread(generate_latest, probe_registry)
        return Response(generate_latest(REGISTRY) + probed, media_type=CONTENT_TYPE_LATEST)

    return app


def main(argv: list[str] | None = None) -> int:
    """Run the monitor in the foreground until interrupted.

    Args:
        argv: ``[--config FILE] [--data-dir DIR]`` (default: the process's arguments).

    Returns:
        The exit code.
    """
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m pulsecast.monitoring.monitor")
    parser.add_argument("--config", type=Path, default=None, help="pulsecast.toml to read")
    parser.add_argument("--data-dir", type=Path, default=None, help="paths.data_dir to use")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except PulsecastError as exc:
        parser.exit(2, f"error: {exc}\n")
    if args.data_dir is not None:
        paths = PathsSettings(data_dir=args.data_dir)
        settings = settings.model_copy(update={"paths": paths})
    configure_from_settings(settings)
    mon = settings.monitoring
    uvicorn.run(
        create_app(settings),
        host=mon.host,
        port=mon.monitor_port,
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The live dashboard's web application: one page, its static files and JSON endpoints.

``GET /`` is the page (``static/index.html``); its script polls the JSON
endpoints every ``dashboard.refresh_s`` seconds and redraws the charts in place
with ``Plotly.react``, so the page never reloads. plotly.js is served from the
``plotly`` Python package (``/static/plotly.min.js``): the page works offline.
The endpoints (``/api/...``) answer what :class:`~pulsecast.dashboard.panels.DashboardData`
builds; each takes ``since`` (an age such as ``1h``, or ``min``) and ``stream``.
:func:`serve` runs the application with uvicorn (``pulsecast dashboard``), over
HTTPS with the local CA's ``dashboard`` certificate when ``dashboard.tls`` (always
in secure mode). With ``dashboard.auth`` (always in secure mode) every route but
the login page asks for a login: see :mod:`pulsecast.dashboard.login`.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse, Response

from pulsecast.config import Settings
from pulsecast.dashboard.errors import DashboardError
from pulsecast.dashboard.login import install_login
from pulsecast.dashboard.panels import RANGES, DashboardData
from pulsecast.security.sessions import DashboardAuth
from pulsecast.security.tls import uvicorn_options

__all__ = ["create_app", "plotly_js", "serve"]

log = logging.getLogger(__name__)

_STATIC = resources.files("pulsecast.dashboard") / "static"
_FILES = {"app.js": "text/javascript", "style.css": "text/css"}


def plotly_js() -> Path:
    """The minified plotly.js shipped in the ``plotly`` Python package."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _since(since: str) -> str:
    if since not in RANGES:
        raise HTTPException(
            status_code=400, detail=f"since must be one of {', '.join(RANGES)}, got {since!r}"
        )
    return since


_LOGOUT = (
    '<form class="logout" method="post" action="/logout">'
    '<button type="submit">log out</button></form>'
)


def create_app(
    settings: Settings, *, data: DashboardData | None = None, auth: DashboardAuth | None = None
) -> FastAPI:
    """The dashboard application over the lake of ``settings``.

    Args:
        settings: The platform's settings (the lake, ``dashboard.*``).
        data: The panels' data provider (default: one over ``settings``, for its
            ``dashboard.stream``); the application closes it at shutdown.
        auth: The login (default: the one ``dashboard.auth`` asks for, or none).
    """
    panels = data or DashboardData(settings)
    auth = auth or DashboardAuth.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        panels.close()

    app = FastAPI(title="pulsecast dashboard", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.panels = panels
    page = (_STATIC / "index.html").read_text(encoding="utf-8")
    page = page.replace("<!--__PULSECAST_LOGOUT__-->", _LOGOUT if auth is not None else "")
    if auth is not None:
        install_login(app, auth)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        config = json.dumps(panels.meta())
        return HTMLResponse(page.replace("__PULSECAST_CONFIG__", config))

    @app.get("/static/plotly.min.js")
    def plotly_file() -> FileResponse:
        return FileResponse(
            plotly_js(),
            media_type="text/javascript",
            headers={"Cache-Control": "max-age=86400"},
        )

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in _FILES:
            raise HTTPException(status_code=404, detail=f"no file {name}")
        return Response((_STATIC / name).read_bytes(), media_type=_FILES[name])

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/meta")
    def meta() -> dict[str, Any]:
        return panels.meta()

    @app.get("/api/overview")
    def overview(since: str = "1h", stream: str | None = None) -> dict[str, Any]:
        return panels.overview(since=_since(since), stream=stream)

    @app.get("/api/lag")
    def lag(stream: str | None = None) -> dict[str, Any]:
        return panels.lag(stream=stream)

    @app.get("/api/series")
    def series(since: str = "24h", stream: str | None = None) -> dict[str, Any]:
        return panels.series(since=_since(since), stream=stream)

    @app.get("/api/entity")
    def entity(
        key: str = Query(""),
        metric: str = Query(""),
        since: str = "24h",
        stream: str | None = None,
    ) -> dict[str, Any]:
        return panels.entity(key=key, metric=metric, since=_since(since), stream=stream)

    @app.get("/api/alerts")
    def alerts(since: str = "24h", stream: str | None = None) -> dict[str, Any]:
        return panels.alerts(since=_since(since), stream=stream)

    @app.get("/api/models")
    def models(since: str = "24h", stream: str | None = None) -> dict[str, Any]:
        return panels.models(since=_since(since), stream=stream)

    @app.get("/api/quality")
    def quality(since: str = "24h", stream: str | None = None) -> dict[str, Any]:
        return panels.quality(since=_since(since), stream=stream)

    return app


def serve(settings: Settings, *, stream: str | None = None) -> None:
    """Run the dashboard in the foreground until interrupted (``dashboard.host``/``port``).

    Raises:
        DashboardError: The port is taken, or ``stream`` is not configured.
        CertificateError: It serves HTTPS and its certificate is missing.
    """
    import uvicorn

    host, port = settings.dashboard.host, settings.dashboard.port
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        reason = (exc.strerror or str(exc)).split(" (")[0]
        msg = (
            f"cannot serve the dashboard on {host}:{port}: {reason}; "
            "choose another port with --port or PULSECAST_DASHBOARD__PORT"
        )
        raise DashboardError(msg, port=port) from exc
    if stream is not None and stream not in settings.streams:
        msg = f"stream {stream!r} is not configured; streams: {', '.join(sorted(settings.streams))}"
        raise DashboardError(msg)
    options = uvicorn_options(settings, "dashboard")  # fails before serving when a file is missing
    if settings.dashboard.auth and not settings.dashboard.tls:
        log.warning(
            "the dashboard asks for a login over plain HTTP: keys and session cookies cross "
            "the network in clear, and browsers may not send the Secure cookie back; "
            "set dashboard.tls"
        )
    app = create_app(settings, data=DashboardData(settings, stream=stream))
    log.info("dashboard on %s", settings.dashboard.url)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        **options,
    )

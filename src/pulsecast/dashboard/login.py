"""The dashboard's login: a page, its form, the session cookie, and a gate on every route.

Installed by :func:`~pulsecast.dashboard.app.create_app` when ``dashboard.auth``
is on (always in secure mode); the decisions are
:class:`~pulsecast.security.sessions.DashboardAuth`'s. Open without a login:
the login page (``GET``/``POST /login``), ``POST /logout``, ``/static/style.css``
(the login page's look) and ``/healthz`` (the stack's liveness probe). Anything
else without a session or a key: ``GET /`` shows the login page in place of
the dashboard, every other path (the ``/api/...`` endpoints the page polls
among them) answers 401 with a one-line JSON error.

The session cookie is ``HttpOnly`` (no script reads it), ``Secure`` (sent over
HTTPS only), ``SameSite=Strict`` (no cross-site request carries it, which also
stops cross-site form posts) and ends after ``dashboard.session_max_age_s``;
the server forgets the session at the same time.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from pulsecast.security.guard import Refusal
from pulsecast.security.sessions import SESSION_COOKIE, DashboardAuth

__all__ = ["install_login", "login_page"]

log = logging.getLogger(__name__)

_STATIC = resources.files("pulsecast.dashboard") / "static"
#: Paths served without a login.
OPEN_PATHS = frozenset({"/login", "/logout", "/static/style.css", "/healthz"})
#: The largest login form read (a key is about 60 bytes).
_MAX_FORM_BYTES = 4096
#: Sent with every answer of a dashboard that asks for a login: no framing (clickjacking).
_HEADERS = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}

_EXPIRED_NOTICE = "Your session expired or ended. Log in again."
_WHY = {
    401: "That key is not valid: unknown, mistyped or revoked.",
    403: "That key may not read the dashboard: it lacks the read role (an ingest key only sends "
    "events). Create one with the read role.",
}

_Next = Callable[[Request], Awaitable[Response]]


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = round(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def login_page(
    auth: DashboardAuth,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """The login page, with an error (red) or a notice, as an HTML response."""
    block = ""
    if error:
        text = html.escape(error)
        block = f'<div class="notice show error" id="login-error" role="alert">{text}</div>'
    elif notice:
        block = f'<div class="notice show" id="login-notice">{html.escape(notice)}</div>'
    page = (_STATIC / "login.html").read_text(encoding="utf-8")
    page = page.replace("__PULSECAST_NOTICE__", block)
    page = page.replace("__PULSECAST_MAX_AGE__", _duration(auth.max_age_s))
    extra = {"Cache-Control": "no-store", **(headers or {})}
    return HTMLResponse(page, status_code=status, headers=extra)


def _message(refusal: Refusal) -> str:
    if refusal.status == 429:
        wait = refusal.headers.get("Retry-After", "1")
        return f"Too many attempts from your address ({refusal.message}); try again in {wait} s."
    return _WHY.get(refusal.status, refusal.message)


def _address(request: Request) -> str:
    # The TCP peer: headers such as X-Forwarded-For are not trusted (see guard).
    return request.client.host if request.client else "unknown"


def _cross_site(request: Request) -> bool:
    """Whether a form post comes from another site's page (its ``Origin`` is not this host)."""
    origin = request.headers.get("origin")
    if origin is None:  # not a browser's form post, or an old browser: SameSite still holds
        return False
    return origin == "null" or urlsplit(origin).netloc != request.headers.get("host", "")


def _set_cookie(response: Response, token: str, max_age_s: float) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(max_age_s),
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def _clear_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")


async def _form_key(request: Request) -> str | None:
    """The ``key`` field of a urlencoded form; None when it is too large or has too many fields."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return None
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    except ValueError:  # more than 10 fields
        return None
    return (fields.get("key") or [""])[0].strip()


def install_login(app: FastAPI, auth: DashboardAuth) -> None:
    """Add the login routes to ``app`` and require a login on every other route."""

    @app.middleware("http")
    async def require_login(request: Request, call_next: _Next) -> Response:
        path = request.url.path
        if path in OPEN_PATHS:
            response = await call_next(request)
        else:
            token = request.cookies.get(SESSION_COOKIE)
            answer = await asyncio.to_thread(
                auth.authenticate,
                token,
                request.headers,
                _address(request),
                target=f"dashboard {path[:200]}",
            )
            if not isinstance(answer, Refusal):
                response = await call_next(request)
            elif path == "/" and request.method in ("GET", "HEAD") and answer.status == 401:
                # A browser's page load: show the login page in place of the dashboard.
                notice = _EXPIRED_NOTICE if token else None
                response = login_page(auth, notice=notice)
            else:
                response = JSONResponse(
                    {"error": answer.message}, status_code=answer.status, headers=answer.headers
                )
            if isinstance(answer, Refusal) and token:
                _clear_cookie(response)
        response.headers.update(_HEADERS)
        return response

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, expired: str | None = None) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        if token and auth.sessions.get(token) is not None:
            return RedirectResponse("/", status_code=303)
        return login_page(auth, notice=_EXPIRED_NOTICE if expired is not None else None)

    @app.post("/login")
    async def login(request: Request) -> Response:
        if _cross_site(request):
            return login_page(auth, error="Log in from the dashboard's own page.", status=403)
        key = await _form_key(request)
        if key is None:
            return login_page(auth, error="The form is too large for an API key.", status=413)
        answer = await asyncio.to_thread(auth.login, key, _address(request))
        if isinstance(answer, Refusal):
            error = "Enter an API key." if not key else _message(answer)
            return login_page(auth, error=error, status=answer.status, headers=answer.headers)
        token, _key = answer
        response = RedirectResponse("/", status_code=303)
        _set_cookie(response, token, auth.max_age_s)
        return response

    @app.post("/logout")
    def logout(request: Request) -> Response:
        if _cross_site(request):
            return JSONResponse({"error": "cross-site logout refused"}, status_code=403)
        auth.logout(request.cookies.get(SESSION_COOKIE), _address(request))
        response = RedirectResponse("/login", status_code=303)
        _clear_cookie(response)
        return response

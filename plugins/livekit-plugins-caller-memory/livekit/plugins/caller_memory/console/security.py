"""What every response of the console carries, and the requests it refuses before any page.

- Security headers on every response: a Content-Security-Policy that allows the console's own
  scripts and styles only (no inline script, no frame, forms post to the console only),
  ``nosniff``, no referrer, no caching of pages (they hold personal data; the static files may
  be cached), and HSTS over HTTPS.
- A request whose ``Host`` is not one of the console's names is refused (``400``): a web page
  that rebinds its own name to 127.0.0.1 cannot talk to the console.
- CSRF: every form carries the session's token (:func:`csrf_token`), checked on every POST
  (:func:`csrf_ok`) together with the browser's ``Sec-Fetch-Site`` where it is sent.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSRF_FIELD", "SecurityHeaders", "csrf_ok", "csrf_token", "new_csrf_token"]

CSRF_FIELD = "csrf_token"
"""The form field (and the ``X-CSRF-Token`` header, for htmx) carrying the CSRF token."""
_CSRF_SESSION_KEY = "csrf"

_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


class SecurityHeaders:
    """ASGI middleware: refuses unknown hosts and sets the security headers.

    Args:
        app: The application.
        hosts: The host names the console answers to (without port).
        static_prefix: Paths under it (after the mount's root path) may be cached.
    """

    def __init__(self, app: ASGIApp, hosts: Iterable[str], static_prefix: str = "/static/") -> None:
        self._app = app
        self._hosts = {h.lower() for h in hosts}
        self._static = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if _host(Headers(scope=scope).get("host", "")) not in self._hosts:
            refusal = PlainTextResponse(
                "Unknown host: add it to MEMORY_CONSOLE_ALLOWED_HOSTS.", 400
            )
            await refusal(scope, receive, _with_headers(send, scope, cacheable=False))
            return
        path = (
            scope["path"][len(scope.get("root_path", "")) :] if _mounted(scope) else scope["path"]
        )
        cacheable = path.startswith(self._static)
        await self._app(scope, receive, _with_headers(send, scope, cacheable=cacheable))


def _mounted(scope: Scope) -> bool:
    root = scope.get("root_path", "")
    return bool(root) and str(scope["path"]).startswith(root)


def _with_headers(send: Send, scope: Scope, *, cacheable: bool) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in _HEADERS.items():
                headers[name] = value
            headers["cache-control"] = "private, max-age=3600" if cacheable else "no-store"
            if scope.get("scheme") == "https":
                headers["strict-transport-security"] = "max-age=31536000"
        await send(message)

    return sending


def _host(header: str) -> str:
    # "[::1]:8470" -> "[::1]", "localhost:8470" -> "localhost"
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    session: dict[str, Any] = request.session
    token = session.get(_CSRF_SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[_CSRF_SESSION_KEY] = token
    return token


def new_csrf_token(request: Request) -> str:
    """Replace the session's CSRF token (at login: a token seen before it is no longer good)."""
    request.session.pop(_CSRF_SESSION_KEY, None)
    return csrf_token(request)


def csrf_ok(request: Request, sent: object) -> bool:
    """True when a POST carries the session's CSRF token and no browser calls it cross-site."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    expected = request.session.get(_CSRF_SESSION_KEY)
    sent = sent if isinstance(sent, str) else request.headers.get("x-csrf-token")
    if not isinstance(expected, str) or not isinstance(sent, str):
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())

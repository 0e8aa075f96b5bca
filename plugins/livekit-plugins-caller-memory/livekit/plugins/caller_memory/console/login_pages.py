"""The login pages: logging in with the team's token and a name, and logging out.

A login is a record on the server (:class:`~.logins.LoginRecords`) that the session cookie
names; logging out deletes it, so a copy of the cookie is refused too. Failed logins are
throttled by client and by name. With ``MEMORY_CONSOLE_AUTH=proxy`` the proxy says who is
asking and these pages only send the operator on.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..log import logger
from .audit import AuditLogError
from .logins import LoginThrottle
from .pages import LOGIN_KEY, MAX_NAME, Console, form_text, read_form
from .rendering import base_path
from .security import CSRF_FIELD, csrf_ok, new_csrf_token

__all__ = ["LoginPages"]


class LoginPages:
    """``/login`` and ``/logout``.

    Args:
        console: The console the operator logs in to.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.throttle = LoginThrottle()

    async def login_page(self, request: Request) -> Response:
        """``GET /login``."""
        if self.console.settings.auth == "proxy" or self.console.operator(request):
            return RedirectResponse(f"{base_path(request)}/callers", status_code=303)
        ended = request.session.pop(LOGIN_KEY, None) is not None
        return self.console.page(request, "login.html", ended=ended)

    async def login(self, request: Request) -> Response:
        """``POST /login``: the operator's name (for the audit log) and the team's token."""
        form = await read_form(request)
        if self.console.settings.auth == "proxy":
            return RedirectResponse(f"{base_path(request)}/callers", status_code=303)
        if not csrf_ok(request, form.get(CSRF_FIELD)):
            return self.console.refused(request)
        name = " ".join(form_text(form, "name").split())[:MAX_NAME]
        client = request.client.host if request.client else None
        if self.throttle.blocked(client, name):
            return self.console.page(
                request,
                "login.html",
                429,
                name=name,
                error="Too many failed logins from here or under this name: wait a minute.",
            )
        try:
            if not name or not self._token_ok(form_text(form, "token")):
                self.throttle.failed(client, name)
                self.console.write_audit(request, name or "(no name)", "login_refused")
                logger.warning("console: a login was refused")
                return self.console.page(
                    request, "login.html", 401, name=name, error="Wrong token, or no name given."
                )
            login_id = self.console.logins.open(name)
            try:
                self.console.write_audit(request, name, "login")
            except AuditLogError:
                self.console.logins.close(login_id)  # a login the audit log lacks is no login
                raise
        except AuditLogError as e:
            logger.error("console: %s", e)
            return self.console.page(request, "login.html", 500, name=name, error=f"{e}.")
        except OSError as e:
            folder = self.console.logins.folder
            logger.error("console: a login cannot be recorded in %s: %s", folder,
                         e.strerror or type(e).__name__)  # fmt: skip
            error = f"The login cannot be recorded in {folder}."
            return self.console.page(request, "login.html", 500, name=name, error=error)
        request.session.clear()  # a session from before the login is not carried over
        request.session[LOGIN_KEY] = login_id
        new_csrf_token(request)
        return RedirectResponse(f"{base_path(request)}/callers", status_code=303)

    async def logout(self, request: Request, who: str) -> Response:
        """``POST /logout``: the login's record goes, so its cookie is refused from now on
        (a copy of it too)."""
        # Ended first: an audit log that cannot be written must not keep anyone logged in.
        self.console.logins.close(request.session.get(LOGIN_KEY))
        request.session.clear()
        self.console.write_audit(request, who, "logout")
        return RedirectResponse(f"{base_path(request)}/login", status_code=303)

    def _token_ok(self, sent: str) -> bool:
        assert self.console.settings.token is not None
        expected = self.console.settings.token.get_secret_value()
        # Digests first: the comparison then takes as long whatever the length sent.
        return hmac.compare_digest(
            hashlib.sha256(sent.strip().encode()).digest(),
            hashlib.sha256(expected.encode()).digest(),
        )

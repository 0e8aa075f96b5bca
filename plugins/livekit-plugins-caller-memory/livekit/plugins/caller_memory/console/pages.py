"""What every page of the console shares: the :class:`Console`.

It holds the store the pages act through (opened on first use), says who is asking (logged in
with the team's token, or named by a reverse proxy's header), guards the operators' pages
(:meth:`Console.guarded`: a login, a CSRF token on every POST, and the store's and the audit
log's failures said in words) and renders pages. The pages themselves are grouped by what they
serve: :mod:`.caller_pages`, :mod:`.erasure_pages`, :mod:`.health_pages`, :mod:`.login_pages`
(the first two find a caller with :mod:`.caller_lookup`).
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..calls import SessionManager
from ..config import RedisConfig
from ..exceptions import ConfigError, StoreUnavailableError
from ..log import logger
from ..store import open_store
from .audit import AuditLog, AuditLogError, default_audit_log
from .health import HealthMonitor, store_kind
from .logins import LoginRecords, TrustedProxies, proxy_vouches, session_signing_key
from .rendering import base_path, page_templates
from .security import CSRF_FIELD, csrf_ok, csrf_token
from .settings import ConsoleSettings

__all__ = [
    "LOGIN_KEY",
    "MAX_NAME",
    "STORE_ERRORS",
    "Console",
    "Endpoint",
    "form_text",
    "read_form",
]

MAX_NAME = 60
"""The longest operator name kept (a login's, a proxy header's)."""
STORE_ERRORS = (StoreUnavailableError, RedisError, OSError, asyncio.TimeoutError)
"""What a store that is not answering raises."""
LOGIN_KEY = "login"
"""The session entry holding the login's id (its record is on the server)."""

Endpoint = Callable[[Request, str], Awaitable[Response]]
"""A page for operators: the request, and who is asking."""


class Console:
    """The console's state, and what its pages share; :func:`~.app.create_app` serves them.

    Args:
        config: Where memory is (the plugin's settings, before a private server is picked).
        settings: Who may use the console.
        manager: Act through this session manager (an agent's own, when the console is mounted
            in its process); by default the console opens the store the settings name.
    """

    def __init__(
        self,
        config: RedisConfig,
        settings: ConsoleSettings,
        manager: SessionManager | None = None,
    ) -> None:
        if settings.auth == "token" and settings.token is None:
            raise ConfigError(
                "MEMORY_CONSOLE_TOKEN is not set: the console needs a login token (16+ "
                "characters), or MEMORY_CONSOLE_AUTH=proxy behind an authenticating proxy"
            )
        self.config = config
        self.settings = settings
        self.audit = AuditLog(settings.audit_log or default_audit_log(config))
        self._manager = manager
        self._owns_manager = manager is None
        self._monitor: HealthMonitor | None = None
        self._opening = asyncio.Lock()
        self.proxies = TrustedProxies(settings.proxies)
        self.signing_key = session_signing_key(settings)
        self.logins = LoginRecords(
            config.data_dir / "console" / "logins",
            self.signing_key,
            settings.token.get_secret_value() if settings.token else "",
            settings.session_hours * 3600,
        )
        self.templates = page_templates()

    # -- the store -------------------------------------------------------------------------

    async def manager(self) -> SessionManager:
        """The session manager the console acts through (the store is opened on first use)."""
        async with self._opening:
            if self._manager is None:
                # No maintenance here: flushing outboxes and recovering calls is the workers'.
                store = await open_store(
                    self.config, while_down="the console's pages say so until Redis answers"
                )
                self._manager = SessionManager(store)
            return self._manager

    async def monitor(self) -> HealthMonitor:
        """The health page's numbers."""
        manager = await self.manager()
        if self._monitor is None:
            kind = store_kind(manager.store, self.config)
            self._monitor = HealthMonitor(
                manager.store, manager.outbox, kind, self.settings.stats_ttl_s
            )
        return self._monitor

    async def aclose(self) -> None:
        """Close the store, if the console opened it."""
        if self._monitor is not None:
            await self._monitor.aclose()  # a full count under way reads the store
        if self._owns_manager and self._manager is not None:
            await self._manager.store.disconnect()
            self._manager = None
            self._monitor = None

    # -- who is asking ---------------------------------------------------------------------

    def operator(self, request: Request) -> str | None:
        """The operator behind a request, or None when nobody is logged in: the proxy's
        header when the proxy vouches for the request, else the login the session cookie
        names, when its record on the server is still in force."""
        cached = request.scope.get("caller_memory.console.operator")
        if isinstance(cached, tuple) and isinstance(cached[0], (str, type(None))):
            return cached[0]
        if self.settings.auth == "proxy":
            vouched = proxy_vouches(request, self.settings, self.proxies)
            who = request.headers.get(self.settings.proxy_header, "").strip() if vouched else ""
        else:
            who = self.logins.who(request.session.get(LOGIN_KEY)) or ""
        found = who[:MAX_NAME] or None
        request.scope["caller_memory.console.operator"] = (found,)
        return found

    def guarded(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        """``endpoint`` for operators only; a POST must carry the session's CSRF token."""

        async def guarded(request: Request) -> Response:
            if request.method == "POST" and not csrf_ok(
                request, (await read_form(request)).get(CSRF_FIELD)
            ):
                return self.refused(request)
            who = self.operator(request)
            if who is None:
                if self.settings.auth == "proxy":
                    return self.page(
                        request,
                        "error.html",
                        401,
                        title="Not signed in",
                        message="The proxy in front of the console did not name "
                        f"you (header {self.settings.proxy_header}), or the request did not "
                        "come through it (MEMORY_CONSOLE_PROXY_SECRET, "
                        "MEMORY_CONSOLE_TRUSTED_PROXIES).",
                    )
                login = f"{base_path(request)}/login"
                if request.headers.get("hx-request"):
                    return Response(status_code=401, headers={"HX-Redirect": login})
                return RedirectResponse(login, status_code=303)
            try:
                return await endpoint(request, who)
            except AuditLogError as e:
                logger.error("console: %s", e)
                return self.page(
                    request,
                    "error.html",
                    500,
                    title="The audit log cannot be written",
                    message=f"{e}. Nothing is shown or exported until it can be; an erasure "
                    "asked for may have been carried out: look at the caller again.",
                )
            except STORE_ERRORS as e:
                logger.warning(
                    "console: the memory store failed", extra={"error": type(e).__name__}
                )
                return self.page(
                    request,
                    "error.html",
                    503,
                    title="The memory store is not answering",
                    message="Try again in a moment; the health page shows what the store says.",
                )
            except Exception as e:
                # Where it failed, never what it said: an error's text may quote caller data.
                logger.error(
                    "console: a page failed: %s\n%s",
                    type(e).__name__,
                    "".join(traceback.format_tb(e.__traceback__)).rstrip(),
                )
                return self.page(
                    request,
                    "error.html",
                    500,
                    title="Something went wrong",
                    message="The page failed; the console's log says where.",
                )

        return guarded

    # -- rendering -------------------------------------------------------------------------

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        """Render a page (every page gets the CSRF token, the operator and the base path)."""
        context.update(
            base=base_path(request),
            csrf=csrf_token(request),
            csrf_field=CSRF_FIELD,
            who=self.operator(request),
            auth=self.settings.auth,
        )
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    def refused(self, request: Request) -> Response:
        """The answer to a form without this console's CSRF token."""
        return self.page(
            request,
            "error.html",
            403,
            title="Form refused",
            message="This form was not sent by a page of this console (its "
            "security token is missing or out of date). Go back, reload the page "
            "and try again.",
        )

    def write_audit(self, request: Request, who: str, action: str, **what: Any) -> None:
        """Record what an operator did (and from which client) in the audit log.

        Raises:
            AuditLogError: The audit log cannot be written.
        """
        client = request.client.host if request.client else None
        self.audit.write(who, action, client=client, **what)


async def read_form(request: Request) -> FormData:
    """The request's form (parsed once: Starlette keeps it; the console's forms are a few
    small fields)."""
    return await request.form(max_files=0, max_fields=20, max_part_size=64 * 1024)


def form_text(form: FormData, name: str) -> str:
    """A text field of ``form`` ("" when missing, or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""

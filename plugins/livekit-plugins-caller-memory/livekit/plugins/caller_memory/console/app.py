"""The console's web application (Starlette, server-rendered Jinja templates, a little htmx).

Every page but the login page needs an operator: logged in with the team's token (a signed
session cookie), or named by a reverse proxy's header. Every action on a caller goes through
the plugin's own operations, as the CLI's do: the page of a caller is
:meth:`~..calls.SessionManager.export_caller`'s data, the download is that data as
``caller-memory export`` prints it, erasure is :meth:`~..calls.SessionManager.forget_caller`
(``caller-memory forget``) or, for an erasure request, :meth:`~..calls.SessionManager.forget_user`,
and withdrawing one wrong fact is :meth:`~..store.MemoryStore.withdraw_fact`
(``caller-memory withdraw-fact``), with the checks of :mod:`..privacy`.

A phone number travels in POST bodies only: never in a URL, a header, a log line or the audit
log. Mount the app in an ASGI application of your own with :func:`create_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .. import privacy
from ..calls import SessionManager
from ..config import RedisConfig
from ..exceptions import ConfigError, InvalidPhoneNumberError, StoreUnavailableError
from ..identity import has_country_code, in_region
from ..log import logger
from ..memory.merge import withdraw_fact
from ..store import open_store
from .audit import AuditLog, AuditLogError, default_audit_log
from .caller_view import (
    REDACTION_TAG,
    CallerView,
    build_caller_view,
    countries,
    country_name,
    time_element,
    why_refused,
)
from .census import CHART_HOURS
from .health import HealthMonitor, store_kind
from .logins import (
    ForwardedHeaders,
    LoginRecords,
    LoginThrottle,
    TrustedProxies,
    proxy_vouches,
    session_signing_key,
)
from .paging import erasure_request_page, parse_cursor, request_time
from .sampling import SAMPLE_KEYS
from .security import CSRF_FIELD, SecurityHeaders, csrf_ok, csrf_token, new_csrf_token
from .settings import ConsoleSettings

__all__ = ["Console", "create_app"]

_HERE = Path(__file__).parent
_SESSION_COOKIE = "caller_memory_console"
_MAX_NAME = 60
_USER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LINE_REGIONS_TTL_S = 60.0
"""How long the console reuses the trunks' regions it read (they change when a line does)."""
_STORE_ERRORS = (StoreUnavailableError, RedisError, OSError, asyncio.TimeoutError)
_LOGIN_KEY = "login"
"""The session entry holding the login's id (its record is on the server)."""

_FULL_COUNT_WAIT_S = 2.0
"""How long the button waits for a full count before showing the page (it goes on)."""

Endpoint = Callable[[Request, str], Awaitable[Response]]
"""A page for operators: the request, and who is asking."""


class Console:
    """The console's state and pages; :func:`create_app` serves them.

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
        self._lines: tuple[float, list[str]] | None = None
        """The trunks' regions as last read, and when (monotonic seconds)."""
        self._throttle = LoginThrottle()
        self.proxies = TrustedProxies(settings.proxies)
        self.signing_key = session_signing_key(settings)
        self.logins = LoginRecords(
            config.data_dir / "console" / "logins",
            self.signing_key,
            settings.token.get_secret_value() if settings.token else "",
            settings.session_hours * 3600,
        )
        self.templates = Jinja2Templates(directory=_HERE / "templates")
        self.templates.env.filters["redactions"] = _mark_redactions
        self.templates.env.filters["when"] = _when
        self.templates.env.filters["plural"] = _plural
        self.templates.env.filters["noun"] = _noun

    # -- the store -------------------------------------------------------------------------

    async def manager(self) -> SessionManager:
        """The session manager the console acts through (the store is opened on first use)."""
        async with self._opening:
            if self._manager is None:
                # No maintenance here: flushing outboxes and recovering calls is the workers'.
                self._manager = SessionManager(await open_store(self.config))
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
            who = self.logins.who(request.session.get(_LOGIN_KEY)) or ""
        found = who[:_MAX_NAME] or None
        request.scope["caller_memory.console.operator"] = (found,)
        return found

    def _token_ok(self, sent: str) -> bool:
        assert self.settings.token is not None
        expected = self.settings.token.get_secret_value()
        # Digests first: the comparison then takes as long whatever the length sent.
        return hmac.compare_digest(
            hashlib.sha256(sent.strip().encode()).digest(),
            hashlib.sha256(expected.encode()).digest(),
        )

    def guarded(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        """``endpoint`` for operators only; a POST must carry the session's CSRF token."""

        async def guarded(request: Request) -> Response:
            if request.method == "POST" and not csrf_ok(
                request, (await _form(request)).get(CSRF_FIELD)
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
                login = f"{_base(request)}/login"
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
            except _STORE_ERRORS as e:
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
            base=_base(request),
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

    def _audit(self, request: Request, who: str, action: str, **what: Any) -> None:
        client = request.client.host if request.client else None
        self.audit.write(who, action, client=client, **what)

    # -- pages -----------------------------------------------------------------------------

    async def home(self, request: Request, who: str) -> Response:
        """``/``: the callers page."""
        return RedirectResponse(f"{_base(request)}/callers", status_code=303)

    async def login_page(self, request: Request) -> Response:
        """``GET /login``."""
        if self.settings.auth == "proxy" or self.operator(request):
            return RedirectResponse(f"{_base(request)}/callers", status_code=303)
        ended = request.session.pop(_LOGIN_KEY, None) is not None
        return self.page(request, "login.html", ended=ended)

    async def login(self, request: Request) -> Response:
        """``POST /login``: the operator's name (for the audit log) and the team's token."""
        form = await _form(request)
        if self.settings.auth == "proxy":
            return RedirectResponse(f"{_base(request)}/callers", status_code=303)
        if not csrf_ok(request, form.get(CSRF_FIELD)):
            return self.refused(request)
        name = " ".join(_text(form, "name").split())[:_MAX_NAME]
        client = request.client.host if request.client else None
        if self._throttle.blocked(client, name):
            return self.page(
                request,
                "login.html",
                429,
                name=name,
                error="Too many failed logins from here or under this name: wait a minute.",
            )
        try:
            if not name or not self._token_ok(_text(form, "token")):
                self._throttle.failed(client, name)
                self._audit(request, name or "(no name)", "login_refused")
                logger.warning("console: a login was refused")
                return self.page(
                    request, "login.html", 401, name=name, error="Wrong token, or no name given."
                )
            login_id = self.logins.open(name)
            try:
                self._audit(request, name, "login")
            except AuditLogError:
                self.logins.close(login_id)  # a login the audit log lacks is no login
                raise
        except AuditLogError as e:
            logger.error("console: %s", e)
            return self.page(request, "login.html", 500, name=name, error=f"{e}.")
        except OSError as e:
            logger.error("console: a login cannot be recorded in %s: %s", self.logins.folder,
                         e.strerror or type(e).__name__)  # fmt: skip
            error = f"The login cannot be recorded in {self.logins.folder}."
            return self.page(request, "login.html", 500, name=name, error=error)
        request.session.clear()  # a session from before the login is not carried over
        request.session[_LOGIN_KEY] = login_id
        new_csrf_token(request)
        return RedirectResponse(f"{_base(request)}/callers", status_code=303)

    async def logout(self, request: Request, who: str) -> Response:
        """``POST /logout``: the login's record goes, so its cookie is refused from now on
        (a copy of it too)."""
        # Ended first: an audit log that cannot be written must not keep anyone logged in.
        self.logins.close(request.session.get(_LOGIN_KEY))
        request.session.clear()
        self._audit(request, who, "logout")
        return RedirectResponse(f"{_base(request)}/login", status_code=303)

    async def callers(self, request: Request, who: str) -> Response:
        """``GET /callers``: find a caller; the erasure requests waiting for an operator."""
        return await self._callers_page(request, **await self._find_form(request))

    async def _callers_page(self, request: Request, status: int = 200, **context: Any) -> Response:
        manager = await self.manager()
        after = parse_cursor(request.query_params.get("after"))
        before = parse_cursor(request.query_params.get("before"))
        try:
            # A page at a time: the list grows with every unverified "forget me".
            found = await erasure_request_page(manager.store, after=after, before=before)
            if not found.requests and found.total:  # a page emptied meanwhile: the first
                found = await erasure_request_page(manager.store)
        except _STORE_ERRORS:
            found, context["store_error"] = None, True
        requests = found.requests if found is not None else []
        return self.page(
            request, "callers.html", status, requests=requests, requests_page=found, **context
        )

    async def caller(self, request: Request, who: str) -> Response:
        """``POST /caller``: what is remembered about the caller of a number."""
        found = await self._look_up(request)
        if isinstance(found, Response):
            return found
        number, view = found
        self._audit(request, who, "view", user_ids=view.user_ids, found=view.found)
        typed = _text(await _form(request), "number")
        region = await self._region(request) or self.config.default_region
        read_as = None if has_country_code(typed) else country_name(region)
        return await self._caller_page(
            request, "caller.html", number, view, fact_actions=True, read_as=read_as
        )

    async def export(self, request: Request, who: str) -> Response:
        """``POST /caller/export``: the JSON of ``caller-memory export``, as a download."""
        found = await self._export(request)
        if isinstance(found, Response):
            return found
        _, data = found
        self._audit(
            request,
            who,
            "export",
            user_ids=data["user_ids"],
            keys=len(data["keys"]),
            outbox_entries=len(data["outbox"]),
        )
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        return Response(
            json.dumps(data, indent=2, ensure_ascii=False) + "\n",
            media_type="application/json",
            headers={"content-disposition": f'attachment; filename="caller-export-{stamp}.json"'},
        )

    async def erase(self, request: Request, who: str) -> Response:
        """``POST /caller/erase``: what will go, then (``confirm=yes``) erase it all."""
        found = await self._look_up(request)
        if isinstance(found, Response):
            return found
        number, view = found
        if _text(await _form(request), "confirm") != "yes":
            self._audit(request, who, "view", user_ids=view.user_ids, found=view.found)
            return await self._caller_page(request, "confirm_erase.html", number, view)
        deleted = await (await self.manager()).forget_caller(number)
        return self._erased(request, who, view.user_ids, deleted, via="number")

    async def withdraw_fact(self, request: Request, who: str) -> Response:
        """``POST /caller/fact/withdraw``: one fact, what withdrawing it does, and a reason to
        give; then (``confirm=yes`` and a reason) withdraw it, audited, and show the caller
        again (``caller-memory withdraw-fact``)."""
        form = await _form(request)
        typed = _text(form, "number")
        number = in_region(typed, await self._region(request, form))
        fact_id = _text(form, "fact_id")
        manager = await self.manager()
        store = manager.store
        try:
            phone_hash, previous = store.hasher.hashes(number)
            if not fact_id.isdigit() or len(fact_id) > 9:
                raise privacy.FactNotFoundError("no fact of this id")
            held = await privacy.find_fact(store, phone_hash, int(fact_id), previous)
        except InvalidPhoneNumberError as e:
            return await self._refuse_number(request, e, typed)
        except privacy.FactNotFoundError as e:
            # The why (a setting to check, where to find the ids) goes in the details fold.
            said, _, why = str(e).partition(" (")
            return self.page(
                request,
                "error.html",
                404,
                title="No such fact",
                message=f"{said[:1].upper()}{said[1:]}. Look at the caller again.",
                details=why.removesuffix(")"),
            )
        fact = held.fact
        if _text(form, "confirm") != "yes":
            self._audit(request, who, "view", user_ids=[held.user_id], found=True)
            return self._confirm_withdraw(request, number, held)
        try:
            reason = privacy.check_reason(
                _text(form, "reason"), fact, region=self.config.default_region
            )
        except privacy.InvalidReasonError as e:
            return self._confirm_withdraw(request, number, held, 422, error=f"{e}.")
        # Recorded first: a withdrawal never happens unrecorded.
        self._audit(request, who, "withdraw_fact", via="console", user_ids=[held.user_id],
                    fact_id=fact.id, reason=reason)  # fmt: skip
        stored = await store.withdraw_fact(held.user_id, fact.id)
        if stored is None:
            return self.page(
                request,
                "error.html",
                409,
                title="The fact changed meanwhile",
                message=f"Fact #{fact.id} is no longer current. Look at the caller again.",
            )
        cut = privacy.summaries_cut(held.profile, stored)
        notice = (
            f"Fact #{fact.id} withdrawn: the agent no longer hears it from the next call on "
            f"({_plural(cut, 'earlier call summary', 'earlier call summaries')} cut). The "
            "withdrawal and its reason are in the audit log."
        )
        view = build_caller_view(await manager.export_caller(number), store.keys)
        self._audit(request, who, "view", user_ids=view.user_ids, found=view.found)
        return await self._caller_page(
            request, "caller.html", number, view, fact_actions=True, notice=notice
        )

    def _confirm_withdraw(
        self,
        request: Request,
        number: str,
        held: privacy.HeldFact,
        status: int = 200,
        **context: Any,
    ) -> Response:
        after = withdraw_fact(held.profile, held.fact.id)
        cut = privacy.summaries_cut(held.profile, after) if after is not None else 0
        return self.page(
            request,
            "confirm_withdraw.html",
            status,
            number=number,
            last_digits=_last_digits(number),
            fact=held.fact,
            summaries_cut=cut,
            max_reason=privacy.MAX_REASON,
            **context,
        )

    async def erase_request(self, request: Request, who: str) -> Response:
        """``POST /requests/erase``: an erasure a caller asked for unverified: what will go,
        then (``confirm=yes``) erase it (``caller-memory forget --user-id``)."""
        form = await _form(request)
        user_id = _text(form, "user_id")
        manager = await self.manager()
        valid = _USER_ID.fullmatch(user_id)
        asked_at = await request_time(manager.store, user_id) if valid else None
        if asked_at is None:
            return self.page(
                request,
                "error.html",
                404,
                title="No such request",
                message="This erasure request is no longer waiting.",
            )
        # A caller's user id is their phone hash: exporting it as one reads what forget_user
        # deletes (the user's keys, journals and outbox entries).
        data = await privacy.export_caller(manager.store, manager.outbox, user_id)
        view = build_caller_view(data, manager.store.keys)
        if _text(form, "confirm") != "yes":
            self._audit(request, who, "view", user_ids=[user_id], found=view.found)
            asked = datetime.fromtimestamp(asked_at, timezone.utc)
            return await self._caller_page(
                request, "confirm_erase.html", None, view, user_id=user_id, asked_at=asked
            )
        deleted = await manager.forget_user(user_id)
        user_ids = list(dict.fromkeys([user_id, *view.user_ids]))
        return self._erased(request, who, user_ids, deleted, via="request")

    async def health(self, request: Request, who: str) -> Response:
        """``GET /health``: the store, its numbers, and calls per hour."""
        return await self._health(request, "health.html")

    async def health_panel(self, request: Request, who: str) -> Response:
        """``GET /health/panel``: the health numbers alone (htmx refreshes them)."""
        return await self._health(request, "_health_panel.html")

    async def health_count(self, request: Request, who: str) -> Response:
        """``POST /health/count``: start a full count (every key of the prefix read), then
        the health page; a count that ends within a couple of seconds is on it already."""
        monitor = await self.monitor()
        monitor.start_full_count()
        await monitor.wait_for_full_count(_FULL_COUNT_WAIT_S)
        return RedirectResponse(f"{_base(request)}/health", status_code=303)

    async def _health(self, request: Request, template: str) -> Response:
        health = await (await self.monitor()).health()
        return self.page(
            request,
            template,
            health=health,
            chart_hours=CHART_HOURS,
            sample_keys=SAMPLE_KEYS,
            config=(await self.manager()).config,
        )

    # -- helpers ---------------------------------------------------------------------------

    async def _export(self, request: Request) -> tuple[str, dict[str, Any]] | Response:
        """The number of the form, and what ``caller-memory export`` gives for it (or the
        callers page, saying the number cannot be used)."""
        form = await _form(request)
        typed = _text(form, "number")
        number = in_region(typed, await self._region(request, form))
        try:
            return number, await (await self.manager()).export_caller(number)
        except InvalidPhoneNumberError as e:
            return await self._refuse_number(request, e, typed)

    async def _region(self, request: Request, form: FormData | None = None) -> str | None:
        """The country the operator reads numbers without a country code in, when
        ``MEMORY_DEFAULT_REGION`` is unset (set, the store's own check reads them so): the one
        ``form`` names (kept in the operator's session from then on), else the one kept, else
        the one region the calls' trunks imply (:meth:`_line_regions`), when there is one."""
        if self.config.default_region is not None:
            return None
        chosen = _text(form, "region") if form is not None else ""
        if country_name(chosen) is not None:
            request.session["region"] = chosen.upper()
        kept = request.session.get("region")
        if isinstance(kept, str) and country_name(kept) is not None:
            return kept
        lines = await self._line_regions()
        return lines[0] if len(lines) == 1 else None

    async def _line_regions(self) -> list[str]:
        """The regions of the trunks the workers read callers' numbers with (most recently
        seen first; the workers record them when ``MEMORY_DEFAULT_REGION`` is unset), read
        at most every :data:`_LINE_REGIONS_TTL_S`; none when the store cannot say."""
        now = time.monotonic()
        if self._lines is not None and now - self._lines[0] < _LINE_REGIONS_TTL_S:
            return self._lines[1]
        try:
            found = await (await self.manager()).store.trunk_regions()
        except _STORE_ERRORS:
            return []  # ask the operator, as with none recorded
        regions = [code for code in found if country_name(code) is not None]
        if regions:  # none yet: read again next time, and the first call's is seen at once
            self._lines = (now, regions)
        return regions

    async def _find_form(
        self, request: Request, typed: str = "", ask: bool = False
    ) -> dict[str, Any]:
        """What the find form shows: the number typed (kept when it is refused), and, when no
        region is configured, the operator's country (and whether it is their phone line's)
        and the list to choose it from, the countries of the phone lines first."""
        if self.config.default_region is not None:
            return {"typed": typed, "ask_region": ask, "region": None, "countries": ()}
        region = await self._region(request)
        lines = await self._line_regions()
        everything = countries()
        first = [c for code in lines for c in everything if c.code == code]
        return {
            "typed": typed,
            "ask_region": ask,
            "region": region,
            "region_name": country_name(region),
            "region_is_line": region is not None
            and request.session.get("region") is None
            and region in lines,
            "line_countries": first,
            "countries": [c for c in everything if c not in first],
        }

    async def _refuse_number(
        self, request: Request, error: InvalidPhoneNumberError, typed: str
    ) -> Response:
        """The callers page, the number still in the box and why it cannot be used, in words
        for a front desk (never the number: the message is made without it)."""
        region = await self._region(request) or self.config.default_region
        # The country is asked for when it is what is missing (not for letters in a number).
        ask = region is None and "no country code" in str(error)
        return await self._callers_page(
            request,
            422,
            error=why_refused(error, typed, region),
            **await self._find_form(request, typed=typed, ask=ask),
        )

    async def _look_up(self, request: Request) -> tuple[str, CallerView] | Response:
        found = await self._export(request)
        if isinstance(found, Response):
            return found
        number, data = found
        return number, build_caller_view(data, (await self.manager()).store.keys)

    async def _caller_page(
        self,
        request: Request,
        template: str,
        number: str | None,
        view: CallerView,
        **context: Any,
    ) -> Response:
        config = self.config
        return self.page(
            request,
            template,
            number=number,
            last_digits=_last_digits(number),
            view=view,
            consent_required=config.consent_required,
            disclosure=config.unverified_disclosure,
            session_ttl_hours=config.session_ttl_hours,
            **await self._find_form(request),
            **context,
        )

    def _erased(
        self,
        request: Request,
        who: str,
        user_ids: list[str],
        deleted: list[str],
        via: str,
    ) -> Response:
        keys = [item for item in deleted if not item.startswith("outbox:")]
        outbox = len(deleted) - len(keys)
        self._audit(
            request, who, "erase", via=via, user_ids=user_ids, keys=len(keys), outbox_entries=outbox
        )
        return self.page(
            request, "erased.html", deleted=deleted, keys=len(keys), outbox_entries=outbox
        )


def create_app(
    config: RedisConfig | None = None,
    *,
    settings: ConsoleSettings | None = None,
    manager: SessionManager | None = None,
) -> Starlette:
    """The console as an ASGI application: run it, or mount it in an application of your own.

    ```python
    from livekit.plugins.caller_memory.console import create_app

    app.mount("/memory", create_app())  # MEMORY_CONSOLE_TOKEN set in the environment
    ```

    A mounted app's lifespan is not run: the store is opened on the first request; pass
    ``manager=`` to act through one of your own, or close the console's store at shutdown
    with ``await console_app.state.console.aclose()``.

    Args:
        config: Where memory is; :meth:`RedisConfig.from_env` when omitted.
        settings: Who may use the console; :class:`ConsoleSettings` from the environment
            when omitted.
        manager: A session manager to act through (its store is not closed).

    Raises:
        ConfigError: A setting is invalid, or no login is configured (``MEMORY_CONSOLE_TOKEN``
            or ``MEMORY_CONSOLE_AUTH=proxy``).
    """
    config = config or (manager.config if manager is not None else RedisConfig.from_env())
    settings = settings or ConsoleSettings()
    console = Console(config, settings, manager)
    g = console.guarded
    routes = [
        Route("/", g(console.home), name="home"),
        Route("/login", console.login_page, methods=["GET"], name="login_page"),
        Route("/login", console.login, methods=["POST"], name="login"),
        Route("/logout", g(console.logout), methods=["POST"], name="logout"),
        Route("/callers", g(console.callers), name="callers"),
        Route("/caller", g(console.caller), methods=["POST"], name="caller"),
        Route("/caller/export", g(console.export), methods=["POST"], name="export"),
        Route("/caller/erase", g(console.erase), methods=["POST"], name="erase"),
        Route(
            "/caller/fact/withdraw",
            g(console.withdraw_fact),
            methods=["POST"],
            name="withdraw_fact",
        ),
        Route("/requests/erase", g(console.erase_request), methods=["POST"], name="erase_request"),
        Route("/health", g(console.health), name="health"),
        Route("/health/panel", g(console.health_panel), name="health_panel"),
        Route("/health/count", g(console.health_count), methods=["POST"], name="health_count"),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(ForwardedHeaders, proxies=console.proxies),
        Middleware(SecurityHeaders, hosts=settings.hosts),
        Middleware(
            SessionMiddleware,
            secret_key=console.signing_key,
            session_cookie=_SESSION_COOKIE,
            max_age=round(settings.session_hours * 3600),
            same_site="strict",
            https_only=settings.secure_cookies,
        ),
    ]

    app = Starlette(routes=routes, middleware=middleware, lifespan=_lifespan(console))
    app.state.console = console
    return app


def _lifespan(console: Console) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await console.manager()  # a store that cannot be reached is said now, in the log
        try:
            yield
        finally:
            await console.aclose()

    return lifespan


async def _form(request: Request) -> FormData:
    # Parsed once (Starlette keeps it); the console's forms are a few small fields.
    return await request.form(max_files=0, max_fields=20, max_part_size=64 * 1024)


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _base(request: Request) -> str:
    """The console's path prefix (where it is mounted, or the server's root path)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _last_digits(number: str | None) -> str:
    digits = re.sub(r"\D", "", number or "")
    return f"…{digits[-4:]}" if len(digits) >= 4 else ""


def _mark_redactions(text: str) -> Markup:
    """Text with each redaction tag marked (and everything else escaped)."""
    parts, last = [], 0
    for match in REDACTION_TAG.finditer(text):
        parts.append(escape(text[last : match.start()]))
        parts.append(Markup('<mark class="redacted">{}</mark>').format(match.group()))
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("").join(parts)


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    """``1 key``, ``2 keys``; ``plural`` when adding an s will not do (``entries``)."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def _noun(count: int, singular: str, plural: str | None = None) -> str:
    """The noun alone for ``count`` (``call``, ``calls``): for a number shown apart from its
    word, as the health page's tiles show them."""
    return singular if count == 1 else plural or singular + "s"


def _when(value: datetime | None) -> Markup | str:
    return time_element(value)

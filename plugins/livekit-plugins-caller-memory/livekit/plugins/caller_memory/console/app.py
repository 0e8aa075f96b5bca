"""The console's web application (Starlette, server-rendered Jinja templates, a little htmx).

Every page but the login page needs an operator: logged in with the team's token (a signed
session cookie), or named by a reverse proxy's header (:class:`~.pages.Console`). Every action
on a caller goes through the plugin's own operations, as the CLI's do (:mod:`.caller_pages`,
:mod:`.erasure_pages`).

A phone number travels in POST bodies only: never in a URL, a header, a log line or the audit
log. Mount the app in an ASGI application of your own with :func:`create_app`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..calls import SessionManager
from ..config import RedisConfig
from .caller_lookup import CallerFinder
from .caller_pages import CallerPages
from .erasure_pages import ErasurePages
from .health_pages import HealthPages
from .login_pages import LoginPages
from .logins import ForwardedHeaders
from .pages import Console
from .rendering import HERE
from .security import SecurityHeaders
from .settings import ConsoleSettings

__all__ = ["create_app"]

_SESSION_COOKIE = "caller_memory_console"


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
    finder = CallerFinder(console)  # one for both page sets: they share its regions cache
    callers = CallerPages(console, finder)
    erasure = ErasurePages(console, finder)
    health = HealthPages(console)
    logins = LoginPages(console)
    g = console.guarded
    routes = [
        Route("/", g(callers.home), name="home"),
        Route("/login", logins.login_page, methods=["GET"], name="login_page"),
        Route("/login", logins.login, methods=["POST"], name="login"),
        Route("/logout", g(logins.logout), methods=["POST"], name="logout"),
        Route("/callers", g(callers.callers), name="callers"),
        Route("/caller", g(callers.caller), methods=["POST"], name="caller"),
        Route("/caller/export", g(callers.export), methods=["POST"], name="export"),
        Route("/caller/erase", g(erasure.erase), methods=["POST"], name="erase"),
        Route(
            "/caller/fact/withdraw",
            g(erasure.withdraw_fact),
            methods=["POST"],
            name="withdraw_fact",
        ),
        Route("/requests/erase", g(erasure.erase_request), methods=["POST"], name="erase_request"),
        Route("/health", g(health.health), name="health"),
        Route("/health/panel", g(health.health_panel), name="health_panel"),
        Route("/health/count", g(health.health_count), methods=["POST"], name="health_count"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
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

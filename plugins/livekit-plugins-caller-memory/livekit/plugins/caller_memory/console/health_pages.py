"""The health page: the store, its numbers (:mod:`.health`) and calls per hour, and the
button that starts a full count."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .census import CHART_HOURS
from .pages import Console
from .rendering import base_path
from .sampling import SAMPLE_KEYS

__all__ = ["HealthPages"]

_FULL_COUNT_WAIT_S = 2.0
"""How long the button waits for a full count before showing the page (it goes on)."""


class HealthPages:
    """``/health``, its panel (htmx refreshes it) and ``/health/count``.

    Args:
        console: The console whose store the page shows.
    """

    def __init__(self, console: Console) -> None:
        self.console = console

    async def health(self, request: Request, who: str) -> Response:
        """``GET /health``: the store, its numbers, and calls per hour."""
        return await self._health(request, "health.html")

    async def health_panel(self, request: Request, who: str) -> Response:
        """``GET /health/panel``: the health numbers alone (htmx refreshes them)."""
        return await self._health(request, "_health_panel.html")

    async def health_count(self, request: Request, who: str) -> Response:
        """``POST /health/count``: start a full count (every key of the prefix read), then
        the health page; a count that ends within a couple of seconds is on it already."""
        monitor = await self.console.monitor()
        monitor.start_full_count()
        await monitor.wait_for_full_count(_FULL_COUNT_WAIT_S)
        return RedirectResponse(f"{base_path(request)}/health", status_code=303)

    async def _health(self, request: Request, template: str) -> Response:
        health = await (await self.console.monitor()).health()
        return self.console.page(
            request,
            template,
            health=health,
            chart_hours=CHART_HOURS,
            sample_keys=SAMPLE_KEYS,
            config=(await self.console.manager()).config,
        )

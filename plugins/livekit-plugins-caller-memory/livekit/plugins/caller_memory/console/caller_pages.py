"""The callers pages: find a caller by number, see what is remembered, export it.

The page of a caller is :meth:`~..calls.SessionManager.export_caller`'s data and the download
is that data as ``caller-memory export`` prints it; the number typed is read as
:class:`~.caller_lookup.CallerFinder` reads it. The callers page also lists the erasure
requests waiting for an operator (:mod:`.erasure_pages` carries them out).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..identity import has_country_code
from .caller_lookup import CallerFinder
from .caller_view import country_name
from .pages import Console, form_text, read_form
from .rendering import base_path

__all__ = ["CallerPages"]


class CallerPages:
    """``/``, ``/callers``, ``/caller`` and ``/caller/export``.

    Args:
        console: The console whose store is searched.
        finder: How a typed number is read and a caller shown (shared with the erasure pages).
    """

    def __init__(self, console: Console, finder: CallerFinder) -> None:
        self.console = console
        self.finder = finder

    async def home(self, request: Request, who: str) -> Response:
        """``/``: the callers page."""
        return RedirectResponse(f"{base_path(request)}/callers", status_code=303)

    async def callers(self, request: Request, who: str) -> Response:
        """``GET /callers``: find a caller; the erasure requests waiting for an operator."""
        finder = self.finder
        return await finder.callers_page(request, **await finder.find_form(request))

    async def caller(self, request: Request, who: str) -> Response:
        """``POST /caller``: what is remembered about the caller of a number."""
        found = await self.finder.look_up(request)
        if isinstance(found, Response):
            return found
        number, view = found
        self.console.write_audit(request, who, "view", user_ids=view.user_ids, found=view.found)
        typed = form_text(await read_form(request), "number")
        region = await self.finder.region(request) or self.console.config.default_region
        read_as = None if has_country_code(typed) else country_name(region)
        return await self.finder.caller_page(
            request, "caller.html", number, view, fact_actions=True, read_as=read_as
        )

    async def export(self, request: Request, who: str) -> Response:
        """``POST /caller/export``: the JSON of ``caller-memory export``, as a download."""
        found = await self.finder.export_data(request)
        if isinstance(found, Response):
            return found
        _, data = found
        self.console.write_audit(
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

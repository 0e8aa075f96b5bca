"""Finding a caller from a number an operator typed, and showing them: what the callers pages
and the erasure pages share.

A number without a country code is read in the operator's country: ``MEMORY_DEFAULT_REGION``,
else the one they chose (kept in their session), else the one region of the phone lines the
calls came in on (read from the store at most once a minute, shared by every page). A number
that cannot be used brings back the callers page, saying why in words for a front desk.
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from ..exceptions import InvalidPhoneNumberError
from ..identity import in_region
from .caller_view import CallerView, build_caller_view, countries, country_name, why_refused
from .pages import STORE_ERRORS, Console, form_text, read_form
from .paging import erasure_request_page, parse_cursor

__all__ = ["CallerFinder", "last_digits"]

_LINE_REGIONS_TTL_S = 60.0
"""How long the console reuses the trunks' regions it read (they change when a line does)."""


class CallerFinder:
    """A caller found from a typed number, and the pages about them: the find form, the
    callers page when a number is refused, a caller's page. One per console: the pages share
    its cache of the trunks' regions.

    Args:
        console: The console whose store is searched.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lines: tuple[float, list[str]] | None = None
        """The trunks' regions as last read, and when (monotonic seconds)."""

    async def region(self, request: Request, form: FormData | None = None) -> str | None:
        """The country the operator reads numbers without a country code in, when
        ``MEMORY_DEFAULT_REGION`` is unset (set, the store's own check reads them so): the one
        ``form`` names (kept in the operator's session from then on), else the one kept, else
        the one region the calls' trunks imply (:meth:`_line_regions`), when there is one."""
        if self.console.config.default_region is not None:
            return None
        chosen = form_text(form, "region") if form is not None else ""
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
            found = await (await self.console.manager()).store.trunk_regions()
        except STORE_ERRORS:
            return []  # ask the operator, as with none recorded
        regions = [code for code in found if country_name(code) is not None]
        if regions:  # none yet: read again next time, and the first call's is seen at once
            self._lines = (now, regions)
        return regions

    async def find_form(
        self, request: Request, typed: str = "", ask: bool = False
    ) -> dict[str, Any]:
        """What the find form shows: the number typed (kept when it is refused), and, when no
        region is configured, the operator's country (and whether it is their phone line's)
        and the list to choose it from, the countries of the phone lines first."""
        if self.console.config.default_region is not None:
            return {"typed": typed, "ask_region": ask, "region": None, "countries": ()}
        region = await self.region(request)
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

    async def refuse_number(
        self, request: Request, error: InvalidPhoneNumberError, typed: str
    ) -> Response:
        """The callers page, the number still in the box and why it cannot be used, in words
        for a front desk (never the number: the message is made without it)."""
        region = await self.region(request) or self.console.config.default_region
        # The country is asked for when it is what is missing (not for letters in a number).
        ask = region is None and "no country code" in str(error)
        return await self.callers_page(
            request,
            422,
            error=why_refused(error, typed, region),
            **await self.find_form(request, typed=typed, ask=ask),
        )

    async def look_up(self, request: Request) -> tuple[str, CallerView] | Response:
        """The number of the form and what is remembered of its caller (or the callers page,
        saying the number cannot be used)."""
        found = await self.export_data(request)
        if isinstance(found, Response):
            return found
        number, data = found
        return number, build_caller_view(data, (await self.console.manager()).store.keys)

    async def caller_page(
        self,
        request: Request,
        template: str,
        number: str | None,
        view: CallerView,
        **context: Any,
    ) -> Response:
        """A page about one caller: what is remembered, the settings that decide what the
        agent tells them, and the find form."""
        config = self.console.config
        return self.console.page(
            request,
            template,
            number=number,
            last_digits=last_digits(number),
            view=view,
            consent_required=config.consent_required,
            disclosure=config.unverified_disclosure,
            session_ttl_hours=config.session_ttl_hours,
            **await self.find_form(request),
            **context,
        )

    async def callers_page(self, request: Request, status: int = 200, **context: Any) -> Response:
        """The callers page: the find form (with ``context``) and the erasure requests waiting
        for an operator, a page at a time."""
        manager = await self.console.manager()
        after = parse_cursor(request.query_params.get("after"))
        before = parse_cursor(request.query_params.get("before"))
        try:
            # A page at a time: the list grows with every unverified "forget me".
            found = await erasure_request_page(manager.store, after=after, before=before)
            if not found.requests and found.total:  # a page emptied meanwhile: the first
                found = await erasure_request_page(manager.store)
        except STORE_ERRORS:
            found, context["store_error"] = None, True
        requests = found.requests if found is not None else []
        return self.console.page(
            request, "callers.html", status, requests=requests, requests_page=found, **context
        )

    async def export_data(self, request: Request) -> tuple[str, dict[str, Any]] | Response:
        """The number of the form, and what ``caller-memory export`` gives for it (or the
        callers page, saying the number cannot be used)."""
        form = await read_form(request)
        typed = form_text(form, "number")
        number = in_region(typed, await self.region(request, form))
        try:
            return number, await (await self.console.manager()).export_caller(number)
        except InvalidPhoneNumberError as e:
            return await self.refuse_number(request, e, typed)


def last_digits(number: str | None) -> str:
    """The last four digits of a number (``…4567``), for a page that must not show it whole."""
    digits = re.sub(r"\D", "", number or "")
    return f"…{digits[-4:]}" if len(digits) >= 4 else ""

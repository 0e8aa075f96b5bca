"""The pages that take something out of memory: a caller erased (by number, or for an
erasure request they made unverified) and one wrong fact withdrawn.

Each shows what will go and asks to confirm first, and each goes through the plugin's own
operations, as the CLI's do: erasure is :meth:`~..calls.SessionManager.forget_caller`
(``caller-memory forget``) or, for an erasure request,
:meth:`~..calls.SessionManager.forget_user`; withdrawing a fact is
:meth:`~..store.MemoryStore.withdraw_fact` (``caller-memory withdraw-fact``), with the checks
of :mod:`..privacy`. Every one is in the audit log.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import privacy
from ..exceptions import InvalidPhoneNumberError
from ..identity import in_region
from ..memory.merge import withdraw_fact
from .caller_lookup import CallerFinder, last_digits
from .caller_view import build_caller_view
from .pages import Console, form_text, read_form
from .paging import request_time
from .rendering import plural

__all__ = ["ErasurePages"]

_USER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ErasurePages:
    """``/caller/erase``, ``/requests/erase`` and ``/caller/fact/withdraw``.

    Args:
        console: The console whose store is changed.
        finder: How a typed number is read and a caller shown (shared with the callers pages).
    """

    def __init__(self, console: Console, finder: CallerFinder) -> None:
        self.console = console
        self.finder = finder

    async def erase(self, request: Request, who: str) -> Response:
        """``POST /caller/erase``: what will go, then (``confirm=yes``) erase it all."""
        found = await self.finder.look_up(request)
        if isinstance(found, Response):
            return found
        number, view = found
        if form_text(await read_form(request), "confirm") != "yes":
            self.console.write_audit(request, who, "view", user_ids=view.user_ids, found=view.found)
            return await self.finder.caller_page(request, "confirm_erase.html", number, view)
        deleted = await (await self.console.manager()).forget_caller(number)
        return self._erased(request, who, view.user_ids, deleted, via="number")

    async def erase_request(self, request: Request, who: str) -> Response:
        """``POST /requests/erase``: an erasure a caller asked for unverified: what will go,
        then (``confirm=yes``) erase it (``caller-memory forget --user-id``)."""
        form = await read_form(request)
        user_id = form_text(form, "user_id")
        manager = await self.console.manager()
        valid = _USER_ID.fullmatch(user_id)
        asked_at = await request_time(manager.store, user_id) if valid else None
        if asked_at is None:
            return self.console.page(
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
        if form_text(form, "confirm") != "yes":
            self.console.write_audit(request, who, "view", user_ids=[user_id], found=view.found)
            asked = datetime.fromtimestamp(asked_at, timezone.utc)
            return await self.finder.caller_page(
                request, "confirm_erase.html", None, view, user_id=user_id, asked_at=asked
            )
        deleted = await manager.forget_user(user_id)
        user_ids = list(dict.fromkeys([user_id, *view.user_ids]))
        return self._erased(request, who, user_ids, deleted, via="request")

    async def withdraw_fact(self, request: Request, who: str) -> Response:
        """``POST /caller/fact/withdraw``: one fact, what withdrawing it does, and a reason to
        give; then (``confirm=yes`` and a reason) withdraw it, audited, and show the caller
        again (``caller-memory withdraw-fact``)."""
        form = await read_form(request)
        typed = form_text(form, "number")
        number = in_region(typed, await self.finder.region(request, form))
        fact_id = form_text(form, "fact_id")
        manager = await self.console.manager()
        store = manager.store
        try:
            phone_hash, previous = await privacy.caller_hashes(store, number)
            if not fact_id.isdigit() or len(fact_id) > 9:
                raise privacy.FactNotFoundError("no fact of this id")
            held = await privacy.find_fact(store, phone_hash, int(fact_id), previous)
        except InvalidPhoneNumberError as e:
            return await self.finder.refuse_number(request, e, typed)
        except privacy.FactNotFoundError as e:
            # The why (a setting to check, where to find the ids) goes in the details fold.
            said, _, why = str(e).partition(" (")
            return self.console.page(
                request,
                "error.html",
                404,
                title="No such fact",
                message=f"{said[:1].upper()}{said[1:]}. Look at the caller again.",
                details=why.removesuffix(")"),
            )
        fact = held.fact
        if form_text(form, "confirm") != "yes":
            self.console.write_audit(request, who, "view", user_ids=[held.user_id], found=True)
            return self._confirm_withdraw(request, number, held)
        try:
            reason = privacy.check_reason(
                form_text(form, "reason"), fact, region=self.console.config.default_region
            )
        except privacy.InvalidReasonError as e:
            return self._confirm_withdraw(request, number, held, 422, error=f"{e}.")
        # Recorded first: a withdrawal never happens unrecorded.
        self.console.write_audit(
            request,
            who,
            "withdraw_fact",
            via="console",
            user_ids=[held.user_id],
            fact_id=fact.id,
            reason=reason,
        )
        stored = await store.withdraw_fact(held.user_id, fact.id)
        if stored is None:
            return self.console.page(
                request,
                "error.html",
                409,
                title="The fact changed meanwhile",
                message=f"Fact #{fact.id} is no longer current. Look at the caller again.",
            )
        cut = privacy.summaries_cut(held.profile, stored)
        notice = (
            f"Fact #{fact.id} withdrawn: the agent no longer hears it from the next call on "
            f"({plural(cut, 'earlier call summary', 'earlier call summaries')} cut). The "
            "withdrawal and its reason are in the audit log."
        )
        view = build_caller_view(await manager.export_caller(number), store.keys)
        self.console.write_audit(request, who, "view", user_ids=view.user_ids, found=view.found)
        return await self.finder.caller_page(
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
        return self.console.page(
            request,
            "confirm_withdraw.html",
            status,
            number=number,
            last_digits=last_digits(number),
            fact=held.fact,
            summaries_cut=cut,
            max_reason=privacy.MAX_REASON,
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
        self.console.write_audit(
            request, who, "erase", via=via, user_ids=user_ids, keys=len(keys), outbox_entries=outbox
        )
        return self.console.page(
            request, "erased.html", deleted=deleted, keys=len(keys), outbox_entries=outbox
        )

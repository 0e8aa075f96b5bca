"""One call folded into a caller's memory: checked operations applied to their facts.

Pure functions over the models of :mod:`..models`; the store calls :func:`merge_call` inside its
compare-and-set loop, so the same call may be merged into a newer profile than the one its
summary was made against. Operations therefore find their fact by id, then by label, then by
the words they share with it, and merging the same call twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from ..models import (
    MAX_CURRENT_FACTS,
    MAX_PAST_FACTS,
    NAME_LABEL,
    CallerProfile,
    CallSummary,
    Fact,
    FactOp,
    PastCall,
)
from . import text
from .summaries import CUES, distinct_words, scrub

__all__ = ["apply_ops", "merge_call", "withdraw_consent", "withdraw_fact"]


def merge_call(
    profile: CallerProfile,
    summary: CallSummary,
    *,
    session_id: str,
    ended_at: datetime,
    max_summaries: int,
    consented: bool = False,
    verified: bool = True,
) -> CallerProfile:
    """Return the profile with one more call folded in.

    A verified call (or any call of a caller with no memory yet) adds, updates and withdraws
    facts as its operations say; a fact replaced or withdrawn leaves the summaries of earlier
    calls too (the sentences that said it are cut), so that no old summary repeats it. The
    call's own summary is stored as it comes (its session record holds the same).

    An unverified call of a caller already remembered (caller id can be spoofed) only adds:
    its facts are marked unverified, and it updates and withdraws nothing.

    Merging the same session twice is a no-op, which makes a replayed save harmless.
    """
    if any(call.session_id == session_id for call in profile.calls):
        return profile
    trusted = verified or not profile.is_established
    facts, stale = apply_ops(
        profile.facts, summary.ops, at=ended_at, verified=verified, trusted=trusted
    )
    swept = _swept(summary.ops, facts) if trusted else set()
    calls = [
        *profile.calls,
        PastCall(
            session_id=session_id,
            at=ended_at,
            summary=summary.summary,
            source=summary.source,
            verified=verified,
        ),
    ][-max_summaries:]
    if swept:  # "forget the whole December booking": the earlier calls about it go whole
        calls = [c if c.session_id == session_id or not _about(c.summary, swept)
                 else c.model_copy(update={"summary": ""}) for c in calls]  # fmt: skip
    return profile.model_copy(
        update={
            "facts": facts,
            "calls": [*_scrubbed(calls[:-1], stale), calls[-1]],
            "call_count": profile.call_count + 1,
            "first_call_at": profile.first_call_at or ended_at,
            "last_call_at": max(ended_at, profile.last_call_at or ended_at),
            "consented_at": profile.consented_at or (ended_at if consented else None),
        }
    )


def withdraw_fact(profile: CallerProfile, fact_id: int) -> CallerProfile | None:
    """``profile`` with its current fact ``fact_id`` withdrawn (an operator's withdrawal, as a
    caller's own is merged), or None when it holds no such current fact."""
    if not any(f.id == fact_id and f.current for f in profile.facts):
        return None
    at = profile.last_call_at or datetime.now(timezone.utc)
    withdrawal = FactOp(op="withdraw", id=fact_id)
    facts, stale = apply_ops(profile.facts, [withdrawal], at=at, verified=True, trusted=True)
    return profile.model_copy(update={"facts": facts, "calls": _scrubbed(profile.calls, stale)})


def withdraw_consent(profile: CallerProfile) -> CallerProfile | None:
    """``profile`` without the caller's consent (``consented_at``), all else kept; None when
    there was none to withdraw. With ``MEMORY_CONSENT_REQUIRED``, their calls are then not
    remembered until they agree again."""
    if profile.consented_at is None:
        return None
    return profile.model_copy(update={"consented_at": None})


def _swept(ops: Iterable[FactOp], facts: Sequence[Fact]) -> set[str]:
    # The subject words of the withdrawals that take everything about it ("the whole ...").
    holding = {w for f in facts if f.current for w in text.words(f.value)}
    return {
        w
        for op in ops
        if op.op == "withdraw" and text.sweeping(op.evidence)
        for w in distinct_words(op.evidence, "", ignore=CUES)
        if w not in holding
    }


def _about(summary: str, words: set[str]) -> bool:
    return bool(words & set(text.words(summary)))


def _scrubbed(calls: list[PastCall], stale: list[str]) -> list[PastCall]:
    if not stale:
        return calls
    return [c.model_copy(update={"summary": scrub(c.summary, stale)}) for c in calls]


def apply_ops(
    facts: Sequence[Fact],
    ops: Iterable[FactOp],
    *,
    at: datetime,
    verified: bool,
    trusted: bool,
) -> tuple[list[Fact], list[str]]:
    """``facts`` after ``ops``, and the texts that stated what is no longer true: the values
    and evidence of the facts replaced or withdrawn, and for a withdrawal its label and the
    caller's words withdrawing it.

    An add of a label already current is an update of that fact (one value per label);
    an add or update to the value a fact already has confirms it. An untrusted call only
    adds (a fact of its own, unverified).
    """
    by_id = {f.id: f for f in facts}
    next_id = max(by_id, default=0) + 1
    stale: list[str] = []
    for op in ops:
        target = _target(op, list(by_id.values())) if op.op != "add" or trusted else None
        if op.op == "withdraw":
            if target is None and trusted and not op.id:  # no fact named: what it says goes
                stale += distinct_words(op.value or op.evidence, "", ignore=CUES)
                if text.numbers(op.value):  # "7:15", "5 pm": words too short to go alone
                    stale.append(op.value)
            elif target is not None and trusted:
                by_id[target.id] = target.model_copy(update={"status": "withdrawn"})
                stale += [target.value, target.evidence, target.label, op.evidence]
                stale += distinct_words(f"{target.label} {target.value}", "")
                # What the caller's own words withdraw goes too: the fact found may hold
                # only part of it ("forget the Friday brake job" finds "brakes").
                stale += distinct_words(op.evidence, "", ignore=CUES)
            continue
        if target is None:  # an add, or an update whose fact is gone: one value per label
            target = _same_label(op.label, list(by_id.values()))
            if not trusted and target is not None and not _same_value(target, op):
                target = None  # an untrusted call adds its own; it only confirms the same
        if target is not None and _same_value(target, op):
            confirmed = target.verified or verified
            by_id[target.id] = target.model_copy(update={"confirmed_at": at, "verified": confirmed})
            continue
        if target is not None and trusted:
            by_id[target.id] = target.model_copy(update={"status": "replaced"})
            stale += [target.value, target.evidence, *distinct_words(target.value, op.value)]
        label = op.label or (target.label if target is not None else "note")
        by_id[next_id] = Fact(
            id=next_id, label=label, value=op.value, evidence=op.evidence, said_at=at,
            verified=verified,
        )  # fmt: skip
        next_id += 1
    # A word is stale only if no fact that still holds has it ("Tuesday" of a withdrawn
    # "cleaning on Tuesday at 9" stays in summaries while "cleaning on Tuesday at 10" holds).
    holding = {text.bare(w) for f in by_id.values() if f.current for w in text.words(f.value)}
    stale = [s for s in stale if " " in s.strip() or text.bare(text.normalize(s)) not in holding]
    return _bounded(by_id.values()), stale


def _target(op: FactOp, facts: Sequence[Fact]) -> Fact | None:
    # The fact an update or withdrawal means: by its id, else by its label, else the one
    # current fact whose label and value share the most words with the operation's label and
    # value ("parking spot" withdraws the fact labelled "parking"). A tie means none: a
    # withdrawal must never hit a fact the caller did not mean.
    current = [f for f in facts if f.current]
    by_id = next((f for f in facts if f.id == op.id), None)
    if by_id is not None and by_id.status == "replaced" and op.op == "update":
        # The model saw the memory before another call replaced this fact (two calls at
        # once, or a stale id): the new value replaces the one the label holds now. Never a
        # withdrawal: "forget the old address" names the value replaced, not the new one.
        by_id = _same_label(by_id.label, current)
        if by_id is None:
            return None
    if by_id is not None:  # the fact meant; one withdrawn is no target
        # Only a name replaces the caller's name (a small model put the name's id on an
        # update labelled "the Transit with the brakes").
        not_a_name = by_id.label == NAME_LABEL and op.label not in ("", NAME_LABEL)
        return by_id if by_id.current and not (not_a_name and op.op != "withdraw") else None
    if op.op == "add":
        return None
    same = _same_label(op.label, current)
    if same is not None:
        return same
    # Found by its words, a fact is never the caller's name ("my married name now, not Bell"):
    # a name goes only by its id or its label.
    current = [f for f in current if f.label != NAME_LABEL]
    said = text.stems(f"{op.label} {op.value}") or text.stems(op.evidence)
    scored = sorted(
        ((len(said & text.stems(f"{f.label} {f.value}")), f) for f in current),
        key=lambda pair: pair[0],
        reverse=True,
    )
    if not scored or not scored[0][0] or (len(scored) > 1 and scored[1][0] == scored[0][0]):
        return None
    return scored[0][1]


def _same_value(fact: Fact, op: FactOp) -> bool:
    # A name said in part ("Dan here" to a caller remembered as Dan Okafor) confirms it.
    said, known = text.normalize(op.value), text.normalize(fact.value)
    return said == known or (fact.label == NAME_LABEL and set(said.split()) < set(known.split()))


def _same_label(label: str, facts: Iterable[Fact]) -> Fact | None:
    wanted = text.normalize(label)
    if not wanted:
        return None
    matches = [f for f in facts if f.current and text.normalize(f.label) == wanted]
    return max(matches, key=lambda f: f.id, default=None)


def _bounded(facts: Iterable[Fact]) -> list[Fact]:
    # The newest facts are kept, verified ones first: unverified calls (a spoofer's, say)
    # never push out what a verified caller said. Of the values a label had before, only the
    # last is kept ("texts, was: calls"): the operator sees what changed, and a caller who
    # changes their mind every call does not fill their memory with history.
    ordered = sorted(facts, key=lambda f: f.id)
    current = sorted(
        (f for f in ordered if f.current), key=lambda f: (f.verified, f.id), reverse=True
    )[:MAX_CURRENT_FACTS]
    last_replaced = {text.normalize(f.label): f.id for f in ordered if f.status == "replaced"}
    past = [
        f
        for f in ordered
        if f.status == "withdrawn" or last_replaced.get(text.normalize(f.label)) == f.id
    ][-MAX_PAST_FACTS:]
    keep = {f.id for f in current} | {f.id for f in past}
    return [f for f in ordered if f.id in keep]

"""Who the caller of a call is, their number, whether the network vouches for it, and when
they are gone. The rules that decide the caller are here, and only here (:class:`CallerChoice`).

The caller
----------
1. Only a person who rang in can be the caller: a participant of kind SIP that came in through a
   dispatch rule, of kind CONNECTOR (WhatsApp, Twilio bridged in), or of kind STANDARD (a web or
   dev-room client). Agents, egress and ingress never are.
2. A leg the call dialled out is never the caller: a supervisor, a transfer target, a
   conference guest. LiveKit tells them apart by ``sip.ruleID`` (below). A participant carrying
   ``caller_memory.notCaller`` (:data:`NOT_CALLER_ATTRIBUTE`) is never the caller either.
3. The caller is chosen once: the first participant that can be the caller, or among those
   already in the room when the call starts, a SIP one first, then a CONNECTOR one, then a
   standard one (with a number, among each kind, first). No participant replaces a caller
   once chosen, whether or not the caller has a number: a caller who withheld it keeps the
   call without memory, whoever joins later. Only the caller's own attributes can still bring
   their number (a dev-room client that sets it after joining).
4. The app's word comes first: ``attach(participant=...)`` makes that participant the caller
   whatever its kind (an agent that phones people out passes the leg it dialled), and
   ``attach(phone_number=...)`` decides the call without a participant: nobody who joins
   becomes its caller.

What LiveKit says about a SIP participant (livekit/protocol at d74e7cd, livekit/sip at be5d3f5)
-----------------------------------------------------------------------------------------------
- Both directions are participants of kind SIP; LiveKit has no ``sip.callDirection``
  attribute (the direction is ``SIPCallInfo.call_direction`` in ``livekit_sip.proto``, reported
  to analytics, never put on the participant).
- Inbound (``sip/sip.go``, ``EvaluateDispatchRule``): ``sip.callID``, ``sip.trunkID`` and
  ``sip.ruleID`` (the dispatch rule that let the call in) always; ``sip.phoneNumber`` (the From
  header's user: the caller), ``sip.hostname`` and ``sip.trunkPhoneNumber`` (the number
  dialled) only when the rule's ``hide_phone_number`` is off. A withheld or empty From leaves
  ``sip.phoneNumber`` empty or a placeholder (``anonymous``).
- Outbound, ``CreateSIPParticipant`` (``rpc/sip.go``, ``NewCreateSIPParticipantRequestResult``):
  the request's ``participant_attributes``, then ``sip.callID`` and ``sip.trunkID``, and unless
  ``hide_phone_number``, ``sip.phoneNumber`` = ``sip_call_to`` (the number dialled),
  ``sip.hostname`` and ``sip.trunkPhoneNumber``. Never ``sip.ruleID``. ``livekit/attrs.go``
  says it: ``sip.phoneNumber`` is "caller for inbound and called number for outbound",
  ``sip.ruleID`` the "DispatchRule ID used for the inbound call".
- ``sip.callStatus`` (``pkg/sip/participant.go``): ``dialing`` then ``ringing`` on an outbound
  leg before it answers, ``active`` on both once it does: no mark of direction after the answer.
- LiveKit Agents reads the direction the same way: ``voice/agent_session.py`` takes a SIP
  participant without ``sip.ruleID`` for an outbound call (``is_outbound_sip``). Its warm
  transfer (``beta/workflows/warm_transfer.py``) dials the human agent with
  ``CreateSIPParticipant`` into a room of its own and moves them into the caller's: kind SIP,
  no ``sip.ruleID``. A cold transfer (``JobContext.transfer_sip_participant``, a SIP REFER)
  takes the caller's leg out of the room; nobody joins.

What LiveKit does not say, and how to say it
--------------------------------------------
A supervisor who joins from a web app (kind STANDARD), a leg dialled through a connector
(``DialWhatsAppCall``) and a SIP leg dialled with ``sip.ruleID`` among its own
``participant_attributes`` carry nothing the plugin can go by. Mark them when you create them:
``participant_attributes={"caller_memory.notCaller": "true"}`` in ``CreateSIPParticipantRequest``
or ``DialWhatsAppCallRequest``, or the attribute in the supervisor's token
(``lk token create --attribute caller_memory.notCaller=true``). Marking someone who rang in
only keeps them out of memory.

The number
----------
A standard participant sets its own attributes (anyone with a token can claim any number), so
its ``sip.phoneNumber`` counts only where ``MEMORY_TRUST_PARTICIPANT_NUMBERS`` allows it: in a
dev room, to pose as a caller (``lk token create --attribute sip.phoneNumber=...``).

Whether the network vouches for the number (STIR/SHAKEN): LiveKit SIP passes no attestation
of its own, but a trunk's ``headers_to_attributes`` can map the carrier's header to an
attribute: Twilio's ``X-Twilio-VerStat`` (``TN-Validation-Passed-A``), or the
``P-Asserted-Identity`` in which Telnyx and 3GPP carriers put a ``;verstat=`` parameter; that
header is read by its grammar (see ``_asserted_identity``), never by a search for ``verstat=``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal

from livekit import rtc
from livekit.agents.voice.room_io.types import DEFAULT_CLOSE_ON_DISCONNECT_REASONS

from ._asserted_identity import asserted_verstat, looks_like_header

__all__ = [
    "CALLER_KINDS",
    "NOT_CALLER_ATTRIBUTE",
    "PHONE_ATTRIBUTE",
    "RULE_ID_ATTRIBUTE",
    "TRUNK_NUMBER_ATTRIBUTE",
    "CallerChoice",
    "Offer",
    "caller_phone_number",
    "find_caller",
    "hung_up",
    "is_attested",
    "is_caller",
    "is_dialled",
    "trunk_phone_number",
    "why_not_caller",
]

PHONE_ATTRIBUTE = "sip.phoneNumber"
"""The participant attribute LiveKit SIP sets to the number outside LiveKit: the caller's on an
inbound leg, the number dialled on an outbound one."""

TRUNK_NUMBER_ATTRIBUTE = "sip.trunkPhoneNumber"
"""Set by LiveKit SIP to the trunk's own number (the number the caller dialled, on an inbound
leg), unless the rule hides numbers."""

RULE_ID_ATTRIBUTE = "sip.ruleID"
"""Set by LiveKit SIP on an inbound leg only: the dispatch rule that let the call in."""

NOT_CALLER_ATTRIBUTE = "caller_memory.notCaller"
"""Set it (to ``true``) on a participant you bring into a call that is never its caller."""

CALLER_KINDS = (
    rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
    rtc.ParticipantKind.PARTICIPANT_KIND_CONNECTOR,
    rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
)
"""Who can be the caller, in order of preference (LiveKit's own default participant kinds)."""

_FINAL_REASONS = frozenset(DEFAULT_CLOSE_ON_DISCONNECT_REASONS)
"""The disconnect reasons after which LiveKit's RoomIO closes the session: the participant
left for good (``CLIENT_INITIATED``, ``ROOM_DELETED``, ``USER_REJECTED``)."""

_NO = frozenset({"", "false", "0", "no"})


def caller_phone_number(participant: rtc.Participant, *, trust_standard: bool = True) -> str | None:
    """The caller's number from the ``sip.phoneNumber`` attribute, or None when there is none
    or it does not count (a standard participant's, unless ``trust_standard``).

    Parameters a carrier left in the URI's user part (``+1555...;verstat=...``) are cut off:
    they are not part of the number, and the caller wrote them.
    """
    if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD and not trust_standard:
        return None
    value = _attribute(participant, PHONE_ATTRIBUTE)
    return value.split(";", 1)[0].strip() or None if value is not None else None


def trunk_phone_number(participant: rtc.Participant) -> str | None:
    """The number of the trunk that took a SIP call (``sip.trunkPhoneNumber``), or None."""
    if participant.kind != rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
        return None
    value = _attribute(participant, TRUNK_NUMBER_ATTRIBUTE)
    return value.strip() or None if value is not None else None


def is_attested(participant: rtc.Participant, attribute: str, values: Collection[str]) -> bool:
    """True when a SIP caller's number is vouched for by the network (STIR/SHAKEN).

    ``attribute`` is where the trunk maps the carrier's verdict; it holds the verdict itself
    (``TN-Validation-Passed-A``) or a ``P-Asserted-Identity`` header, whose URI naming the
    caller's number carries it as a ``verstat`` parameter (a display name is the caller's to
    write, and never counts). ``values`` are the verdicts that count, in lower case. Only a SIP
    participant's attributes are set by LiveKit.
    """
    if participant.kind != rtc.ParticipantKind.PARTICIPANT_KIND_SIP or not attribute:
        return False
    value = _attribute(participant, attribute)
    if value is None:
        return False
    if looks_like_header(value):
        verdict = asserted_verstat(value, caller_phone_number(participant))
    else:
        verdict = value.strip()
    return verdict is not None and verdict.lower() in values


def is_dialled(participant: rtc.Participant) -> bool:
    """True for a SIP leg the call dialled out (``CreateSIPParticipant``): kind SIP without the
    ``sip.ruleID`` an inbound leg always has."""
    return participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP and not _attribute(
        participant, RULE_ID_ATTRIBUTE
    )


def why_not_caller(participant: Any) -> str | None:
    """Why a participant can never be a call's caller (words for a log line, no personal
    data), or None when it can."""
    if not isinstance(participant, rtc.RemoteParticipant):
        return "not a remote participant"
    if participant.kind not in CALLER_KINDS:
        return f"a participant of kind {rtc.ParticipantKind.Name(participant.kind)}"
    if (_attribute(participant, NOT_CALLER_ATTRIBUTE) or "").strip().lower() not in _NO:
        return f"marked {NOT_CALLER_ATTRIBUTE}"
    if is_dialled(participant):
        return f"a SIP leg the call dialled out (no {RULE_ID_ATTRIBUTE})"
    return None


def is_caller(participant: Any) -> bool:
    """True for a participant that can be a call's caller: someone who rang in (see the
    module's rules), not an agent, a dialled leg or a participant marked not a caller."""
    return why_not_caller(participant) is None


def find_caller(room: rtc.Room, *, trust_standard: bool = True) -> rtc.RemoteParticipant | None:
    """The caller among a room's participants: a SIP participant, else a CONNECTOR one, else a
    standard one; among each kind, one with a number (that counts) first. Participants that
    can never be the caller (:func:`why_not_caller`) are passed over."""
    participants: list[rtc.RemoteParticipant] = [
        p for p in _values(room.remote_participants) if is_caller(p)
    ]
    for kind in CALLER_KINDS:
        of_kind = [p for p in participants if p.kind == kind]
        with_number = [p for p in of_kind if caller_phone_number(p, trust_standard=trust_standard)]
        if with_number or of_kind:
            return (with_number or of_kind)[0]
    return None


Offer = Literal["chosen", "again", "not_a_caller", "caller_taken", "decided"]
"""What :meth:`CallerChoice.offer` made of a participant: ``chosen`` (the call's caller from now
on), ``again`` (the caller, back or with new attributes), ``not_a_caller`` (can never be one),
``caller_taken`` (another is the caller), ``decided`` (the app decided the call without a
participant)."""


class CallerChoice:
    """The caller of one call, chosen once by the module's rules.

    Args:
        trust_standard: A standard participant's own number counts
            (``MEMORY_TRUST_PARTICIPANT_NUMBERS``); it only orders :meth:`pick`'s choice.
    """

    def __init__(self, *, trust_standard: bool) -> None:
        self._trust_standard = trust_standard
        self._participant: rtc.RemoteParticipant | None = None
        self._by_app = False
        self._decided = False

    @property
    def participant(self) -> rtc.RemoteParticipant | None:
        """The caller, once chosen (the latest participant object of their identity)."""
        return self._participant

    @property
    def decided(self) -> bool:
        """True once the caller is chosen, or the call was decided without one."""
        return self._decided

    def take(self, participant: rtc.RemoteParticipant) -> None:
        """The app names the caller (``attach(participant=...)``): whatever its kind or
        direction, unless the call is decided already."""
        if not self._decided:
            self._participant, self._by_app, self._decided = participant, True, True

    def close(self) -> None:
        """The app decided the call without a participant (``attach(phone_number=...)``):
        nobody who joins becomes its caller."""
        self._decided = True

    def pick(self, room: rtc.Room) -> rtc.RemoteParticipant | None:
        """Choose the caller among those already in the room (:func:`find_caller`), unless the
        call is decided; the caller, or None."""
        if not self._decided:
            found = find_caller(room, trust_standard=self._trust_standard)
            if found is not None:
                self.offer(found)
        return self._participant

    def offer(self, participant: Any) -> Offer:
        """A participant joined, came back or changed attributes: is it the caller?"""
        current = self._participant
        if current is not None and getattr(participant, "identity", None) == current.identity:
            # The caller's identity again: a reconnect, or new attributes. A dialled leg that
            # took the identity over (LiveKit names a dialled leg sip_<number> by default)
            # is still not the caller, unless the app named this identity.
            if self._by_app or is_caller(participant):
                self._participant = participant
                return "again"
            return "not_a_caller"
        if not is_caller(participant):
            return "not_a_caller"
        if current is not None:
            return "caller_taken"
        if self._decided:
            return "decided"
        self._participant, self._decided = participant, True
        return "chosen"


def _attribute(participant: rtc.Participant, name: str) -> str | None:
    attributes = participant.attributes
    value = attributes.get(name) if isinstance(attributes, dict) else None
    # Only a real string counts: a fake job's mock room answers anything with a mock.
    return value if isinstance(value, str) else None


def hung_up(participant: rtc.RemoteParticipant) -> bool:
    """True when a participant that left is gone for good, as LiveKit's RoomIO judges it.

    A SIP caller cannot come back: their call leg is over, whatever the reason. Anyone else
    may reconnect after a network drop, and is gone only for a final reason.
    """
    if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
        return True
    return participant.disconnect_reason in _FINAL_REASONS


def _values(mapping: Any) -> list[Any]:
    # A fake job's room is a mock whose attributes are mocks too.
    try:
        return list(mapping.values())
    except (AttributeError, TypeError):
        return []

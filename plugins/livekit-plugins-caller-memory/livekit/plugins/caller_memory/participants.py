"""Who the caller is among a LiveKit room's participants, their number, and when they are gone.

A LiveKit SIP inbound call puts the caller in the room as a participant of kind SIP, with the
number in the ``sip.phoneNumber`` attribute. A LiveKit Connector (WhatsApp, Twilio) bridges a
caller in as kind CONNECTOR. Agents, egress and ingress never count.

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
from typing import Any

from livekit import rtc
from livekit.agents.voice.room_io.types import DEFAULT_CLOSE_ON_DISCONNECT_REASONS

from ._asserted_identity import asserted_verstat, looks_like_header

__all__ = [
    "CALLER_KINDS",
    "PHONE_ATTRIBUTE",
    "caller_phone_number",
    "find_caller",
    "is_attested",
    "hung_up",
    "is_caller",
]

PHONE_ATTRIBUTE = "sip.phoneNumber"
"""The participant attribute LiveKit SIP sets to the caller's number."""

CALLER_KINDS = (
    rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
    rtc.ParticipantKind.PARTICIPANT_KIND_CONNECTOR,
    rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
)
"""Who can be the caller, in order of preference (LiveKit's own default participant kinds)."""

_FINAL_REASONS = frozenset(DEFAULT_CLOSE_ON_DISCONNECT_REASONS)
"""The disconnect reasons after which LiveKit's RoomIO closes the session: the participant
left for good (``CLIENT_INITIATED``, ``ROOM_DELETED``, ``USER_REJECTED``)."""


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


def _attribute(participant: rtc.Participant, name: str) -> str | None:
    attributes = participant.attributes
    value = attributes.get(name) if isinstance(attributes, dict) else None
    # Only a real string counts: a fake job's mock room answers anything with a mock.
    return value if isinstance(value, str) else None


def is_caller(participant: Any) -> bool:
    """True for a participant that can be the caller (SIP, CONNECTOR or STANDARD)."""
    return isinstance(participant, rtc.RemoteParticipant) and participant.kind in CALLER_KINDS


def find_caller(room: rtc.Room, *, trust_standard: bool = True) -> rtc.RemoteParticipant | None:
    """The caller among a room's participants: a SIP participant, else a CONNECTOR one, else a
    standard one; among each kind, one with a number (that counts) first."""
    participants: list[rtc.RemoteParticipant] = [
        p for p in _values(room.remote_participants) if is_caller(p)
    ]
    for kind in CALLER_KINDS:
        of_kind = [p for p in participants if p.kind == kind]
        with_number = [p for p in of_kind if caller_phone_number(p, trust_standard=trust_standard)]
        if with_number or of_kind:
            return (with_number or of_kind)[0]
    return None


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

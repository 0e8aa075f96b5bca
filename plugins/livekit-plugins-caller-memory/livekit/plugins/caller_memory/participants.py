"""Who the caller is among a LiveKit room's participants, their number, and when they are gone.

A LiveKit SIP inbound call puts the caller in the room as a participant of kind SIP, with the
number in the ``sip.phoneNumber`` attribute. A LiveKit Connector (WhatsApp, Twilio) bridges a
caller in as kind CONNECTOR. In a dev room, a standard participant can carry the attribute to
pose as a caller (``lk token create --attribute sip.phoneNumber=...``). Agents, egress and
ingress never count.
"""

from __future__ import annotations

from typing import Any

from livekit import rtc
from livekit.agents.voice.room_io.types import DEFAULT_CLOSE_ON_DISCONNECT_REASONS

__all__ = [
    "CALLER_KINDS",
    "PHONE_ATTRIBUTE",
    "caller_phone_number",
    "find_caller",
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


def caller_phone_number(participant: rtc.Participant) -> str | None:
    """The caller's number from the ``sip.phoneNumber`` attribute, or None when withheld."""
    attributes = participant.attributes
    value = attributes.get(PHONE_ATTRIBUTE) if isinstance(attributes, dict) else None
    # Only a real string counts: a fake job's mock room answers anything with a mock.
    return value.strip() or None if isinstance(value, str) else None


def is_caller(participant: Any) -> bool:
    """True for a participant that can be the caller (SIP, CONNECTOR or STANDARD)."""
    return isinstance(participant, rtc.RemoteParticipant) and participant.kind in CALLER_KINDS


def find_caller(room: rtc.Room) -> rtc.RemoteParticipant | None:
    """The caller among a room's participants: a SIP participant, else a CONNECTOR one, else a
    standard one; among each kind, one with a number first."""
    participants: list[rtc.RemoteParticipant] = [
        p for p in _values(room.remote_participants) if is_caller(p)
    ]
    for kind in CALLER_KINDS:
        of_kind = [p for p in participants if p.kind == kind]
        with_number = [p for p in of_kind if caller_phone_number(p)]
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

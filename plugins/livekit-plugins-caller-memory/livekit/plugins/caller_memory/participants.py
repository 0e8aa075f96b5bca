"""Who the caller is among a LiveKit room's participants, and their number.

A LiveKit SIP inbound call puts the caller in the room as a participant of kind SIP, with the
number in the ``sip.phoneNumber`` attribute. In a dev room, a standard participant can carry
the attribute to pose as a caller (``lk token create --attribute sip.phoneNumber=...``).
"""

from __future__ import annotations

from typing import Any

from livekit import rtc

__all__ = ["PHONE_ATTRIBUTE", "caller_phone_number", "find_caller"]

PHONE_ATTRIBUTE = "sip.phoneNumber"
"""The participant attribute LiveKit SIP sets to the caller's number."""

_CALLER_KINDS = (
    rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
    rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
)


def caller_phone_number(participant: rtc.Participant) -> str | None:
    """The caller's number from the ``sip.phoneNumber`` attribute, or None when withheld."""
    attributes = participant.attributes
    value = attributes.get(PHONE_ATTRIBUTE) if isinstance(attributes, dict) else None
    # Only a real string counts: console mode's mock room answers anything with a mock.
    return value.strip() or None if isinstance(value, str) else None


def find_caller(room: rtc.Room) -> rtc.RemoteParticipant | None:
    """The caller among a room's participants: a SIP participant, else a standard one.

    A standard participant posing as a caller (``--attribute sip.phoneNumber=...``) wins over
    one without a number; agents and egress never count.
    """
    participants = [
        p
        for p in _values(room.remote_participants)
        if isinstance(p, rtc.RemoteParticipant) and p.kind in _CALLER_KINDS
    ]
    for kind in _CALLER_KINDS:
        of_kind = [p for p in participants if p.kind == kind]
        with_number = [p for p in of_kind if caller_phone_number(p)]
        if with_number or of_kind:
            return (with_number or of_kind)[0]
    return None


def _values(mapping: Any) -> list[Any]:
    # A fake job's room is a mock whose attributes are mocks too.
    try:
        return list(mapping.values())
    except (AttributeError, TypeError):
        return []

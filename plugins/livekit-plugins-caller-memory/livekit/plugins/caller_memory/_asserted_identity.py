"""The STIR/SHAKEN verdict in a ``P-Asserted-Identity`` header, read by the header's grammar.

RFC 3325 (9.1) and RFC 3261 (25.1)::

    PAssertedID       = "P-Asserted-Identity" HCOLON PAssertedID-value *(COMMA PAssertedID-value)
    PAssertedID-value = name-addr / addr-spec
    name-addr         = [ display-name ] LAQUOT addr-spec RAQUOT
    display-name      = *(token LWS) / quoted-string
    quoted-string     = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE

The caller writes the display name (``"verstat=TN-Validation-Passed" <sip:...>`` is theirs to
send): only the parameters of a URI count. 3GPP (TS 24.229) and ATIS-1000074 put ``verstat`` in
the URI's user part (``sip:+1555...;verstat=TN-Validation-Passed@host;user=phone``) or among a
``tel:`` URI's parameters; some carriers put it among the SIP URI's parameters after the host
(Telnyx: ``<sip:+1555...@sip.telnyx.com;verstat=...>``). All three are read.

The verdict is about the number the header asserts. A header may assert two (a ``sip:`` and a
``tel:`` URI), and the number it asserts may not be the caller's (``sip.phoneNumber`` is the
From header's): the verdict counts only from a URI whose number is the caller's.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["asserted_verstat", "looks_like_header"]

_NOT_DIGITS = re.compile(r"\D")


def looks_like_header(value: str) -> bool:
    """True when an attribute holds a header with URIs, not a bare verdict
    (``TN-Validation-Passed-A``, as Twilio's ``X-Twilio-VerStat``)."""
    return "<" in value or ":" in value


def asserted_verstat(header: str, number: str | None) -> str | None:
    """The ``verstat`` parameter of the header's URI that names ``number``, or None.

    None as well for a header that does not parse (an unclosed quote or angle bracket), for
    no URI naming ``number``, and for URIs of the number that disagree.

    Args:
        header: The value of a ``P-Asserted-Identity`` header (several values, comma-separated).
        number: The caller's number, as ``sip.phoneNumber`` holds it; compared digit by digit.
    """
    wanted = _NOT_DIGITS.sub("", number or "")
    if not wanted:
        return None
    verdicts: set[str] = set()
    for value in _values(header):
        uri = _addr_spec(value)
        if uri is None:
            continue
        found = _uri_number_and_verstat(uri)
        if found is None:
            continue
        uri_number, verdict = found
        if _NOT_DIGITS.sub("", uri_number) == wanted and verdict is not None:
            verdicts.add(verdict)
    return verdicts.pop() if len(verdicts) == 1 else None


def _values(header: str) -> list[str]:
    """The header's values: split at commas outside quoted strings and angle brackets."""
    values: list[str] = []
    start = 0
    quoted = escaped = False
    angle = 0
    for i, char in enumerate(header):
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "<":
            angle += 1
        elif char == ">":
            angle = max(angle - 1, 0)
        elif char == "," and angle == 0:
            values.append(header[start:i])
            start = i + 1
    values.append(header[start:])
    return [v for v in (v.strip() for v in values) if v]


def _addr_spec(value: str) -> str | None:
    """The URI of one value: inside its angle brackets after any display name, or the value
    itself (an addr-spec); None when the value does not parse."""
    i = 0
    if value.startswith('"'):  # a quoted display name: skip it whole, escapes included
        i = 1
        while i < len(value) and value[i] != '"':
            i += 2 if value[i] == "\\" else 1
        if i >= len(value):
            return None  # unclosed quote
        i += 1
        rest = value[i:].lstrip()
        if not rest.startswith("<"):
            return None
    else:
        rest = value
        if "<" not in rest:
            return rest.strip() or None  # addr-spec: no display name, no brackets
        name, _, after = rest.partition("<")
        if '"' in name or ">" in name:
            return None  # tokens hold no quotes
        rest = "<" + after
    end = rest.find(">")
    if end < 0:
        return None
    return rest[1:end].strip() or None


def _uri_number_and_verstat(uri: str) -> tuple[str, str | None] | None:
    """(the number a ``sip:``/``sips:``/``tel:`` URI names, its ``verstat`` or None)."""
    scheme, colon, rest = uri.partition(":")
    if not colon:
        return None
    scheme = scheme.strip().lower()
    rest = rest.split("?", 1)[0]  # URI headers are no parameters of the URI
    if scheme == "tel":
        number, *params = rest.split(";")
    elif scheme in ("sip", "sips"):
        if "@" not in rest:
            return None
        userinfo, _, hostport = rest.rpartition("@")
        user, *user_params = userinfo.split(";")
        number = user.split(":", 1)[0]  # user:password
        params = [*user_params, *hostport.split(";")[1:]]
    else:
        return None
    verdicts = {
        unquote(value).strip()
        for name, _, value in (p.partition("=") for p in params)
        if name.strip().lower() == "verstat" and value.strip()
    }
    if len(verdicts) > 1:  # the URI says two things: neither counts
        return None
    return unquote(number), next(iter(verdicts), None)

"""Redaction: what a caller says that must never be stored, removed before anything is kept.

Card numbers, national id numbers, one-time codes, e-mail addresses and phone numbers are
replaced by a tag such as ``[card number]``. Applied to every turn as it is recorded, so neither
the journal, the session data, the summary nor the outbox ever holds them.

Transcripts come from speech-to-text, so numbers arrive as numerals ("4111 1111 ...", with
spaces, dashes or dots) or as words ("four one one one", "oh" for zero, "double five"). Both
are read into one *run* of digits, and each run is judged by its digits and by the words said
next to it:

* **card**: 13 to 19 digits that pass the Luhn check and start like a card (Visa, Mastercard,
  Amex, Discover, JCB, Diners, UnionPay, Maestro), or any 13 to 19 digits right after "card
  number"; digits read on in the same breath (expiry, security code) go with it, and a security
  code said after "CVV", "CVC", "security code"... is tagged ``[code]``. An expiry date written
  as a date ("expiring 09/28") in a turn that gave a card number is tagged ``[expiry]``; said on
  its own ("the card expires 09/27") it is kept: without the number it identifies nothing.
* **national_id**: 6 to 15 digits or a letters-and-digits id said after a national-id word
  ("social security", "SSN", "ITIN", "national insurance", "SIN", "DNI", "BSN", "codice
  fiscale", "passport"...); without one, only shapes that carry their own check: US SSN and
  ITIN written 3-2-4 (SSA and IRS ranges), UK National Insurance, Spanish DNI and NIE (check
  letter), Italian codice fiscale (check letter), French NIR (key).
* **otp**: 4 to 8 digits said after "code", "PIN", "OTP", "passcode", "verification"... or
  before them ("1234 is my code"); not after "zip code", "area code", "promo code"...
* **email**: written addresses and spoken ones ("ana dot lopez at example dot com").
* **phone**: what ``phonenumbers``' ``PhoneNumberMatcher`` finds in the run (international
  prefixes "+", "plus", "00" and "011" included; national numbers starting with 0 tried for a
  few European regions too), kept when the library finds it valid, or possible and said after
  "phone", "call me at", "my number is"...

Numbers said after "order", "confirmation", "zip", "employee", "room", "invoice"... are kept,
and so are prices, amounts, dates and times. Every pattern is linear: no nested quantifiers
over overlapping classes, and every repetition that could meet another is bounded.
"""

from __future__ import annotations

from .engine import Redactor
from .patterns import KINDS, TAGS, WORD_DIGITS

__all__ = ["KINDS", "TAGS", "WORD_DIGITS", "Redactor"]

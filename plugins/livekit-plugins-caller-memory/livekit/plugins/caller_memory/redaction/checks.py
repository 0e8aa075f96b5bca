"""Check digits and number shapes: card prefixes, SSN/ITIN ranges, NIR, codice fiscale."""

from __future__ import annotations

from .patterns import CF_ODD


def card_shaped(digits: str) -> bool:
    """Whether ``digits`` starts like a card of its length (IIN ranges of the major networks)."""
    n = len(digits)
    two = int(digits[:2])
    four = int(digits[:4])
    first = digits[0]
    if first == "4":
        return n in (13, 16, 19)
    if first == "5":
        return n == 16 if 51 <= two <= 55 else 12 <= n <= 19  # Mastercard, else Maestro
    if first == "2":
        return (n == 16 and 2221 <= four <= 2720) or (2200 <= four <= 2204 and 16 <= n <= 19)
    if first == "3":
        if two in (34, 37):
            return n == 15
        if 3528 <= four <= 3589:
            return 16 <= n <= 19
        return (300 <= int(digits[:3]) <= 305 or two in (36, 38, 39)) and 14 <= n <= 19
    if first == "6":
        return 13 <= n <= 19
    return False


def ssn_or_itin(area: str, group: str, serial: str) -> bool:
    """US SSN (not 000, 666 or 9xx; group not 00; serial not 0000) or ITIN (9xx, IRS groups)."""
    if group == "00" or serial == "0000" or area == "000" or area == "666":
        return False
    if area[0] != "9":
        return True
    g = int(group)
    return 50 <= g <= 65 or 70 <= g <= 88 or 90 <= g <= 92 or 94 <= g <= 99


def nir_ok(digits: str) -> bool:
    """French NIR: 13 digits, sex 1 or 2 first, then a two-digit key (97 - n mod 97)."""
    return digits[0] in "12" and 97 - int(digits[:13]) % 97 == int(digits[13:])


def codice_fiscale_ok(code: str) -> bool:
    code = code.upper()
    total = sum(
        CF_ODD[ch] if i % 2 == 0 else (int(ch) if ch.isdigit() else ord(ch) - 65)
        for i, ch in enumerate(code[:15])
    )
    return chr(65 + total % 26) == code[15] and sum(ch.isdigit() for ch in code) >= 3

"""Redaction measured on its labeled corpus, tricky cases, and properties on arbitrary text."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from livekit.plugins.caller_memory.redaction import KINDS, Redactor
from livekit.plugins.caller_memory.redaction_eval import (
    FP_TARGET,
    RECALL_TARGET,
    evaluate,
    leaks,
    load_corpus,
    main,
)

REDACT = Redactor()


def test_the_corpus_is_large_labeled_and_balanced() -> None:
    samples = load_corpus()
    sensitive = [s for s in samples if s.kinds]
    assert len(samples) >= 200
    assert 0.4 <= len(sensitive) / len(samples) <= 0.6
    for kind in KINDS:
        assert sum(kind in s.kinds for s in samples) >= 30, kind
    assert all(s.spans for s in sensitive)


def test_every_kind_reaches_its_recall_and_false_positives_stay_low() -> None:
    report = evaluate()
    for kind in KINDS:
        assert report.recall(kind) >= RECALL_TARGET, (kind, report.misses)
    assert report.fp_rate <= FP_TARGET, report.false_positives
    assert not report.failed_targets()


def test_the_evaluation_runs_as_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "| card |" in out and "FP rate" in out


def test_the_evaluation_fails_a_redactor_that_misses() -> None:
    report = evaluate(Redactor(["email"]))
    assert report.recall("card") == 0.0
    assert report.failed_targets()


def test_a_leak_is_any_four_digits_left_in_a_run_numerals_or_words() -> None:
    assert leaks("card", "4111 1111 1111 1111", "it's four one one one [card number]")
    assert leaks("email", "ana at example dot com", "ana [email]")
    assert not leaks("card", "4111 1111 1111 1111", "it's [card number], order 2024")


@pytest.mark.parametrize(
    ("said", "stored"),
    [
        ("card 4111.1111.1111.1111 cvv 123", "card [card number] cvv [code]"),
        ("four one one one one one one one one one one one one one one one", "[card number]"),
        ("my social is one two three four five six seven eight nine", "my social is [id number]"),
        ("my itin is 912-70-1234", "my itin is [id number]"),
        ("1234 is my code", "[code] is my code"),
        ("my code is four five six seven", "my code is [code]"),
        ("ana dot lopez at example dot com", "[email]"),
        ("it's 0044 20 7946 0958", "it's [phone number]"),
        ("my cell is four one five double five five oh one two three", "my cell is [phone number]"),
        ("national insurance number QQ 12 34 56 C", "national insurance number [id number]"),
    ],
)
def test_what_speech_to_text_writes_is_redacted(said: str, stored: str) -> None:
    assert REDACT(said) == stored


@pytest.mark.parametrize(
    "benign",
    [
        "my order number is 4829173",
        "the zip code is 94103",
        "employee number 882 4471",
        "it costs $1,299.99",
        "the confirmation code is K7P2M9",
        "call me at 3 30",
        "the meeting is at 14:30 on 03.06.2024",
        "look at example dot com for the form",
        "the card expires 09/27",
    ],
)
def test_numbers_that_are_not_secrets_are_kept(benign: str) -> None:
    assert REDACT(benign) == benign


def test_an_expiry_goes_with_the_card_and_alone_is_kept() -> None:
    said = "I want to pay, my card is 4111 1111 1111 1111 expiring 09/28"
    assert REDACT(said) == "I want to pay, my card is [card number] expiring [expiry]"
    # Said on its own, an expiry date identifies nothing.
    assert REDACT("the card expires 09/27") == "the card expires 09/27"


def test_only_the_chosen_kinds_are_redacted() -> None:
    said = "card 4111 1111 1111 1111, email ana@example.com"
    assert Redactor(["email"])(said) == "card 4111 1111 1111 1111, email [email]"
    assert Redactor(["card"])(said) == "card [card number], email ana@example.com"
    assert not Redactor([]).enabled and Redactor([])(said) == said
    with pytest.raises(ValueError, match="unknown kind"):
        Redactor(["passport"])


@pytest.mark.parametrize(
    "turn",
    [
        ("1 " * 2000)[:3999] + "x",
        ("a@a.a" * 800)[:4000],
        "1-" * 2000,
        "one " * 1000,
        "a dot " * 666 + " at",
        "code 1 " * 571,
        "555 0123 x " * 363,
        "(1)" * 1333,
        "1" + " " * 3998 + "x",
    ],
    ids=["digits", "emails", "dashes", "words", "dots", "codes", "phones", "parens", "spaces"],
)
def test_an_adversarial_turn_completes(turn: str) -> None:
    # Every pattern is linear; speed is measured in the README, not asserted here.
    out = REDACT(turn)
    assert REDACT(out) == out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec=None)))
@example("\ud800 4111 1111 1111 1111 \udfff")
@example("ana at example dot com \ud83d")
@example("İ4111 1111 1111 1111 code 1234")
def test_redaction_never_raises_and_is_idempotent(text: str) -> None:
    once = REDACT(text)
    assert isinstance(once, str)
    assert REDACT(once) == once


_SAYABLE = st.lists(
    st.sampled_from(
        "0 1 4 5 9 12 123 4111 0044 555 0123 oh one four five nine double dash plus + ( ) "
        "- . , code pin ssn social card cvv number call order zip at dot @ ana example com "
        "QQ C X 12345678Z is my the".split()
    ),
    max_size=40,
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(_SAYABLE)
def test_redaction_is_idempotent_on_number_heavy_speech(text: str) -> None:
    once = REDACT(text)
    assert REDACT(once) == once

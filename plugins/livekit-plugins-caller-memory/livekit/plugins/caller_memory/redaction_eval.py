"""How well redaction works, measured on a labeled corpus of call-transcript sentences.

``redaction_corpus.jsonl`` (shipped beside this module) holds one JSON object a line::

    {"text": "...", "kinds": ["card"], "spans": [{"kind": "card", "text": "4111 ..."}],
     "keep": ["order number is 77812"]}

``kinds`` lists the sensitive kinds in the sentence (empty for a benign one), ``spans`` the exact
sensitive substrings, ``keep`` substrings that must come out untouched. The sentences are
written the way speech-to-text writes them: digits as numerals or as words, sparse punctuation.

Scoring, per kind K (one of :data:`~.redaction.KINDS`):

* **recall**: a sentence with K counts as redacted when the output holds one of K's tags and
  no span of K leaks. A span leaks when its text is still in the output, when any 4 consecutive
  digits of it (all of them if it has fewer) are still said in one run of digits, numerals or
  words ("four one one one" is ``4111``), or, for an e-mail, when its local part remains.
* **false positives**: a benign sentence counts when the output differs from the input at all;
  a sensitive sentence with ``keep`` counts when one of those substrings is gone. The rate is
  their number over the number of benign sentences plus sentences with ``keep``.

Run ``python -m livekit.plugins.caller_memory.redaction_eval`` (``--show`` lists every miss);
it exits with status 1 when recall is under 95 % for a kind or false positives are over 3 %.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .redaction import KINDS, WORD_DIGITS, Redactor

__all__ = [
    "FP_TARGET",
    "RECALL_TARGET",
    "Report",
    "Sample",
    "evaluate",
    "leaks",
    "load_corpus",
    "main",
]

RECALL_TARGET = 0.95
"""Smallest recall accepted for every kind."""
FP_TARGET = 0.03
"""Largest false-positive rate accepted."""

TAGS: dict[str, tuple[str, ...]] = {
    "card": ("[card number]", "[code]"),  # a card's security code is tagged as a code
    "national_id": ("[id number]",),
    "otp": ("[code]",),
    "email": ("[email]",),
    "phone": ("[phone number]",),
}
"""The tags that may replace each kind."""

CORPUS = "redaction_corpus.jsonl"

_DIGIT_WORDS = {word: digit for word, digit in WORD_DIGITS.items() if len(digit) == 1}
"""Spoken digits ("oh", "niner"...), as the redactor reads them."""
_REPEAT = {"double": 2, "triple": 3}
_WORD = re.compile(r"[0-9]+|[^\W\d_]+")
_AT = re.compile(r"@|\s+at\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    """One labeled sentence of the corpus."""

    text: str
    kinds: tuple[str, ...]
    spans: tuple[tuple[str, str], ...] = ()
    keep: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        spans = tuple((s["kind"], s["text"]) for s in data.get("spans", ()))
        kinds = tuple(data.get("kinds", ()))
        sample = cls(data["text"], kinds, spans, tuple(data.get("keep", ())))
        unknown = (set(kinds) | {k for k, _ in spans}) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kind(s) {sorted(unknown)} in {data['text']!r}")
        if {k for k, _ in spans} != set(kinds):
            raise ValueError(f"kinds and spans disagree in {data['text']!r}")
        for piece in [s for _, s in spans] + list(sample.keep):
            if piece not in sample.text:
                raise ValueError(f"{piece!r} is not in {data['text']!r}")
        return sample


def load_corpus(path: str | Path | None = None) -> list[Sample]:
    """The samples of ``path``, by default the corpus shipped with the package."""
    if path is None:
        text = resources.files(__package__).joinpath(CORPUS).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return [Sample.from_json(json.loads(line)) for line in text.splitlines() if line.strip()]


def _digit_runs(text: str) -> list[str]:
    """The runs of digits said in ``text``: numerals and digit words, broken by any other word."""
    runs: list[str] = []
    current: list[str] = []
    repeat = 1
    for match in _WORD.finditer(text):
        word = match.group(0).lower()
        if word.isdigit():
            current.append(word * repeat)
            repeat = 1
        elif word in _DIGIT_WORDS:
            current.append(_DIGIT_WORDS[word] * repeat)
            repeat = 1
        elif word in _REPEAT:
            repeat = _REPEAT[word]
        else:
            if current:
                runs.append("".join(current))
            current, repeat = [], 1
    if current:
        runs.append("".join(current))
    return runs


def leaks(kind: str, span: str, output: str) -> bool:
    """Whether ``output`` still gives away the sensitive ``span`` of ``kind``."""
    if span in output:
        return True
    if kind == "email":
        local = _AT.split(span)[0].strip().lower()
        if local and local in output.lower():
            return True
    digits = "".join(_digit_runs(span))
    if not digits:
        return False
    width = min(4, len(digits))
    pieces = {digits[i : i + width] for i in range(len(digits) - width + 1)}
    return any(piece in run for run in _digit_runs(output) for piece in pieces)


@dataclass
class Report:
    """What :func:`evaluate` found."""

    sentences: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    redacted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    benign: int = 0
    altered: int = 0
    with_keep: int = 0
    keep_broken: int = 0
    misses: list[tuple[str, str, str]] = field(default_factory=list)
    """(kind, input, output) of every sensitive sentence not redacted."""
    false_positives: list[tuple[str, str]] = field(default_factory=list)
    """(input, output) of every benign sentence altered or ``keep`` broken."""

    def recall(self, kind: str) -> float:
        total = self.sentences[kind]
        return self.redacted[kind] / total if total else 1.0

    @property
    def fp_rate(self) -> float:
        total = self.benign + self.with_keep
        return (self.altered + self.keep_broken) / total if total else 0.0

    def failed_targets(self, kinds: Iterable[str] = KINDS) -> list[str]:
        """A sentence for each target missed; empty when all are met."""
        failed = [
            f"recall of {kind} is {self.recall(kind):.1%}, under {RECALL_TARGET:.0%}"
            for kind in kinds
            if self.sentences[kind] and self.recall(kind) < RECALL_TARGET
        ]
        if self.fp_rate > FP_TARGET:
            failed.append(f"false positives are {self.fp_rate:.1%}, over {FP_TARGET:.0%}")
        return failed

    def table(self, kinds: Iterable[str] = KINDS) -> str:
        """The results as markdown tables."""
        lines = ["| kind | sentences | redacted | recall |", "| --- | ---: | ---: | ---: |"]
        for kind in kinds:
            lines.append(
                f"| {kind} | {self.sentences[kind]} | {self.redacted[kind]} "
                f"| {self.recall(kind):.1%} |"
            )
        lines += [
            "",
            "| benign sentences | altered | sentences with keep | keep broken | FP rate |",
            "| ---: | ---: | ---: | ---: | ---: |",
            f"| {self.benign} | {self.altered} | {self.with_keep} | {self.keep_broken} "
            f"| {self.fp_rate:.1%} |",
        ]
        return "\n".join(lines)


def evaluate(redactor: Redactor | None = None, samples: Sequence[Sample] | None = None) -> Report:
    """Runs ``redactor`` (all kinds, US by default) over ``samples`` (the shipped corpus)."""
    redact = redactor if redactor is not None else Redactor()
    report = Report()
    for sample in load_corpus() if samples is None else samples:
        output = redact(sample.text)
        if not sample.kinds:
            report.benign += 1
            if output != sample.text:
                report.altered += 1
                report.false_positives.append((sample.text, output))
            continue
        if sample.keep:
            report.with_keep += 1
            if any(piece not in output for piece in sample.keep):
                report.keep_broken += 1
                report.false_positives.append((sample.text, output))
        for kind in sample.kinds:
            report.sentences[kind] += 1
            tagged = any(tag in output for tag in TAGS[kind])
            leaked = any(leaks(k, span, output) for k, span in sample.spans if k == kind)
            if tagged and not leaked:
                report.redacted[kind] += 1
            else:
                report.misses.append((kind, sample.text, output))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the evaluation; 1 when a target is missed."""
    parser = argparse.ArgumentParser(
        prog="python -m livekit.plugins.caller_memory.redaction_eval", description=__doc__
    )
    parser.add_argument("--corpus", help="a JSONL corpus instead of the shipped one")
    parser.add_argument("--region", default="US", help="region for numbers without +code")
    parser.add_argument("--show", action="store_true", help="list every miss and false positive")
    args = parser.parse_args(argv)
    report = evaluate(Redactor(region=args.region), load_corpus(args.corpus))
    print(report.table())
    if args.show:
        for kind, text, output in report.misses:
            print(f"\nmissed {kind}: {text!r}\n    -> {output!r}")
        for text, output in report.false_positives:
            print(f"\nfalse positive: {text!r}\n    -> {output!r}")
    failed = report.failed_targets()
    for line in failed:
        print(f"\nTARGET MISSED: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Every relative link of the documentation points at something that exists.

The README, every ``docs/*.md``, ``CONTRIBUTING.md`` and the plugin's README: a link's file
must exist, and its ``#anchor`` must be a heading of that file, slugged as GitHub does. The docs
index lists every page.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "CONTRIBUTING.md",
    ROOT / "plugins" / "livekit-plugins-caller-memory" / "README.md",
]

_FENCE = re.compile(r"^\s*```")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose(text: str) -> list[str]:
    """The lines outside fenced blocks, with inline code spans removed (a link shown as code is
    not a link)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return lines


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file's headings, repeated ones numbered as GitHub does."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    for line in lines:
        heading = _HEADING.match(line)
        if heading is None:
            continue
        slug = _slug(heading.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The relative link targets of a markdown file (web and mail addresses left out)."""
    targets = []
    for line in _prose(path.read_text()):
        for target in _LINK.findall(line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                targets.append(target)
    return targets


def test_the_slug_is_githubs() -> None:
    assert _slug("The `caller-memory` command") == "the-caller-memory-command"
    assert _slug("Upgrading from 0.1") == "upgrading-from-01"
    assert _slug("What an unverified caller hears, writes and erases") == (
        "what-an-unverified-caller-hears-writes-and-erases"
    )
    assert _slug("Why the save is wired through `on_session_end`") == (
        "why-the-save-is-wired-through-on_session_end"
    )


def test_the_docs_have_links_to_check() -> None:
    # A parser that found nothing would pass every file.
    assert all(path.exists() for path in DOCS)
    assert sum(len(links(path)) for path in DOCS) > 50


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_something_that_exists(doc: Path) -> None:
    broken = []
    for target in links(doc):
        file, _, anchor = unquote(target).partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT)}")
        elif not path.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
    assert not broken, "\n".join(broken)


def test_the_docs_index_lists_every_page() -> None:
    index = ROOT / "docs" / "README.md"
    listed = {(index.parent / target).resolve() for target in links(index)}
    for page in (ROOT / "docs").glob("*.md"):
        if page != index:
            assert page.resolve() in listed, f"docs/README.md does not list {page.name}"
    readme = ROOT / "README.md"
    assert "docs/README.md" in links(readme)

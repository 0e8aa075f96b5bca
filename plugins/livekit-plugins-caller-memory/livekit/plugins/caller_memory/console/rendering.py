"""How the console's pages are rendered: the Jinja templates and the filters they use.

Templates escape everything; the one filter that writes markup (:func:`mark_redactions`)
escapes the text around the tags it marks.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.templating import Jinja2Templates

from .caller_view import REDACTION_TAG, time_element

__all__ = ["base_path", "mark_redactions", "noun", "page_templates", "plural", "when"]

HERE = Path(__file__).parent
"""The console package's folder: its ``templates/`` and ``static/``."""


def page_templates() -> Jinja2Templates:
    """The console's templates, with the filters they use."""
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["redactions"] = mark_redactions
    templates.env.filters["when"] = when
    templates.env.filters["plural"] = plural
    templates.env.filters["noun"] = noun
    return templates


def base_path(request: Request) -> str:
    """The console's path prefix (where it is mounted, or the server's root path)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def mark_redactions(text: str) -> Markup:
    """Text with each redaction tag marked (and everything else escaped)."""
    parts, last = [], 0
    for match in REDACTION_TAG.finditer(text):
        parts.append(escape(text[last : match.start()]))
        parts.append(Markup('<mark class="redacted">{}</mark>').format(match.group()))
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("").join(parts)


def plural(count: int, singular: str, plural: str | None = None) -> str:
    """``1 key``, ``2 keys``; ``plural`` when adding an s will not do (``entries``)."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def noun(count: int, singular: str, plural: str | None = None) -> str:
    """The noun alone for ``count`` (``call``, ``calls``): for a number shown apart from its
    word, as the health page's tiles show them."""
    return singular if count == 1 else plural or singular + "s"


def when(value: datetime | None) -> Markup | str:
    """A time as a ``<time>`` element (see :func:`~.caller_view.time_element`)."""
    return time_element(value)

"""The operator console: see, export and erase what the agent remembers, or withdraw one wrong
fact, in a browser.

``caller-memory serve`` (or ``python -m livekit.plugins.caller_memory.console``) runs it on
127.0.0.1; :func:`create_app` gives the ASGI application to mount in one of your own. It needs
the ``console`` extra (``pip install './plugins/livekit-plugins-caller-memory[console]'`` from
a clone); the plugin itself never imports this package, and this module imports the web stack
only when used.

- :mod:`.app`: :func:`create_app`, the routes;
- :mod:`.pages`: what every page shares (the store, who is asking, rendering), and the pages
  by what they serve: :mod:`.caller_pages`, :mod:`.erasure_pages`, :mod:`.health_pages`,
  :mod:`.login_pages`; :mod:`.caller_lookup`: a typed number read and its caller shown (for
  the callers and erasure pages); :mod:`.rendering`: the templates' filters;
- :mod:`.settings`: ``MEMORY_CONSOLE_*``, who may log in and how;
- :mod:`.security`: security headers, allowed hosts, CSRF; :mod:`.logins`: logins, proxies;
- :mod:`.audit`: the audit log;
- :mod:`.caller_view`, :mod:`.health` (with :mod:`.sampling`, :mod:`.census` and
  :mod:`.store_reads`): what the pages show;
- :mod:`.serve`: the ``serve`` command.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .settings import ConsoleSettings

__all__ = ["EXTRA_HINT", "ConsoleSettings", "create_app", "main"]

EXTRA_HINT = (
    "pip install './plugins/livekit-plugins-caller-memory[console]' from a clone of the "
    "repository (the plugin is not on PyPI yet)"
)
"""How to install what the console needs."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console (``caller-memory serve``); see ``--help`` for the arguments.

    Returns:
        The exit status: 0 after a clean stop, 1 when it cannot start (a missing ``console``
        extra too: something to install), 2 for a usage error.
    """
    try:
        from .serve import run
    except ImportError as e:
        print(f"❌ The console needs the console extra ({e.name} is missing): {EXTRA_HINT}")
        return 1
    return run(argv)


def __getattr__(name: str) -> Any:
    # The web stack is imported on first use: `caller-memory` works without the extra.
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ConsoleSettings":
        from .settings import ConsoleSettings

        return ConsoleSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

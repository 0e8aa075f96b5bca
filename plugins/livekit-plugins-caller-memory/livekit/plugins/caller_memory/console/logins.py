"""Logins that end, a throttle per client and per name, and which proxies are believed.

- :class:`LoginRecords`: every login is a record on the server (a file of its own under
  ``MEMORY_DATA_DIR/console/logins/``, 0600); the cookie carries only its random id. Logging
  out deletes the record, so a copied cookie is refused from then on; a record holds a
  fingerprint of the token and the session key, so changing either ends every login made
  before; and a record ends ``MEMORY_CONSOLE_SESSION_HOURS`` after the login, whatever the
  cookie says.
- :class:`LoginThrottle`: ten failed logins in a minute from one client address (an IPv6
  client: its /64), or under one operator name, stop logins from that address or under that
  name for the rest of the minute; everyone else still logs in.
- :class:`ForwardedHeaders`: ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only
  from the proxies ``MEMORY_CONSOLE_TRUSTED_PROXIES`` names; from anyone else they are ignored,
  and the client is the address the connection came from. :func:`proxy_vouches` says whether a
  request's operator header (``auth=proxy``) came through the proxy.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .._folders import private_folder
from ..log import logger
from .settings import ConsoleSettings

__all__ = [
    "LOGIN_FAILURES",
    "LOGIN_WINDOW_S",
    "PROXY_SECRET_HEADER",
    "ForwardedHeaders",
    "LoginRecords",
    "LoginThrottle",
    "TrustedProxies",
    "peer",
    "proxy_vouches",
    "session_signing_key",
]

LOGIN_FAILURES = 10
"""Failed logins from one client (or under one name) that stop its logins for a while."""
LOGIN_WINDOW_S = 60.0
"""The while: failures older than this no longer count."""
PROXY_SECRET_HEADER = "X-Caller-Memory-Proxy-Secret"
"""The header the proxy sends ``MEMORY_CONSOLE_PROXY_SECRET`` in (``auth=proxy``)."""
_PEER_KEY = "caller_memory.console.peer"
"""The scope entry keeping the address the connection came from, before forwarding."""
_MAX_TRACKED = 10_000
"""Clients and names the throttle remembers at most (an attacker cannot fill the memory)."""


# -- the session cookie and the records behind it ------------------------------------------


def session_signing_key(settings: ConsoleSettings) -> str:
    """The key that signs the session cookie: ``MEMORY_CONSOLE_SESSION_KEY``, or a random
    one for this process when unset."""
    key = settings.session_key.get_secret_value() if settings.session_key else ""
    return key or secrets.token_urlsafe(32)


class LoginRecords:
    """The logins the server knows of: one small file each, named by a hash of its id.

    Args:
        folder: Where the records are (made 0700).
        signing_key: The cookie's signing key (:func:`session_signing_key`).
        token: The login token. A record made under another token or signing key is no good:
            the cookie of a login made before either changed is refused, and the login page
            says the login has ended.
        lifetime_s: How long a login lasts.
    """

    def __init__(self, folder: Path, signing_key: str, token: str, lifetime_s: float) -> None:
        self._folder = folder
        # A keyed digest: the records on disk tell nothing about the token.
        self._fingerprint = hmac.new(
            signing_key.encode(), b"login-record\0" + token.encode(), "sha256"
        ).hexdigest()
        self._lifetime = lifetime_s

    @property
    def folder(self) -> Path:
        """Where the records are."""
        return self._folder

    def open(self, who: str) -> str:
        """Record a login of ``who``; returns its id, for the cookie.

        Raises:
            OSError: The record cannot be written (the login must then fail).
        """
        self._prune()
        login_id = secrets.token_urlsafe(32)
        record = {"who": who, "until": time.time() + self._lifetime, "key": self._fingerprint}
        private_folder(self._folder)
        fd = os.open(self._path(login_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, json.dumps(record).encode())
        finally:
            os.close(fd)
        return login_id

    def who(self, login_id: object) -> str | None:
        """The operator of a login still in force, or None (logged out, expired, made under
        another token or session key, or never made here)."""
        if not isinstance(login_id, str) or not login_id:
            return None
        try:
            record: Any = json.loads(self._path(login_id).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            logger.warning("console: a login record cannot be read: %s", type(e).__name__)
            return None
        if not isinstance(record, dict) or not isinstance(record.get("who"), str):
            return None
        if not hmac.compare_digest(str(record.get("key", "")), self._fingerprint):
            return None
        until = record.get("until")
        if not isinstance(until, (int, float)) or until <= time.time():
            return None
        return str(record["who"])

    def close(self, login_id: object) -> None:
        """End a login (logout): its cookie is refused from now on, wherever it was copied."""
        if isinstance(login_id, str) and login_id:
            self._path(login_id).unlink(missing_ok=True)

    def _path(self, login_id: str) -> Path:
        # The file's name is a hash: the folder's listing gives no cookie away.
        return self._folder / hashlib.sha256(login_id.encode()).hexdigest()

    def _prune(self) -> None:
        """Delete the records that ended (at each login: the folder stays small)."""
        now = time.time()
        try:
            entries = list(self._folder.iterdir())
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                until = json.loads(entry.read_bytes()).get("until")
                ended = not isinstance(until, (int, float)) or until <= now
            except (OSError, ValueError, AttributeError):
                ended = True
            if ended:
                entry.unlink(missing_ok=True)


# -- the throttle --------------------------------------------------------------------------


class LoginThrottle:
    """Failed logins counted per client address and per operator name.

    Args:
        failures: How many failures in ``window_s`` stop logins from that client or name.
        window_s: How long a failure counts.
    """

    def __init__(self, failures: int = LOGIN_FAILURES, window_s: float = LOGIN_WINDOW_S) -> None:
        self._limit, self._window = failures, window_s
        self._clients: dict[str, deque[float]] = {}
        self._names: dict[str, deque[float]] = {}

    def blocked(self, client: str | None, name: str) -> bool:
        """True when the client, or the name, failed too often in the window."""
        now = time.monotonic()
        return any(
            self._count(table, key, now) >= self._limit for table, key in self._keys(client, name)
        )

    def failed(self, client: str | None, name: str) -> None:
        """Count one failed login from ``client`` under ``name``."""
        now = time.monotonic()
        for table, key in self._keys(client, name):
            self._count(table, key, now)
            table.setdefault(key, deque()).append(now)
            while len(table) > _MAX_TRACKED:  # the oldest entry goes first
                del table[next(iter(table))]

    def _keys(self, client: str | None, name: str) -> list[tuple[dict[str, deque[float]], str]]:
        keys = [(self._clients, _client_key(client))]
        name = " ".join(name.casefold().split())
        if name:
            keys.append((self._names, name))
        return keys

    def _count(self, table: dict[str, deque[float]], key: str, now: float) -> int:
        failures = table.get(key)
        if failures is None:
            return 0
        while failures and failures[0] < now - self._window:
            failures.popleft()
        if not failures:
            del table[key]
            return 0
        return len(failures)


def _client_key(client: str | None) -> str:
    """An IPv4 address as it is, an IPv6 one by its /64 (one machine holds a whole /64)."""
    if not client:
        return "(unix socket)"
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


# -- proxies -------------------------------------------------------------------------------


class TrustedProxies:
    """The proxies whose forwarded headers are believed (``MEMORY_CONSOLE_TRUSTED_PROXIES``).

    Args:
        entries: Addresses and networks (``10.0.0.5``, ``10.0.0.0/24``, ``::1``), and
            ``unix`` for whoever connects through the Unix socket.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self._unix = False
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            if entry == "unix":
                self._unix = True
            else:
                self._networks.append(ipaddress.ip_network(entry, strict=False))

    def __bool__(self) -> bool:
        return self._unix or bool(self._networks)

    def trusts(self, address: str | None) -> bool:
        """True when a connection from ``address`` (None: the Unix socket) is a named proxy."""
        if address is None:
            return self._unix
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def client(self, peer: str | None, forwarded_for: str) -> str | None:
        """The client a request is from: the peer, or, when the peer is a named proxy, the
        last address of ``X-Forwarded-For`` that is not one of the named proxies (the ones
        before it were written by the client and prove nothing)."""
        if not self.trusts(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else peer


class ForwardedHeaders:
    """ASGI middleware: the client's address and scheme, from ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` when the connection is from a named proxy, else as connected.

    The address the connection came from stays in the scope for :func:`peer`.

    Args:
        app: The application.
        proxies: The proxies to believe.
    """

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self._app = app
        self._proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or _PEER_KEY in scope:
            await self._app(scope, receive, send)  # (mounted twice: the outer one decided)
            return
        connected = scope.get("client")
        address = str(connected[0]) if connected else None
        scope[_PEER_KEY] = address
        if self._proxies.trusts(address):
            headers = Headers(scope=scope)
            client = self._proxies.client(address, headers.get("x-forwarded-for", ""))
            if client != address:
                scope["client"] = (client, 0) if client is not None else None
            proto = headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto if scope["type"] == "http" else proto.replace("http", "ws")
        await self._app(scope, receive, send)


def peer(request: Request) -> str | None:
    """The address the request's connection came from (None: a Unix socket), before any
    forwarded header."""
    if _PEER_KEY in request.scope:
        found = request.scope[_PEER_KEY]
        return found if isinstance(found, str) else None
    return request.client.host if request.client else None


def proxy_vouches(request: Request, settings: ConsoleSettings, proxies: TrustedProxies) -> bool:
    """True when a request came through the authenticating proxy (``auth=proxy``), so its
    operator header can be believed: it carries ``MEMORY_CONSOLE_PROXY_SECRET`` when one is
    set, comes from a proxy ``MEMORY_CONSOLE_TRUSTED_PROXIES`` names when any are, and, with
    neither set, came through the Unix socket (which only the proxy's group may open)."""
    secret = settings.proxy_secret
    if secret is not None:
        sent = request.headers.get(PROXY_SECRET_HEADER, "")
        # Digests first: the comparison takes as long whatever the length sent.
        if not hmac.compare_digest(
            hashlib.sha256(sent.encode()).digest(),
            hashlib.sha256(secret.get_secret_value().encode()).digest(),
        ):
            return False
    if proxies:
        return proxies.trusts(peer(request))
    return secret is not None or peer(request) is None

"""Redis URLs and ``host:port``: reading them as redis-py does, and showing them without a
password.

A URL may hold a password: a check names what is wrong and never repeats the URL, and a URL
shown (a repr, a message) has ``***`` where the password was.
"""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qs, quote, urlsplit

__all__ = [
    "bracketed",
    "check_url",
    "compose_url",
    "host_port",
    "url_database",
    "url_server",
    "without_password",
]


_QUERY_OPTIONS = frozenset(
    {
        "db", "client_name", "username", "password", "lib_name", "lib_version",
        "health_check_interval", "retry_on_timeout", "retry_on_error", "socket_keepalive",
        "socket_read_size",
    }
)  # fmt: skip
"""What a ``REDIS_URL``'s query may set, as redis-py's ``from_url`` passes it on."""
_SETTINGS_OPTIONS = {
    "max_connections": "REDIS_MAX_CONNECTIONS",
    "socket_timeout": "REDIS_SOCKET_TIMEOUT",
    "socket_connect_timeout": "REDIS_SOCKET_TIMEOUT",
}
"""Options the query would set over the plugin's own (redis-py lets the URL win): a pool
smaller than the plugin's slots, or a timeout unlike the one its budgets assume."""
_TLS_OPTIONS = frozenset(
    {
        "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_ca_data", "ssl_certfile",
        "ssl_keyfile", "ssl_password", "ssl_ciphers", "ssl_check_hostname", "ssl_min_version",
        "ssl_include_verify_flags", "ssl_exclude_verify_flags",
    }
)  # fmt: skip
"""The query's options of a TLS connection (``rediss://``) only."""
_REPLY_OPTIONS = frozenset(
    {"decode_responses", "encoding", "encoding_errors", "protocol", "legacy_responses"}
)
"""Options that change what the replies are read as: caller memory sets them itself."""


def check_url(url: str) -> None:
    """Raise ``ValueError`` for a ``REDIS_URL`` that redis-py would refuse or misread."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        # The URL may hold a password: name the variable, never echo the value.
        raise ValueError("must start with redis://, rediss:// or unix://")
    if _split_in_the_credentials(parts):
        # Read as it stands, a piece of the password would be taken for the host (and shown
        # in a connection error), or the port: say what it is instead.
        raise ValueError(
            "its password (or user name) holds a character that ends that part of a URL: "
            "percent-encode it (# as %23, / as %2F, ? as %3F, @ as %40, % as %25), "
            "or leave it out of the URL and set REDIS_PASSWORD"
        )
    # redis-py reads a database it cannot parse as 0: another database, silently.
    databases = parse_qs(parts.query).get("db", [])
    if parts.scheme != "unix":
        try:
            port = parts.port  # raises for a port that is no number, or past 65535
        except ValueError:
            port = 0
        if port == 0:  # an explicit 0 too: no server listens there
            raise ValueError("the port (after the host and ':') must be a number from 1 to 65535")
        if parts.path.strip("/"):
            databases.append(parts.path.strip("/"))
    if not all(db.isdigit() for db in databases):
        raise ValueError(
            "the database (the path after the port, e.g. redis://host:6379/0, or ?db=) "
            "must be a number"
        )
    for option in parse_qs(parts.query):  # a blank value is dropped, as redis-py drops it
        _check_option(option, tls=parts.scheme == "rediss")


def _check_option(option: str, *, tls: bool) -> None:
    # redis-py hands every name of the query to the connection as an argument: one it does not
    # take fails every connection with a TypeError. An option's name is shown, never a value.
    if option in _QUERY_OPTIONS or (tls and option in _TLS_OPTIONS):
        return
    if option in _SETTINGS_OPTIONS:
        raise ValueError(
            f"its query sets {option}, which caller memory sets from "
            f"{_SETTINGS_OPTIONS[option]}: set that instead, and take it out of the URL"
        )
    if option in _REPLY_OPTIONS:
        raise ValueError(
            f"its query sets {option}, which changes how Redis's replies are read: caller "
            "memory sets it itself; take it out of the URL"
        )
    if option in _TLS_OPTIONS:
        raise ValueError(
            f"its query sets {option}, an option of TLS connections: use a rediss:// URL"
        )
    shown = option if option.isidentifier() and len(option) <= 40 else "an option"
    raise ValueError(
        f"its query names {shown}, which redis-py does not take from a URL (known: db, "
        "client_name, health_check_interval, ssl_cert_reqs with rediss://...)"
    )


def _split_in_the_credentials(parts: SplitResult) -> bool:
    # An '@' that urlsplit left after the host (in the path, a query's name or the fragment)
    # ended a user name or password: a '/', '?' or '#' in it cut the URL short before it.
    # A database number, a query's name and a fragment never hold one; a query's value may.
    return (
        "@" in parts.path
        or "@" in parts.fragment
        or any("@" in item.partition("=")[0] for item in parts.query.split("&"))
    )


def url_database(url: str) -> int:
    """The database number a URL names, as redis-py reads it: ``?db=`` first, then the path
    (not a unix socket's); 0 when it names none."""
    parts = urlsplit(url)
    named = parse_qs(parts.query).get("db", [])
    if parts.scheme != "unix" and parts.path.strip("/"):
        named.append(parts.path.strip("/"))
    return int(named[0]) if named and named[0].isdigit() else 0


def url_server(url: str) -> str:
    """Where a URL's server is, for messages: host and port (or the socket), no credentials."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    return f"{bracketed(parts.hostname or 'localhost')}:{parts.port or 6379}"


def compose_url(
    host: str, port: int, db: int, username: str | None, password: str | None, tls: bool
) -> str:
    """The URL of separate connection settings, password included: for a client, never a log."""
    auth = ""
    if password is not None:
        user = quote(username or "", safe="")
        auth = f"{user}:{quote(password, safe='')}@"
    elif username:
        auth = f"{quote(username, safe='')}@"
    scheme = "rediss" if tls else "redis"
    return f"{scheme}://{auth}{bracketed(host)}:{port}/{db}"


def bracketed(host: str) -> str:
    """``[::1]`` for an IPv6 address (its colons are not a port's), other hosts as they are."""
    return f"[{host}]" if ":" in host else host


def without_password(parts: SplitResult) -> str:
    """The URL with ``***`` for its password, in the user part or the query."""
    netloc = parts.netloc
    if parts.password is not None:
        user = f"{parts.username}:" if parts.username else ":"
        netloc = f"{user}***@{netloc.rsplit('@', 1)[1]}"
    query = "&".join(
        "password=***" if item.lower().startswith("password=") else item
        for item in parts.query.split("&")
    )
    rest = f"{parts.path}{'?' + query if query else ''}"
    return f"{parts.scheme}://{netloc}{rest}"


def host_port(node: str) -> tuple[str, int]:
    """``host:port`` (an IPv6 address in brackets) of ``REDIS_CLUSTER_NODES``.

    Raises:
        ValueError: ``node`` is not ``host:port`` with a port from 1 to 65535.
    """
    host, sep, port = node.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(
            "each node must be host:port with a port from 1 to 65535, nodes separated by commas"
        )
    return host, int(port)

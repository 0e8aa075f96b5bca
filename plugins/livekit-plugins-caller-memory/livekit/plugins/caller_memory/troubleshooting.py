"""Connection failures in the guide's words, each with what to check.

The texts are the guide's "Troubleshooting" section: "Redis connection failed: Connection
refused", "NOAUTH Authentication required", "SSL handshake failed", "OOM command not allowed".
They never carry a password or a URL, only the host and port.

A timeout is the network's only when nothing else explains it: one that passed while this
process's event loop was late (the worker's CPU) or while the call waited for another call of
the same caller (contention) is named as such (:mod:`.timeouts`), with what to do about it
instead of the firewall.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from redis import exceptions as redis_errors

from .config import RedisConfig
from .exceptions import CallerMemoryError
from .timeouts import ContendedTimeout, LoopLateTimeout

__all__ = ["Diagnosis", "diagnose"]


@dataclass(frozen=True)
class Diagnosis:
    """Why a connection failed, and what to do about it."""

    reason: str
    """The guide's short text, e.g. ``"Connection refused"``."""
    hints: tuple[str, ...]
    """What to check, one line each."""
    in_worker: bool = False
    """The cause is in this worker (its CPU, its calls of one caller), not Redis or the network:
    the store was there all along."""

    @property
    def message(self) -> str:
        """``Redis connection failed: <reason>``, as the guide prints it."""
        return f"Redis connection failed: {self.reason}"

    def render(self, server: str) -> str:
        """The message, the server it concerns and the hints, for a log line or a terminal."""
        lines = [f"❌ {self.message} ({server})"]
        lines += [f"   - {hint}" for hint in self.hints]
        return "\n".join(lines)


def diagnose(error: BaseException, config: RedisConfig) -> Diagnosis:
    """Map an error of the store to the guide's troubleshooting entry, or to its real cause
    where the guide has none (a key of the wrong type, a read-only replica, a database index
    out of range...)."""
    text = _chain_text(error)
    lowered = text.lower()
    if isinstance(error, CallerMemoryError):  # our own, and free of personal data
        return Diagnosis(str(error), ())
    named = _own_timeout(error)
    if isinstance(named, LoopLateTimeout):
        return Diagnosis(
            str(named),
            (
                "Redis was not the cause: this process ran something else for that long "
                "(blocking code on the event loop, or more jobs than the cores can run)",
                "Give the worker more CPU, or take fewer jobs per worker "
                "(LiveKit's load_threshold)",
            ),
            in_worker=True,
        )
    if isinstance(named, ContendedTimeout):
        return Diagnosis(
            str(named),
            (
                "Calls of one number ended together and took turns on its record; "
                "the network is not the cause",
                "Nothing to fix unless it recurs: many calls of one number at once need a "
                "longer MEMORY_SAVE_TIMEOUT_S",
            ),
            in_worker=True,
        )
    for marker, found in _SERVER_REFUSALS:
        if marker in lowered:
            return found

    if isinstance(error, redis_errors.AuthenticationError) or "noauth" in lowered:
        if "wrongpass" in lowered or "invalid username-password" in lowered:
            return Diagnosis(
                "WRONGPASS invalid username-password pair",
                (
                    "Check REDIS_PASSWORD (and REDIS_USERNAME for an ACL user) in .env",
                    "Or the password in REDIS_URL (redis://user:password@host:port/0), "
                    "where @ # / ? % must be percent-encoded (%40 %23 %2F %3F %25)",
                    "For cloud: copy the password again from the dashboard",
                ),
            )
        return Diagnosis(
            "NOAUTH Authentication required",
            (
                "Set REDIS_PASSWORD in .env",
                "Or put it in REDIS_URL: redis://:password@host:port/0",
                "For cloud: copy the password from the dashboard",
            ),
        )
    if _is_tls_failure(error, lowered, config):
        if config.uses_tls:  # on already: the server may not speak it
            return Diagnosis(
                "SSL handshake failed",
                (
                    "For local without SSL: REDIS_SSL=false (or a redis:// URL): TLS is on, and "
                    "this server may not speak it",
                    "A self-signed server certificate needs REDIS_SSL_CA_CERTS",
                ),
            )
        return Diagnosis(
            "SSL handshake failed",
            (
                "Set REDIS_SSL=true (or use a rediss:// URL) for cloud services",
                "For local without SSL: REDIS_SSL=false",
                "A self-signed server certificate needs REDIS_SSL_CA_CERTS",
            ),
        )
    if isinstance(error, redis_errors.OutOfMemoryError) or "oom command not allowed" in lowered:
        return Diagnosis(
            "OOM command not allowed",
            (
                "Upgrade the Redis tier (more memory)",
                "Reduce MEMORY_SESSION_TTL_HOURS",
                "Clear old data: redis-cli FLUSHDB",
            ),
        )
    if "connection closed by server" in lowered or "connection reset" in lowered:
        return Diagnosis(
            "Connection closed by the server",
            (
                "Redis restarted, or a proxy or load balancer dropped the connection",
                "A server that speaks TLS only (most cloud services) closes plain "
                "connections: set REDIS_SSL=true (or use a rediss:// URL)"
                if not config.uses_tls
                else "Check the server's log",
            ),
        )
    if "connection refused" in lowered or "connect call failed" in lowered:
        return Diagnosis(
            "Connection refused",
            (
                "Check Redis is running: redis-cli ping",
                "Verify REDIS_HOST / REDIS_PORT (or REDIS_URL) in .env",
            ),
        )
    if isinstance(error, (TimeoutError, redis_errors.TimeoutError)) or "timeout" in lowered:
        return Diagnosis(
            "Timeout",
            (
                "Check the host is reachable from this machine (firewall, security group)",
                "Verify REDIS_HOST / REDIS_PORT (or REDIS_URL) in .env",
            ),
        )
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return Diagnosis(
            "Unknown host",
            ("Verify REDIS_HOST (or the host in REDIS_URL) in .env",),
        )
    if isinstance(error, redis_errors.NoPermissionError) or "noperm" in lowered:
        return Diagnosis(
            "NOPERM the user lacks a permission",
            ("Grant the ACL user the string, list and scripting commands on the key prefix",),
        )
    if not isinstance(error, (redis_errors.RedisError, OSError)):
        # Not the server's doing: sending the operator to redis-cli would waste their time.
        return Diagnosis(
            f"{type(error).__name__} in caller memory itself, not from Redis",
            ("This is a bug: please report it with this line (it holds no caller data)",),
        )
    return Diagnosis(
        type(error).__name__,
        ("Check Redis is running: redis-cli ping", "Verify the settings in .env"),
    )


_SERVER_REFUSALS = (
    (
        "wrongtype",
        Diagnosis(
            "WRONGTYPE a key holds the wrong kind of value",
            (
                "Another program writes under MEMORY_KEY_PREFIX: give caller memory a prefix "
                "of its own",
                "caller-memory stats counts the keys set aside",
            ),
        ),
    ),
    (
        "readonly",
        Diagnosis(
            "READONLY the server is a read-only replica",
            ("Point REDIS_URL at the master (or the cluster), not a replica",),
        ),
    ),
    (
        "db index is out of range",
        Diagnosis(
            "ERR DB index is out of range",
            (
                "REDIS_DB must be below the server's `databases` setting (16 by default)",
                "A Redis Cluster and many cloud services have database 0 only",
            ),
        ),
    ),
    (
        "loading",
        Diagnosis(
            "LOADING Redis is loading the dataset in memory",
            ("Wait: Redis answers once its data is loaded",),
        ),
    ),
    (
        "max number of clients",
        Diagnosis(
            "ERR max number of clients reached",
            ("Raise the server's maxclients, or lower REDIS_MAX_CONNECTIONS per worker",),
        ),
    ),
    (
        "misconf",
        Diagnosis(
            "MISCONF Redis cannot persist to disk",
            ("Check the server's disk and its log: it refuses writes until it can save",),
        ),
    ),
)
"""Server refusals the guide has no text for, by a marker of their message."""


def _own_timeout(error: BaseException) -> TimeoutError | None:
    """The :class:`LoopLateTimeout` or :class:`ContendedTimeout` behind ``error``, if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (LoopLateTimeout, ContendedTimeout)):
            return current
        current = current.__cause__ or current.__context__
    return None


def _chain_text(error: BaseException) -> str:
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " | ".join(parts)


def _is_tls_failure(error: BaseException, lowered: str, config: RedisConfig) -> bool:
    return isinstance(error, ssl.SSLError) or "ssl" in lowered or "certificate" in lowered

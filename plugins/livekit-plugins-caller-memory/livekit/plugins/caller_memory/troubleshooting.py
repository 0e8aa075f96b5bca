"""Connection failures in the guide's words, each with what to check.

The texts are the guide's "Troubleshooting" section: "Redis connection failed: Connection
refused", "NOAUTH Authentication required", "SSL handshake failed", "OOM command not allowed".
They never carry a password or a URL, only the host and port.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from redis import exceptions as redis_errors

from .config import RedisConfig

__all__ = ["Diagnosis", "diagnose"]


@dataclass(frozen=True)
class Diagnosis:
    """Why a connection failed, and what to do about it."""

    reason: str
    """The guide's short text, e.g. ``"Connection refused"``."""
    hints: tuple[str, ...]
    """What to check, one line each."""

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
    """Map a connection error to the guide's troubleshooting entry."""
    text = _chain_text(error)
    lowered = text.lower()

    if isinstance(error, redis_errors.AuthenticationError) or "noauth" in lowered:
        if "wrongpass" in lowered or "invalid username-password" in lowered:
            return Diagnosis(
                "WRONGPASS invalid username-password pair",
                (
                    "Check REDIS_PASSWORD (and REDIS_USERNAME for an ACL user) in .env",
                    "For cloud: copy the password again from the dashboard",
                ),
            )
        return Diagnosis(
            "NOAUTH Authentication required",
            (
                "Set REDIS_PASSWORD in .env",
                "For cloud: copy the password from the dashboard",
            ),
        )
    if _is_tls_failure(error, lowered, config):
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
    return Diagnosis(
        type(error).__name__,
        ("Check Redis is running: redis-cli ping", "Verify the settings in .env"),
    )


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
    if isinstance(error, ssl.SSLError) or "ssl" in lowered or "certificate" in lowered:
        return True
    # A plain client talking to a TLS-only port: the server drops the connection.
    return not config.uses_tls and (
        "connection closed by server" in lowered or "connection reset" in lowered
    )

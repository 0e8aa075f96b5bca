"""The console's settings: ``MEMORY_CONSOLE_*`` variables (environment, then ``.env``).

Where memory is comes from the plugin's own settings (:class:`~..config.RedisConfig`); these say
who may use the console and how.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..exceptions import ConfigError

__all__ = ["MIN_TOKEN_LENGTH", "AuditSettings", "ConsoleSettings"]

MIN_TOKEN_LENGTH = 16
"""A console token or password is at least this long: it guards every caller's memory."""
_PREFIX = "MEMORY_CONSOLE_"
MAX_SESSION_HOURS = 720
"""The longest a console login lasts: 30 days."""
MAX_STATS_TTL_S = 3600
"""The longest the health page's counts are reused: an hour."""


class ConsoleSettings(BaseSettings):
    """Who may use the console, and how.

    Every field is also a ``MEMORY_CONSOLE_<NAME>`` variable (``MEMORY_CONSOLE_TOKEN``, ...).

    Attributes:
        auth: ``token``: a login page asks for ``token`` (and a name, for the audit log).
            ``proxy``: a reverse proxy in front has authenticated the operator and names them
            in ``proxy_header``, believed only from the proxy: with ``proxy_secret``, from
            ``trusted_proxies``, or through the Unix socket (``--uds``).
        token: The login token or password, shared by the team (16+ characters).
            ``caller-memory serve`` makes one for the run when it is not set.
        proxy_header: The header that names the operator in ``proxy`` mode.
        proxy_secret: A secret the proxy sends in ``X-Caller-Memory-Proxy-Secret`` with every
            request (16+ characters): in ``proxy`` mode the operator header is believed only
            with it (or, without it, from ``trusted_proxies`` or through the Unix socket).
            ``caller-memory serve`` refuses ``proxy`` mode on a TCP address without it, except
            on a private address with ``trusted_proxies`` set.
        trusted_proxies: The proxies whose ``X-Forwarded-For``, ``X-Forwarded-Proto`` (and,
            in ``proxy`` mode, operator header) are believed: addresses and networks,
            comma-separated (``10.0.0.5,10.1.0.0/24``; ``unix``: whoever connects through the
            Unix socket). Empty (the default): none, and the client is the address the
            connection came from.
        allowed_hosts: Host names the console answers to, comma-separated (a request for
            another host is refused: DNS rebinding). ``localhost``, ``127.0.0.1`` and ``::1``
            are always allowed; set the public name when a proxy passes its own ``Host``.
        session_key: Signs the login cookie, mixed with ``token``; a random key per process
            when unset (logins then end when the console restarts). Changing it, or the
            token, ends every login made before.
        session_hours: How long a login lasts (at most 720 hours, 30 days).
        secure_cookies: Send the login cookie over HTTPS only (behind a TLS proxy: true).
        audit_log: The audit log file; ``MEMORY_DATA_DIR/console/audit.jsonl`` by default.
        stats_ttl_s: How long the health page reuses its random sample of keys (the estimates
            of callers, calls held and memory per caller) before drawing another, in seconds
            (at most 3600; 0: a new one at every load). The exact numbers are read at every
            load, and the full count only when asked.
    """

    model_config = SettingsConfigDict(
        env_prefix=_PREFIX, env_file=".env", extra="ignore", case_sensitive=False
    )

    def __init__(self, **values: Any) -> None:
        """Settings from keywords, then the environment.

        Raises:
            ConfigError: A value cannot be used; the message names the variable, never the value.
        """
        try:
            super().__init__(**values)
        except ValidationError as e:
            problems = [
                f"{_PREFIX}{str(item['loc'][0]).upper() if item['loc'] else ''}: {item['msg']}"
                for item in e.errors()
            ]
            raise ConfigError("Invalid console configuration: " + "; ".join(problems)) from None

    auth: Literal["token", "proxy"] = "token"
    token: SecretStr | None = None
    proxy_header: str = Field("X-Forwarded-User", min_length=1)
    proxy_secret: SecretStr | None = None
    trusted_proxies: str = ""
    allowed_hosts: str = ""
    session_key: SecretStr | None = None
    session_hours: float = Field(
        8.0, gt=0, le=MAX_SESSION_HOURS, description="How long a login lasts (at most 720 hours)"
    )
    secure_cookies: bool = False
    audit_log: Path | None = None
    stats_ttl_s: float = Field(
        30.0,
        ge=0,
        le=MAX_STATS_TTL_S,
        description="How long the health page reuses its random sample of keys (its "
        "estimates), in seconds (at most 3600; 0: drawn at every load)",
    )

    @field_validator("token", "proxy_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            value = SecretStr(value.get_secret_value().strip())
            if len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
                raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters long")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: str) -> str:
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        for entry in entries:
            if entry != "unix":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(
                        f"{entry!r} is not an address or a network (10.0.0.5, 10.0.0.0/24, "
                        "::1, or unix)"
                    ) from None
        return ",".join(entries)

    @property
    def proxies(self) -> list[str]:
        """The trusted proxies, one entry each."""
        return [entry for entry in self.trusted_proxies.split(",") if entry]

    @property
    def hosts(self) -> list[str]:
        """Every host name the console answers to."""
        named = [h.strip() for h in self.allowed_hosts.split(",") if h.strip()]
        return list(dict.fromkeys(["localhost", "127.0.0.1", "::1", "[::1]", *named]))


class AuditSettings(BaseSettings):
    """Where the audit log is, read alone (``MEMORY_CONSOLE_AUDIT_LOG``): the operator
    commands of ``caller-memory`` write to the console's audit log too, and need none of its
    login settings.

    Attributes:
        audit_log: The audit log file; ``MEMORY_DATA_DIR/console/audit.jsonl`` by default.
    """

    model_config = SettingsConfigDict(
        env_prefix=_PREFIX, env_file=".env", extra="ignore", case_sensitive=False
    )

    audit_log: Path | None = None

"""The rules a setting's value must follow, each raising ``ValueError`` with what to set.

:class:`~.config.RedisConfig`'s validators call these; the message is reported under the
variable's name (:func:`~.config_sources.describe_invalid`), so it says what is wrong and how
to write it, never the value (it may be a password or a secret).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pydantic import SecretStr

from .log import logger, once
from .redaction import KINDS as REDACTION_KINDS
from .redis_url import host_port
from .secret import is_quoted, weakness

__all__ = [
    "check_ca_file",
    "check_cluster_nodes",
    "check_host",
    "check_previous_secrets",
    "check_redact",
    "check_secret_strength",
    "check_verification",
    "warn_if_quoted",
]


def check_host(value: str) -> str:
    """``REDIS_HOST``: a host name or an IP address alone (an IPv6 one normalized)."""
    host = value.strip()
    if not host:
        raise ValueError("is empty: set the server's name or address (e.g. localhost)")
    if "://" in host:
        raise ValueError("is a URL: set it in REDIS_URL, and only a host name in REDIS_HOST")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(bare))  # an IPv6 address's colons are no port
    except ValueError:
        pass
    if ":" in host:
        raise ValueError(
            "holds a port (host:port): set the host in REDIS_HOST and the port in "
            "REDIS_PORT, or both in REDIS_URL"
        )
    if any(c in host for c in "/@?# \t"):
        raise ValueError("must be a host name or an IP address, nothing else")
    return host


def check_redact(value: str) -> str:
    """``MEMORY_REDACT``: known kinds, comma-separated; ``none`` switches redaction off."""
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    if kinds == ["none"]:
        return ""
    if not kinds:  # an empty value must not switch redaction off: only "none" does
        return ",".join(REDACTION_KINDS)
    unknown = set(kinds) - set(REDACTION_KINDS)
    if unknown:
        raise ValueError(f"unknown kind(s) {sorted(unknown)}; use {','.join(REDACTION_KINDS)}")
    return ",".join(kinds)


def check_secret_strength(value: SecretStr | None) -> SecretStr | None:
    """``MEMORY_PHONE_HASH_SECRET``: strong enough (see :mod:`.secret`), or unset."""
    if value is None or not value.get_secret_value().strip():
        return None  # unset and empty mean the same: no secret
    problem = weakness(value.get_secret_value())
    if problem is not None:
        raise ValueError(problem)
    warn_if_quoted("MEMORY_PHONE_HASH_SECRET", [value.get_secret_value()])
    return value


def check_previous_secrets(value: SecretStr | None) -> SecretStr | None:
    """``MEMORY_PHONE_HASH_PREVIOUS_SECRETS``: any secrets, comma-separated, or unset."""
    if value is None or not value.get_secret_value().strip():
        return None
    # An old secret being rotated out may be weak (that can be why it goes): any length.
    warn_if_quoted("MEMORY_PHONE_HASH_PREVIOUS_SECRETS", value.get_secret_value().split(","))
    return value


def check_cluster_nodes(value: str | None) -> str | None:
    """``REDIS_CLUSTER_NODES``: ``host:port`` nodes, comma-separated, or unset."""
    if value is None or not value.strip():
        return None
    for node in value.split(","):
        host_port(node)
    return value


def check_ca_file(value: str | None) -> str | None:
    """``REDIS_SSL_CA_CERTS``: a file this process can read, or unset (said at start-up, not
    as a TLS failure at the first call)."""
    if value is None or not value.strip():
        return None
    path = Path(value.strip()).expanduser()
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ValueError("is not a file this user can read: set the path of the CA's PEM file")
    return str(path)


def check_verification(value: str) -> str:
    """``MEMORY_VERIFIED_ATTRIBUTE`` and ``MEMORY_VERIFIED_VALUES``: not blank."""
    if not value.replace(",", "").strip():
        raise ValueError(
            "is blank: no caller would ever be verified by the network's attestation; unset it "
            "for the default"
        )
    return value.strip()


def warn_if_quoted(variable: str, secrets: list[str]) -> None:
    """Say once that quotes around a secret were taken off (never the secret itself)."""
    if any(is_quoted(s) for s in secrets) and once(f"quoted:{variable}"):
        logger.warning(
            "%s is written with quotes around it: they are not part of the secret and are "
            "left out (callers saved under the quoted form are moved at their next call)",
            variable,
        )

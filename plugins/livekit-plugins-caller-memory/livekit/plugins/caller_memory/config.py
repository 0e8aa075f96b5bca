"""Settings: the guide's environment variables, plus the ones caller memory adds.

Every setting can be passed as a keyword (``RedisConfig(host="redis.internal")``) or read from
the environment (``RedisConfig.from_env()``); a keyword wins over the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from phonenumbers import SUPPORTED_REGIONS
from platformdirs import user_data_path
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .config_checks import (
    check_ca_file,
    check_cluster_nodes,
    check_host,
    check_previous_secrets,
    check_redact,
    check_secret_strength,
    check_verification,
)
from .config_sources import VariableSource, alias, describe_invalid
from .exceptions import ConfigError
from .redis_url import (
    bracketed,
    check_url,
    compose_url,
    host_port,
    url_database,
    url_server,
    without_password,
)
from .secret import MIN_LENGTH, earlier_keys

__all__ = ["RedisConfig"]

DEFAULT_KEY_PREFIX = "callmem"
"""The plugin's own prefix. Sarah keeps ``sarah``; a deployment made with the plugin 0.1, whose
default was ``sarah``, sets ``MEMORY_KEY_PREFIX=sarah`` to keep its keys."""
DEFAULT_PROFILE_TTL_DAYS = 90.0
DEFAULT_SESSION_TTL_HOURS = 24.0
MAX_PROFILE_TTL_DAYS = 3650
"""The longest a caller may be remembered without calling again: 10 years. A retention past it
is a typo (``MEMORY_PROFILE_TTL_DAYS=99999999`` would be 274,000 years), refused at start-up."""
MAX_SESSION_TTL_HOURS = 8760
"""The longest a call's full data may be kept: 365 days (a year of transcripts)."""
MIN_SESSION_TTL_HOURS = 1
"""The shortest: a call's journal lives this long from its first turn, so it must outlast a
call and the wait before a crashed call is recovered (``MEMORY_ORPHAN_AFTER_S``)."""
LONGEST_TTL_SECONDS = MAX_PROFILE_TTL_DAYS * 86400
_TTL_BOUNDS = {
    "profile_ttl_days": (
        MAX_PROFILE_TTL_DAYS,
        "days (10 years): how long a caller is remembered after their last call",
    ),
    "session_ttl_hours": (
        MAX_SESSION_TTL_HOURS,
        "hours (365 days): how long a call's transcript is kept",
    ),
}
"""No key of caller memory can be given a longer TTL by any setting: ``caller-memory stats``
counts a key past it as one without a TTL (written by an older version, unbounded)."""
DEFAULT_MAX_SESSIONS = 5
"""Session ids kept in a caller's ``sessions`` list."""
DEFAULT_MAX_SUMMARIES = 5
"""Past call summaries kept in a caller's profile."""
DEFAULT_LOOKUP_TIMEOUT_MS = 300.0
"""The greeting never waits longer than this for Redis."""
DEFAULT_SUMMARY_TIMEOUT_S = 6.0
"""The summary's share of a call's end; see the README for the windows LiveKit gives it."""
DEFAULT_SAVE_TIMEOUT_S = 2.0
"""The save's deadline, retries and reconnects included; past it the call goes to the outbox."""
DEFAULT_ORPHAN_AFTER_S = 600.0
"""A call whose journal has been idle this long lost its worker: recovery saves it. An hour,
so that a caller on hold is not taken for a dead call."""
DEFAULT_OUTBOX_FLUSH_S = 30.0
"""How often calls kept in the local outbox are retried."""


class RedisConfig(BaseSettings):
    """Where Redis is and how caller memory uses it.

    ``REDIS_URL`` overrides host, port, username, password, database and TLS. A ``rediss://``
    URL or ``REDIS_SSL=true`` turns on TLS. Secrets (the password, the URL, the hashing key) are
    kept in :class:`~pydantic.SecretStr` so they never show in a repr, a log or an error.
    """

    # inf passed every "more than 0" (MEMORY_SUMMARY_TIMEOUT_S=inf: a summary that never
    # gives up); nan passed none with a clear word. Every number is finite.
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, allow_inf_nan=False)

    def __init__(self, **values: Any) -> None:
        """Settings from keywords, then the environment (see the class docs).

        Raises:
            ConfigError: A value cannot be used; the message names the variable and never
                repeats a value (it may be a password or a secret).
        """
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise ConfigError(describe_invalid(e, RedisConfig)) from None

    url: SecretStr | None = Field(None, validation_alias=alias("url", "REDIS_URL"))
    host: str = Field("localhost", validation_alias=alias("host", "REDIS_HOST"))
    port: int = Field(6379, ge=1, le=65535, validation_alias=alias("port", "REDIS_PORT"))
    username: str | None = Field(None, validation_alias=alias("username", "REDIS_USERNAME"))
    password: SecretStr | None = Field(None, validation_alias=alias("password", "REDIS_PASSWORD"))
    db: int = Field(0, ge=0, validation_alias=alias("db", "REDIS_DB"))
    ssl: bool = Field(False, validation_alias=alias("ssl", "REDIS_SSL"))
    ssl_ca_certs: str | None = Field(
        None, validation_alias=alias("ssl_ca_certs", "REDIS_SSL_CA_CERTS")
    )
    socket_timeout: float = Field(
        2.0, gt=0, validation_alias=alias("socket_timeout", "REDIS_SOCKET_TIMEOUT")
    )

    persistence: bool = Field(True, validation_alias=alias("persistence", "MEMORY_PERSISTENCE"))
    session_ttl_hours: float = Field(
        DEFAULT_SESSION_TTL_HOURS,
        gt=0,
        description=f"How long a call's full data is kept, in hours: at least "
        f"{MIN_SESSION_TTL_HOURS}, at most {MAX_SESSION_TTL_HOURS} (365 days).",
        validation_alias=alias("session_ttl_hours", "MEMORY_SESSION_TTL_HOURS"),
    )
    profile_ttl_days: float = Field(
        DEFAULT_PROFILE_TTL_DAYS,
        gt=0,
        description="How long a caller is remembered after their last call, in days: more "
        f"than 0, at most {MAX_PROFILE_TTL_DAYS} (10 years).",
        validation_alias=alias("profile_ttl_days", "MEMORY_PROFILE_TTL_DAYS"),
    )
    key_prefix: str = Field(
        DEFAULT_KEY_PREFIX,
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        validation_alias=alias("key_prefix", "MEMORY_KEY_PREFIX"),
    )
    phone_hash_secret: SecretStr | None = Field(
        None, validation_alias=alias("phone_hash_secret", "MEMORY_PHONE_HASH_SECRET")
    )
    phone_hash_previous_secrets: SecretStr | None = Field(
        None,
        validation_alias=alias("phone_hash_previous_secrets", "MEMORY_PHONE_HASH_PREVIOUS_SECRETS"),
    )
    require_secret: bool = Field(
        False, validation_alias=alias("require_secret", "MEMORY_REQUIRE_SECRET")
    )
    default_region: str | None = Field(
        None,
        pattern=r"^[A-Za-z]{2}$",
        validation_alias=alias("default_region", "MEMORY_DEFAULT_REGION"),
    )
    data_dir: Path = Field(
        default_factory=lambda: user_data_path("caller-memory"),
        validation_alias=alias("data_dir", "MEMORY_DATA_DIR"),
    )
    embedded_redis: bool = Field(
        True, validation_alias=alias("embedded_redis", "MEMORY_EMBEDDED_REDIS")
    )
    lookup_timeout_ms: float = Field(
        DEFAULT_LOOKUP_TIMEOUT_MS,
        gt=0,
        validation_alias=alias("lookup_timeout_ms", "MEMORY_LOOKUP_TIMEOUT_MS"),
    )
    summary_timeout_s: float = Field(
        DEFAULT_SUMMARY_TIMEOUT_S,
        gt=0,
        validation_alias=alias("summary_timeout_s", "MEMORY_SUMMARY_TIMEOUT_S"),
    )
    save_timeout_s: float = Field(
        DEFAULT_SAVE_TIMEOUT_S,
        gt=0,
        validation_alias=alias("save_timeout_s", "MEMORY_SAVE_TIMEOUT_S"),
    )
    max_sessions: int = Field(
        DEFAULT_MAX_SESSIONS,
        ge=1,
        le=100,
        validation_alias=alias("max_sessions", "MEMORY_MAX_SESSIONS"),
    )
    max_summaries: int = Field(
        DEFAULT_MAX_SUMMARIES,
        ge=1,
        le=50,
        validation_alias=alias("max_summaries", "MEMORY_MAX_SUMMARIES"),
    )

    cluster: bool | None = Field(None, validation_alias=alias("cluster", "REDIS_CLUSTER"))
    cluster_nodes: str | None = Field(
        None,
        description="more nodes of a Redis Cluster to start from, host:port,host:port: the "
        "workers and the CLI reach the cluster while the node REDIS_URL names is down",
        validation_alias=alias("cluster_nodes", "REDIS_CLUSTER_NODES"),
    )
    max_connections: int = Field(
        50, ge=1, le=10_000, validation_alias=alias("max_connections", "REDIS_MAX_CONNECTIONS")
    )
    journal_turns: bool = Field(
        True, validation_alias=alias("journal_turns", "MEMORY_JOURNAL_TURNS")
    )
    orphan_after_s: float = Field(
        DEFAULT_ORPHAN_AFTER_S,
        gt=0,
        validation_alias=alias("orphan_after_s", "MEMORY_ORPHAN_AFTER_S"),
    )
    outbox_flush_s: float = Field(
        DEFAULT_OUTBOX_FLUSH_S,
        gt=0,
        validation_alias=alias("outbox_flush_s", "MEMORY_OUTBOX_FLUSH_S"),
    )

    consent_required: bool = Field(
        False, validation_alias=alias("consent_required", "MEMORY_CONSENT_REQUIRED")
    )
    unverified_disclosure: Literal["none", "name", "context", "full"] = Field(
        "name", validation_alias=alias("unverified_disclosure", "MEMORY_UNVERIFIED_DISCLOSURE")
    )
    trust_caller_id: bool = Field(
        False, validation_alias=alias("trust_caller_id", "MEMORY_TRUST_CALLER_ID")
    )
    verified_attribute: str = Field(
        "sip.verstat", validation_alias=alias("verified_attribute", "MEMORY_VERIFIED_ATTRIBUTE")
    )
    verified_values: str = Field(
        "TN-Validation-Passed,TN-Validation-Passed-A",
        validation_alias=alias("verified_values", "MEMORY_VERIFIED_VALUES"),
    )
    trust_participant_numbers: bool = Field(
        False,
        validation_alias=alias("trust_participant_numbers", "MEMORY_TRUST_PARTICIPANT_NUMBERS"),
    )
    redact: str = Field(
        "card,national_id,otp,email,phone",
        validation_alias=alias("redact", "MEMORY_REDACT"),
    )

    @field_validator("session_ttl_hours", "profile_ttl_days")
    @classmethod
    def _check_ttl(cls, value: float, info: ValidationInfo) -> float:
        most, what = _TTL_BOUNDS[str(info.field_name)]
        if value > most:
            raise ValueError(f"must be at most {most} {what}")
        if info.field_name == "session_ttl_hours" and value < MIN_SESSION_TTL_HOURS:
            raise ValueError(
                f"must be at least {MIN_SESSION_TTL_HOURS} hour: a call's journal lives this "
                "long, and a shorter one would expire during the call, before a crashed call "
                "could be recovered"
            )
        return value

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        return check_host(value)

    @field_validator("redact")
    @classmethod
    def _check_redact(cls, value: str) -> str:
        return check_redact(value)

    @field_validator("unverified_disclosure", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        # As MEMORY_DEFAULT_REGION takes "us": FULL is full.
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def redact_kinds(self) -> list[str]:
        """The kinds of personal data removed from transcripts and summaries."""
        return [k for k in self.redact.split(",") if k]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keywords first, then ``REDIS_*`` / ``MEMORY_*`` variables, then ``.env``."""
        return init_settings, VariableSource(settings_cls, Path(".env"))

    @field_validator("phone_hash_secret")
    @classmethod
    def _check_secret_strength(cls, value: SecretStr | None) -> SecretStr | None:
        return check_secret_strength(value)

    @field_validator("phone_hash_previous_secrets")
    @classmethod
    def _check_previous(cls, value: SecretStr | None) -> SecretStr | None:
        return check_previous_secrets(value)

    @field_validator("cluster_nodes")
    @classmethod
    def _check_cluster_nodes(cls, value: str | None) -> str | None:
        return check_cluster_nodes(value)

    @field_validator("ssl_ca_certs")
    @classmethod
    def _check_ca_file(cls, value: str | None) -> str | None:
        return check_ca_file(value)

    @field_validator("verified_attribute", "verified_values")
    @classmethod
    def _check_verification(cls, value: str) -> str:
        return check_verification(value)

    @field_validator("default_region", mode="before")
    @classmethod
    def _upper_region(cls, value: object) -> object:
        if isinstance(value, str):
            region = value.strip().upper() or None
            if region is not None and len(region) == 2 and region not in SUPPORTED_REGIONS:
                # "XX" passes the pattern, then every national number fails at each call
                raise ValueError(
                    "not a region phonenumbers knows: use an ISO code, e.g. US, GB, DE"
                )
            return region
        return value

    @property
    def verified_value_set(self) -> frozenset[str]:
        """The values of ``MEMORY_VERIFIED_ATTRIBUTE`` that count as a verified caller id."""
        return frozenset(v.strip().lower() for v in self.verified_values.split(",") if v.strip())

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        check_url(value.get_secret_value())
        return value

    @classmethod
    def from_env(
        cls, *, defaults: Mapping[str, Any] | None = None, **overrides: Any
    ) -> RedisConfig:
        """Read the settings from the environment (and a ``.env`` file in the working folder).

        Args:
            defaults: Settings used when neither ``overrides`` nor the environment sets them
                (an app's own defaults: Sarah's key prefix is ``sarah``).
            **overrides: Settings given in code, which win over the environment.

        Raises:
            ConfigError: A variable holds a value that cannot be used.
        """
        config = cls(**overrides)
        unset = {k: v for k, v in (defaults or {}).items() if k not in config.model_fields_set}
        return cls(**{**unset, **overrides}) if unset else config

    def replaced(self, **changes: Any) -> RedisConfig:
        """These settings with some changed, validated like any other.

        Raises:
            ConfigError: A changed value cannot be used.
        """
        return RedisConfig.from_env(**{**self.model_dump(exclude_unset=True), **changes})

    @property
    def cluster_startup_nodes(self) -> list[tuple[str, int]]:
        """The nodes of ``REDIS_CLUSTER_NODES``, as ``(host, port)``; empty when unset."""
        if self.cluster_nodes is None:
            return []
        return [host_port(node) for node in self.cluster_nodes.split(",")]

    @property
    def previous_secrets(self) -> list[bytes]:
        """Earlier hashing secrets, newest first: callers found under them are moved (the 0.1
        forms of the current one first: :func:`~.secret.earlier_keys`)."""
        current = self.phone_hash_secret
        previous = self.phone_hash_previous_secrets
        return earlier_keys(
            current.get_secret_value() if current is not None else None,
            previous.get_secret_value() if previous is not None else None,
        )

    def check_secret(self, *, production: bool = False) -> None:
        """Raise when ``MEMORY_PHONE_HASH_SECRET`` is not set and required: by
        ``MEMORY_REQUIRE_SECRET=true``, or by ``production`` (a worker run with LiveKit's
        ``start``) unless ``MEMORY_REQUIRE_SECRET`` says otherwise.

        Raises:
            ConfigError: The secret is required and missing.
        """
        if self.phone_hash_secret is not None:
            return
        fix = f"set it to {MIN_LENGTH}+ random characters, the same on every worker"
        if self.require_secret:
            raise ConfigError(
                f"MEMORY_PHONE_HASH_SECRET is required (MEMORY_REQUIRE_SECRET=true): {fix}"
            )
        if production and "require_secret" not in self.model_fields_set:
            # Each machine (or container) would key callers with a development secret of its
            # own and recognize no one.
            raise ConfigError(
                "MEMORY_PHONE_HASH_SECRET is required to start a worker in production "
                f"(LiveKit's start): {fix} (MEMORY_REQUIRE_SECRET=false keys callers with this "
                "machine's development secret)"
            )

    @property
    def is_explicit(self) -> bool:
        """True when a Redis server was named (``REDIS_URL`` or ``REDIS_HOST``)."""
        return bool({"url", "host"} & self.model_fields_set)

    @property
    def uses_tls(self) -> bool:
        """True when the connection is made over TLS."""
        if self.url is not None:
            return urlsplit(self.url.get_secret_value()).scheme == "rediss"
        return self.ssl

    @property
    def session_ttl_seconds(self) -> int:
        """TTL of a session's full data, in seconds."""
        return max(1, round(self.session_ttl_hours * 3600))

    @property
    def profile_ttl_seconds(self) -> int:
        """TTL of a caller's keys (phone mapping, profile, session list), in seconds."""
        return max(1, round(self.profile_ttl_days * 86400))

    @property
    def lookup_timeout(self) -> float:
        """Budget of the call-start lookup, in seconds."""
        return self.lookup_timeout_ms / 1000

    def redis_url(self) -> str:
        """The connection URL, password included: hand it to a client, never to a log."""
        if self.url is not None:
            return self.url.get_secret_value()
        password = self.password.get_secret_value() if self.password is not None else None
        return compose_url(self.host, self.port, self.db, self.username, password, self.ssl)

    def __repr_args__(self) -> Any:
        """The fields as pydantic shows them, except that with ``REDIS_URL`` the connection
        fields are the URL's (``host='localhost' port=6379`` would be the defaults that are
        not used), and the URL itself is shown without its password."""
        if self.url is None:
            yield from super().__repr_args__()
            return
        parts = urlsplit(self.url.get_secret_value())
        # The database as redis-py reads the URL: ?db= first, then the path.
        shown: dict[str, Any] = {"url": without_password(parts), "db": self.database}
        if parts.scheme == "unix":
            shown.update(host=None, port=None)
        else:
            shown.update(
                host=parts.hostname or "localhost",
                port=parts.port or 6379,
                username=parts.username or self.username,
                password=SecretStr(parts.password) if parts.password else self.password,
                ssl=parts.scheme == "rediss",
            )
        for name, value in super().__repr_args__():
            yield name, shown[name] if name is not None and name in shown else value

    @property
    def database(self) -> int:
        """The database number: ``REDIS_DB``, or the one ``REDIS_URL`` names."""
        if self.url is None:
            return self.db
        return url_database(self.url.get_secret_value())

    def describe_server(self) -> str:
        """Where the server is, for messages: host and port, no credentials."""
        if self.url is not None:
            return url_server(self.url.get_secret_value())
        return f"{bracketed(self.host)}:{self.port}"

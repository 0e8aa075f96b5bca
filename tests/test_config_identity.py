"""Settings from the environment, and caller identity: E.164 normalization and keyed hashing."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from livekit.plugins.caller_memory import (
    ConfigError,
    InvalidPhoneNumberError,
    PhoneHasher,
    RedisConfig,
    normalize_phone,
)
from livekit.plugins.caller_memory.identity import load_dev_secret


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("REDIS_", "MEMORY_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_are_the_guides() -> None:
    config = RedisConfig.from_env()
    assert (config.host, config.port, config.db, config.ssl) == ("localhost", 6379, 0, False)
    assert config.persistence is True
    assert config.session_ttl_seconds == 24 * 3600
    assert config.profile_ttl_seconds == 90 * 86400
    assert config.key_prefix == "callmem"  # the plugin's own; Sarah sets "sarah"
    assert config.redis_url() == "redis://localhost:6379/0"
    assert not config.is_explicit


def test_every_variable_of_the_guide_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "REDIS_HOST": "redis.internal",
        "REDIS_PORT": "6380",
        "REDIS_PASSWORD": "p@ss word",
        "REDIS_DB": "2",
        "REDIS_SSL": "true",
        "REDIS_USERNAME": "agent",
        "MEMORY_PERSISTENCE": "false",
        "MEMORY_SESSION_TTL_HOURS": "12",
        "MEMORY_PROFILE_TTL_DAYS": "30",
        "MEMORY_KEY_PREFIX": "clinic",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    config = RedisConfig.from_env()
    assert config.is_explicit and config.uses_tls
    assert config.redis_url() == "rediss://agent:p%40ss%20word@redis.internal:6380/2"
    assert config.persistence is False
    assert config.session_ttl_seconds == 12 * 3600
    assert config.profile_ttl_seconds == 30 * 86400
    assert config.key_prefix == "clinic"


def test_url_overrides_the_rest_and_rediss_means_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "ignored")
    monkeypatch.setenv("REDIS_URL", "rediss://default:tok3n@eu1-example.upstash.io:6379")
    config = RedisConfig.from_env()
    assert config.redis_url() == "rediss://default:tok3n@eu1-example.upstash.io:6379"
    assert config.uses_tls
    assert config.describe_server() == "eu1-example.upstash.io:6379"


def test_secrets_stay_out_of_repr_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2-secret@cache:6379")
    monkeypatch.setenv("REDIS_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("MEMORY_PHONE_HASH_SECRET", "hunter2-secret-hash-key")
    config = RedisConfig.from_env()
    assert "hunter2" not in repr(config) and "hunter2" not in str(config)
    monkeypatch.setenv("REDIS_URL", "http://:hunter2-secret@cache:6379")
    with pytest.raises(ConfigError) as info:
        RedisConfig.from_env()
    assert "REDIS_URL" in str(info.value) and "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_PORT", "not-a-port"),
        ("REDIS_PORT", "70000"),
        ("REDIS_DB", "-1"),
        ("REDIS_SSL", "maybe"),
        ("MEMORY_PERSISTENCE", "perhaps"),
        ("MEMORY_SESSION_TTL_HOURS", "0"),
        ("MEMORY_PROFILE_TTL_DAYS", "-5"),
        ("MEMORY_KEY_PREFIX", "has space"),
        ("MEMORY_DEFAULT_REGION", "USA"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        RedisConfig.from_env()
    assert name in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "spelling",
    [
        "+14155550134",
        "+1 (415) 555-0134",
        "1-415-555-0134",
        "(415) 555-0134",
        "415.555.0134",
        "tel:+1-415-555-0134",
        "sip:+14155550134@trunk.example.com;user=phone",
        "  +1 415 555 0134  ",
        "001 415 555 0134",
    ],
)
def test_spellings_of_one_number_normalize_alike(spelling: str) -> None:
    assert normalize_phone(spelling) == "+14155550134"


def test_default_region_applies_to_national_numbers() -> None:
    assert normalize_phone("020 7946 0958", default_region="GB") == "+442079460958"
    assert normalize_phone("+44 20 7946 0958", default_region="US") == "+442079460958"


@pytest.mark.parametrize(
    "garbage", ["", "   ", "hello", "12", "+", "call me maybe", "9" * 40, "+1 415 555 01345678"]
)
def test_garbage_is_refused_with_a_clear_message(garbage: str) -> None:
    with pytest.raises(InvalidPhoneNumberError) as info:
        normalize_phone(garbage)
    message = str(info.value)
    assert message and (not garbage.strip() or garbage.strip() not in message)


def test_the_hash_is_keyed_and_never_the_number() -> None:
    a = PhoneHasher("first-secret-0123456789")
    b = PhoneHasher("other-secret-0123456789")
    assert a.hash("+14155550134") == a.hash("(415) 555-0134")
    assert a.hash("+14155550134") != b.hash("+14155550134")
    assert "4155550134" not in a.hash("+14155550134")
    assert len(a.hash("+14155550134")) == 22  # 128 bits, base64url
    with pytest.raises(ValueError, match="MEMORY_PHONE_HASH_SECRET"):
        PhoneHasher("short")


def test_without_a_secret_a_stable_local_one_is_made_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
        first = load_dev_secret(tmp_path)
    assert "MEMORY_PHONE_HASH_SECRET is not set" in caplog.text
    path = tmp_path / "phone-hash.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_dev_secret(tmp_path) == first and len(first) >= 32


def test_unprefixed_variables_never_configure_redis(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Heroku and Cloud Run set PORT; shells set HOST and USERNAME.
    for name, value in {"PORT": "8080", "HOST": "0.0.0.0", "USERNAME": "alice", "URL": "x"}.items():
        monkeypatch.setenv(name, value)
    config = RedisConfig.from_env()
    assert (config.host, config.port, config.username, config.url) == (
        "localhost",
        6379,
        None,
        None,
    )
    assert not config.is_explicit
    (tmp_path / ".env").write_text("REDIS_PORT=6390\nPORT=1\n")
    assert RedisConfig.from_env().port == 6390  # the .env file, prefixed names only
    assert RedisConfig(port=6391).port == 6391  # keywords by their Python name


def test_secrets_too_short_or_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_PHONE_HASH_SECRET", "")
    assert RedisConfig.from_env().phone_hash_secret is None  # empty is unset
    monkeypatch.setenv("MEMORY_PHONE_HASH_SECRET", "short")
    with pytest.raises(ConfigError, match="MEMORY_PHONE_HASH_SECRET"):
        RedisConfig.from_env()
    monkeypatch.setenv("MEMORY_PHONE_HASH_SECRET", "a-long-enough-secret-1234")
    monkeypatch.setenv("MEMORY_PHONE_HASH_PREVIOUS_SECRETS", "another-long-secret-123,tiny")
    with pytest.raises(ConfigError, match="MEMORY_PHONE_HASH_PREVIOUS_SECRETS"):
        RedisConfig.from_env()


def test_an_empty_redact_setting_keeps_redaction_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_REDACT", "")
    assert RedisConfig.from_env().redact_kinds == ["card", "national_id", "otp", "email", "phone"]
    monkeypatch.setenv("MEMORY_REDACT", "none")
    assert RedisConfig.from_env().redact_kinds == []

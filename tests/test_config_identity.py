"""Settings from the environment, and caller identity: E.164 normalization and keyed hashing."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from livekit.plugins.caller_memory import (
    CallSummary,
    ConfigError,
    InvalidPhoneNumberError,
    PhoneHasher,
    RedisConfig,
    RedisMemoryStore,
    normalize_phone,
)
from livekit.plugins.caller_memory.console.audit import AuditLog
from livekit.plugins.caller_memory.exceptions import WithheldNumberError
from livekit.plugins.caller_memory.identity import _hmac, load_hasher
from livekit.plugins.caller_memory.models import SessionRecord, utcnow
from livekit.plugins.caller_memory.outbox import Outbox
from livekit.plugins.caller_memory.secret import dev_secret_path, load_dev_secret

from .conftest import TEST_SECRET, replace

STRONG = "9f2c7e1a4b8d3f6052e9a7c1d4b8f3e6"


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
    monkeypatch.setenv("MEMORY_PHONE_HASH_SECRET", f"hunter2-{STRONG}")
    config = RedisConfig.from_env()
    assert "hunter2" not in repr(config) and "hunter2" not in str(config)
    monkeypatch.setenv("REDIS_URL", "http://:hunter2-secret@cache:6379")
    with pytest.raises(ConfigError) as info:
        RedisConfig.from_env()
    assert "REDIS_URL" in str(info.value) and "hunter2" not in str(info.value)


def test_repr_shows_the_database_the_url_names_in_its_query() -> None:
    # As redis-py reads it: ?db= first, then the path.
    config = RedisConfig(url="redis://cache:6379?db=3")
    assert config.database == 3
    assert " db=3," in repr(config)  # the field, not only the URL's text


@pytest.mark.parametrize(
    "settings",
    [
        {"phone_hash_secret": "hunter2hunter2hunter2hunter2hunter2"},  # weak: refused
        {"phone_hash_secret": "hunter2"},  # short: refused
        {"phone_hash_secret": STRONG, "phone_hash_previous_secrets": 42},  # not a string
        {"url": "http://:hunter2@cache:6379"},
        {"url": "redis://:hunter2@cache:6379", "port": "hunter2"},
        {"password": ["hunter2"]},
    ],
)
def test_a_config_built_in_code_never_echoes_a_secret(settings: dict[str, object]) -> None:
    # The README builds RedisConfig(...) directly: its errors must hold no secret either.
    with pytest.raises(ConfigError) as info:
        RedisConfig(**settings)
    assert "hunter2" not in str(info.value) and "42" not in str(info.value)
    assert "hunter2" not in repr(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_PORT", "not-a-port"),
        ("REDIS_PORT", "70000"),
        ("REDIS_DB", "-1"),
        ("REDIS_SSL", "maybe"),
        ("MEMORY_PERSISTENCE", "perhaps"),
        ("MEMORY_SESSION_TTL_HOURS", "0"),
        ("MEMORY_SESSION_TTL_HOURS", "0.0001"),
        ("MEMORY_SUMMARY_TIMEOUT_S", "inf"),
        ("MEMORY_LOOKUP_TIMEOUT_MS", "nan"),
        ("MEMORY_PROFILE_TTL_DAYS", "-5"),
        ("MEMORY_KEY_PREFIX", "has space"),
        ("MEMORY_DEFAULT_REGION", "USA"),
        ("REDIS_HOST", "127.0.0.1:6390"),
        ("REDIS_HOST", "redis://127.0.0.1"),
        ("REDIS_HOST", ""),
        ("REDIS_URL", "redis://127.0.0.1:6379/abc"),
        ("REDIS_URL", "redis://127.0.0.1:6379/0/1"),
        ("REDIS_URL", "redis://127.0.0.1:6379?db=two"),
        ("REDIS_URL", "redis://127.0.0.1:63x9/0"),
        ("REDIS_URL", "redis://127.0.0.1:99999"),
        ("REDIS_URL", "redis://127.0.0.1:0"),
        ("REDIS_URL", "redis://127.0.0.1:6379/0?foo=bar"),
        ("REDIS_URL", "redis://127.0.0.1:6379/0?decode_responses=true"),
        ("REDIS_URL", "redis://127.0.0.1:6379/0?ssl_cert_reqs=none"),
        ("REDIS_CLUSTER_NODES", "10.0.0.2:6379,[::1]:0"),
        ("MEMORY_PROFILE_TTL_DAYS", "99999999"),
        ("MEMORY_SESSION_TTL_HOURS", "8761"),
        ("MEMORY_VERIFIED_ATTRIBUTE", " "),
        ("MEMORY_VERIFIED_VALUES", " , "),
        ("REDIS_SSL_CA_CERTS", "/nonexistent/ca.pem"),
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
        "tel:+1-415-555-0134",
        "sip:+14155550134@trunk.example.com;user=phone",
        "sip:+14155550134;verstat=TN-Validation-Passed@trunk.example.com",
        "  +1 415 555 0134  ",
        "001 415 555 0134",
        "+1 (415) 555-0134 ext. 12",  # an extension after the number: the line is the number
        "+1 415 555 0134 x12",
        "tel:+14155550134;ext=12",
    ],
)
def test_spellings_of_one_number_normalize_alike(spelling: str) -> None:
    assert normalize_phone(spelling) == "+14155550134"


@pytest.mark.parametrize("spelling", ["1-415-555-0134", "(415) 555-0134", "415.555.0134"])
def test_national_spellings_need_a_default_region_set_deliberately(spelling: str) -> None:
    with pytest.raises(InvalidPhoneNumberError, match="MEMORY_DEFAULT_REGION"):
        normalize_phone(spelling)
    assert normalize_phone(spelling, default_region="US") == "+14155550134"


def test_a_uk_number_written_nationally_is_not_taken_for_an_american_one() -> None:
    # 207 946 0958 is a valid Maine number too: without a region set, refuse rather than guess.
    assert RedisConfig().default_region is None
    with pytest.raises(InvalidPhoneNumberError, match="country code"):
        normalize_phone("2079460958")
    assert normalize_phone("020 7946 0958", default_region="GB") == "+442079460958"
    assert normalize_phone("+44 20 7946 0958", default_region="US") == "+442079460958"
    assert normalize_phone("0044 20 7946 0958") == "+442079460958"


def test_carrier_equivalent_forms_are_one_identity() -> None:
    # Mexico's mobile "1" after +52, dropped in 2019 and still sent by some carriers.
    assert normalize_phone("+52 1 55 1234 5678") == normalize_phone("+52 55 1234 5678")
    hasher = PhoneHasher(STRONG)
    assert hasher.hash("+5215512345678") == hasher.hash("+525512345678")


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "hello",
        "12",
        "+",
        "call me maybe",
        "9" * 40,
        "+1 415 555 01345678",  # too long
        "+1 415 555 013",  # too short
        "+1 415 555 0134 ext",  # letters
        "+1-800-FLOWERS",  # keypad letters
        "+44 20 7946 095",  # a length no UK number has
        "+1 099 555 0134",  # no US area code starts with 0
        "+999 1234 5678",  # no such country
    ],
)
def test_garbage_and_invalid_numbers_are_refused_with_a_clear_message(garbage: str) -> None:
    with pytest.raises(InvalidPhoneNumberError) as info:
        normalize_phone(garbage, default_region="US")
    message = str(info.value)
    assert message and (not garbage.strip() or garbage.strip() not in message)


@pytest.mark.parametrize(
    "placeholder",
    [
        "   ",
        "anonymous",
        "Restricted",
        "sip:anonymous@anonymous.invalid",
        "+266696687",  # ANONYMOUS on a keypad
        "+7378742833",  # RESTRICTED
        "8656696",  # UNKNOWN
        "tel:+86282452253",  # UNAVAILABLE
        "sip:unknown@trunk.example.com",
    ],
)
def test_withheld_caller_ids_are_never_an_identity(placeholder: str) -> None:
    with pytest.raises(WithheldNumberError):
        normalize_phone(placeholder, default_region="US")
    with pytest.raises(WithheldNumberError):
        PhoneHasher(STRONG, default_region="US").hash(placeholder)


def test_the_hash_is_keyed_and_never_the_number() -> None:
    a = PhoneHasher("first-secret-5c8e2a9f1d7b3046e8a1c5f9")
    b = PhoneHasher("other-secret-2d9f6b1e8a4c7053b9e2d6a1")
    assert a.hash("+14155550134") == a.hash("+1 (415) 555-0134")
    assert a.hash("+14155550134") != b.hash("+14155550134")
    assert "4155550134" not in a.hash("+14155550134")
    assert len(a.hash("+14155550134")) == 22  # 128 bits, base64url
    with pytest.raises(ValueError, match="MEMORY_PHONE_HASH_SECRET"):
        PhoneHasher("short")
    with pytest.raises(ValueError, match="MEMORY_PHONE_HASH_SECRET"):
        PhoneHasher("a" * 64)


def test_without_a_secret_one_per_user_is_made_loudly_whatever_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    # Said once per process: a worker made by an earlier test in this process may have said it.
    monkeypatch.setattr("livekit.plugins.caller_memory.log._said", set())
    with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
        first = load_dev_secret()
    assert "MEMORY_PHONE_HASH_SECRET is not set" in caplog.text
    path = dev_secret_path()
    assert path.is_relative_to(tmp_path / "config")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the same caller from another folder is the same person
    assert load_dev_secret() == first and len(first) >= 32
    hasher = PhoneHasher(first)
    monkeypatch.chdir(tmp_path)
    assert PhoneHasher(load_dev_secret()).hash("+14155550134") == hasher.hash("+14155550134")


def test_a_secret_file_others_can_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    path = dev_secret_path()
    path.parent.mkdir(parents=True, mode=0o777)
    path.write_text("planted-" + STRONG)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="can be read by other users") as info:
        load_dev_secret()
    assert "planted" not in str(info.value)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700  # the folder is made private


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, whatever the test runner's: folders would come out 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
def test_the_data_folder_is_private_whoever_makes_it_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = utcnow()
    record = SessionRecord(session_id="s", started_at=now, ended_at=now)
    outbox = Outbox(tmp_path / "a" / "data" / "outbox").put(record, phone_hash=None).parent
    audit = tmp_path / "b" / "data" / "console" / "audit.jsonl"
    AuditLog(audit).write("operator", "export", user_ids=[])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "c" / "config"))
    load_dev_secret()
    made = {"outbox": outbox, "audit log": audit.parent, "secret": dev_secret_path().parent}
    for who, folder in made.items():
        for path in (folder, folder.parent, folder.parent.parent):  # each folder it made
            assert _mode(path) == 0o700, (who, path)


@pytest.mark.usefixtures("umask_022")
def test_a_private_folder_made_open_by_an_older_version_is_closed(tmp_path: Path) -> None:
    outbox = tmp_path / "data" / "outbox"
    outbox.mkdir(parents=True, mode=0o755)
    now = utcnow()
    Outbox(outbox).put(SessionRecord(session_id="s", started_at=now, ended_at=now), phone_hash=None)
    assert _mode(outbox) == 0o700
    assert _mode(tmp_path / "data") == 0o755  # an existing parent is the operator's to set


def test_one_normalization_for_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # A secret read from a file with its newline is the same secret, current or previous.
    monkeypatch.setenv("MEMORY_PHONE_HASH_SECRET", STRONG + "\n")
    with_newline = RedisConfig.from_env()
    monkeypatch.setenv("MEMORY_PHONE_HASH_SECRET", STRONG)
    plain = RedisConfig.from_env()
    number = "+14155550134"
    assert PhoneHasher(STRONG + "\n").hash(number) == PhoneHasher(STRONG).hash(number)
    assert with_newline.phone_hash_secret is not None and plain.phone_hash_secret is not None
    monkeypatch.setenv("MEMORY_PHONE_HASH_PREVIOUS_SECRETS", f" {STRONG}\n, x")
    assert RedisConfig.from_env().previous_secrets[0] == STRONG.encode()


def test_a_host_with_a_port_says_where_the_port_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "127.0.0.1:6390")
    with pytest.raises(ConfigError) as info:
        RedisConfig.from_env()
    assert "REDIS_HOST: holds a port" in str(info.value) and "REDIS_PORT" in str(info.value)
    assert "cast" not in str(info.value)  # not redis-py's "Port could not be cast"
    # An IPv6 address's colons are no port: it is bracketed in the URL.
    for host in ("::1", "[::1]"):
        monkeypatch.setenv("REDIS_HOST", host)
        config = RedisConfig.from_env()
        assert config.redis_url() == "redis://[::1]:6379/0"
        assert config.describe_server() == "[::1]:6379"


def test_a_database_that_is_no_number_is_refused_without_echoing_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # redis-py would read it as database 0: another database than meant, silently.
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2-password@cache.internal:6379/abc")
    with pytest.raises(ConfigError) as info:
        RedisConfig.from_env()
    assert "REDIS_URL: the database" in str(info.value) and "must be a number" in str(info.value)
    assert "hunter2" not in str(info.value) and "cache.internal" not in str(info.value)
    for fine in ("redis://h:6379", "redis://h:6379/", "redis://h:6379/12", "rediss://h/3?db=3"):
        monkeypatch.setenv("REDIS_URL", fine)
        assert RedisConfig.from_env().url is not None


def test_the_disclosure_is_read_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_UNVERIFIED_DISCLOSURE", " FULL ")
    assert RedisConfig.from_env().unverified_disclosure == "full"


def test_a_url_query_is_checked_as_redis_py_would_take_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # redis-py passes a query's every name to the connection: an unknown one failed each
    # connection with a TypeError, and decode_responses broke every returning caller's read.
    for query, said in [
        ("foo=bar", "its query names foo, which redis-py does not take from a URL"),
        ("decode_responses=true", "sets decode_responses, which changes how Redis's replies"),
        ("protocol=3", "sets protocol, which changes how Redis's replies are read"),
        ("ssl_cert_reqs=none", "sets ssl_cert_reqs, an option of TLS connections: use a rediss"),
        ("timeout=1", "its query names timeout, which redis-py does not take from a URL"),
        ("max_connections=2", "sets max_connections, which caller memory sets from REDIS_MAX"),
        ("socket_timeout=3", "sets socket_timeout, which caller memory sets from REDIS_SOCKET"),
    ]:
        monkeypatch.setenv("REDIS_URL", f"redis://:hunter2@127.0.0.1:6379/0?{query}")
        with pytest.raises(ConfigError) as info:
            RedisConfig.from_env()
        assert said in str(info.value) and "hunter2" not in str(info.value)
    for fine in ("rediss://h:6380/0?ssl_cert_reqs=none", "redis://h/0?client_name=a&db=0&x="):
        monkeypatch.setenv("REDIS_URL", fine)
        assert RedisConfig.from_env().url is not None


def test_every_ttl_has_a_stated_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value, bound in [
        ("MEMORY_PROFILE_TTL_DAYS", "3651", "at most 3650 days (10 years)"),
        ("MEMORY_SESSION_TTL_HOURS", "8761", "at most 8760 hours (365 days)"),
        ("MEMORY_SESSION_TTL_HOURS", "0.5", "at least 1 hour: a call's journal lives"),
    ]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as info:
            RedisConfig.from_env()
        assert f"{name}: must be {bound}" in str(info.value)
        monkeypatch.delenv(name)
    # The bounds themselves are accepted, and each setting's description states its bound.
    monkeypatch.setenv("MEMORY_PROFILE_TTL_DAYS", "3650")
    monkeypatch.setenv("MEMORY_SESSION_TTL_HOURS", "8760")
    config = RedisConfig.from_env()
    assert config.profile_ttl_seconds == 3650 * 86400
    assert config.session_ttl_seconds == 8760 * 3600
    fields = RedisConfig.model_fields
    assert "at most 3650" in str(fields["profile_ttl_days"].description)
    assert "at most 8760" in str(fields["session_ttl_hours"].description)


@pytest.mark.parametrize("quote", ['"', "'"])
def test_quotes_around_a_secret_are_taken_off_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, quote: str
) -> None:
    # As `docker run --env-file` or a Kubernetes manifest pass MEMORY_PHONE_HASH_SECRET="'...'".
    monkeypatch.setattr("livekit.plugins.caller_memory.log._said", set())
    monkeypatch.setenv("MEMORY_PHONE_HASH_SECRET", f"{quote}{STRONG}{quote}")
    with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
        quoted = RedisConfig.from_env()
        RedisConfig.from_env()
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1  # once per process
    assert warned[0].startswith("MEMORY_PHONE_HASH_SECRET is written with quotes around it")
    assert "left out" in warned[0] and STRONG not in warned[0]
    number = "+14155550134"
    assert load_hasher(quoted).hash(number) == PhoneHasher(STRONG).hash(number)
    # Callers saved under the quoted form (the plugin 0.1 used it as given) are moved.
    assert quoted.previous_secrets == [f"{quote}{STRONG}{quote}".encode()]
    # Quotes that do not match are part of the secret.
    assert PhoneHasher(f"{quote}{STRONG}").hash(number) != PhoneHasher(STRONG).hash(number)


def test_quotes_around_a_previous_secret_are_taken_off_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEMORY_PHONE_HASH_SECRET", STRONG)
    monkeypatch.setenv("MEMORY_PHONE_HASH_PREVIOUS_SECRETS", "'old-one', plain")
    assert RedisConfig.from_env().previous_secrets == [b"old-one", b"'old-one'", b"plain"]


@pytest.mark.parametrize(
    "given", [f'"{TEST_SECRET}"', f"'{TEST_SECRET}'", f"{TEST_SECRET}\n"], ids=["dq", "sq", "nl"]
)
async def test_a_caller_saved_under_the_secret_as_given_is_found_and_moved(
    config: RedisConfig, given: str
) -> None:
    number = "+14155550177"
    quoted = replace(config, phone_hash_secret=given)
    # What the plugin 0.1 wrote: the caller keyed with the secret as given (quotes, newline).
    async with RedisMemoryStore(config) as before:
        old_hash = _hmac(given.encode(), normalize_phone(number))
        old_id = (await before.lookup(old_hash)).user_id
        at = utcnow()
        record = SessionRecord(session_id="q-1", user_id=old_id, started_at=at, ended_at=at)
        await before.save_call(record, CallSummary(summary="Booked."), phone_hash=old_hash)
    async with RedisMemoryStore(quoted) as now:
        phone_hash, previous = now.hasher.hashes(number)
        assert phone_hash == now.hasher.hash(number) == PhoneHasher(TEST_SECRET).hash(number)
        found = await now.lookup(phone_hash, previous=previous)
        assert found.is_returning and found.user_id == phone_hash
        assert found.profile is not None and found.profile.call_count == 1
        assert await now.read(now.keys.phone(old_hash)) is None  # moved off the old key
        assert await now.read(now.keys.phone(phone_hash)) is not None


@pytest.mark.parametrize(
    "weak",
    [
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "password12345678password12345678",
        "MEMORY_PHONE_HASH_SECRETMEMORY_PHONE_HASH_SECRET",
        "correct horse battery staple correct",
        "0123456789012345678901234567890123456789",
        "short-but-random-7f3a9c",
    ],
)
def test_weak_secrets_are_refused_at_start_up(monkeypatch: pytest.MonkeyPatch, weak: str) -> None:
    monkeypatch.setenv("MEMORY_PHONE_HASH_SECRET", weak)
    with pytest.raises(ConfigError, match="MEMORY_PHONE_HASH_SECRET") as info:
        RedisConfig.from_env()
    assert weak not in str(info.value)


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


def test_an_empty_secret_is_unset_and_an_old_one_may_be_weak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEMORY_PHONE_HASH_SECRET", "")
    assert RedisConfig.from_env().phone_hash_secret is None  # empty is unset
    monkeypatch.setenv("MEMORY_PHONE_HASH_SECRET", STRONG)
    # A secret being rotated out may be weak: that can be why it goes.
    monkeypatch.setenv("MEMORY_PHONE_HASH_PREVIOUS_SECRETS", "the-old-weak-one,tiny")
    assert RedisConfig.from_env().previous_secrets == [b"the-old-weak-one", b"tiny"]


def test_an_empty_redact_setting_keeps_redaction_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_REDACT", "")
    assert RedisConfig.from_env().redact_kinds == ["card", "national_id", "otp", "email", "phone"]
    monkeypatch.setenv("MEMORY_REDACT", "none")
    assert RedisConfig.from_env().redact_kinds == []


@pytest.mark.parametrize(
    ("caller_id", "region", "said"),
    [
        ("12345", None, "an extension or a short code"),  # a PBX extension: no region helps
        ("sip:1001@pbx.local", None, "an extension or a short code"),
        ("1001", "US", "an extension or a short code"),
        ("📞+14155550134", None, "only digits, spaces"),  # not "no country code"
        ("\ud800", None, "only digits, spaces"),
    ],
)
def test_a_caller_id_that_is_no_number_is_told_what_it_is(
    caller_id: str, region: str | None, said: str
) -> None:
    with pytest.raises(InvalidPhoneNumberError, match=said) as refused:
        normalize_phone(caller_id, default_region=region)
    assert "country code" not in str(refused.value)

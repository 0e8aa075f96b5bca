"""The local model's server with what only tests need, and a text session that waits for it.

:class:`TestLLMServer` is Sarah's :class:`~sarah_agent.local_llm.LocalLLMServer` (llama.cpp's
server with SmolLM2-135M-Instruct, on a free loopback port) that a test can also crash
(SIGKILL), freeze (SIGSTOP) and ask whether it is working on a request. :func:`unavailable`
says why the real-model tests cannot run here; ``.ci/run`` sets :data:`REQUIRE_VARIABLE`, which
turns that into a failure: CI installs the model, and a tier that skips there proves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import urllib.request
from typing import Any

import pytest
from livekit.agents import AgentSession, APIConnectOptions, llm
from livekit.agents.voice.agent_session import SessionConnectOptions

from sarah_agent.local_llm import LocalLLMServer, missing

__all__ = [
    "REQUIRE_VARIABLE",
    "TestLLMServer",
    "model_session",
    "skip_or_fail_without_model",
    "unavailable",
]

REQUIRE_VARIABLE = "CALLER_MEMORY_REQUIRE_LOCAL_LLM"
"""Set (to anything but ``0``) where the local model must be installed: a missing model is
then an error, not a skip."""

MODEL_TIMEOUT_S = 120.0
"""What a request to the local model gets: a loaded 2-core machine is slow, never this slow."""


def unavailable() -> str | None:
    """Why the local model cannot run here, or None."""
    reason = missing()
    if reason is None:
        return None
    return f"the local model is not installed ({reason})"


def skip_or_fail_without_model() -> None:
    """At a test module's top: skip it when the local model is not installed, or fail where
    :data:`REQUIRE_VARIABLE` says the model must be there."""
    missing_model = unavailable()
    if missing_model is None:
        return
    if required():
        pytest.fail(f"{REQUIRE_VARIABLE} is set, but {missing_model}", pytrace=False)
    pytest.skip(missing_model, allow_module_level=True)


def required() -> bool:
    """Whether :data:`REQUIRE_VARIABLE` asks for the real-model tier."""
    return os.environ.get(REQUIRE_VARIABLE, "0") not in ("", "0")


class TestLLMServer(LocalLLMServer):
    """A :class:`LocalLLMServer` that tests can crash, freeze, and watch at work."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def kill(self) -> None:
        """SIGKILL the server, as a crash; :meth:`start` brings it back on the same port."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        self.stop()  # reaps it

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted, nothing is answered."""
        pid = self.pid
        assert pid is not None, "the server is not running"
        os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a server frozen by :meth:`pause`."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def busy(self) -> bool:
        """Whether the server is working on a request (llama.cpp's ``/slots``)."""
        request = urllib.request.Request(
            f"{self.url}/slots", headers={"Authorization": f"Bearer {self.api_key}"}
        )
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=2) as reply:
            slots: list[dict[str, Any]] = json.loads(reply.read())
            return any(slot.get("is_processing") for slot in slots)
        return False

    async def wait_busy(self, timeout: float = MODEL_TIMEOUT_S) -> None:
        """Return once the server works on a request (the event loop runs meanwhile: the
        request is likely sent from it).

        Raises:
            AssertionError: It did not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self.busy):
            assert time.monotonic() < deadline, f"the server got no request in {timeout:g} s"
            await asyncio.sleep(0.01)


def model_session(model: llm.LLM[Any]) -> AgentSession[None]:
    """A text-only ``AgentSession`` (as ``testing.text_session``) whose LLM requests may take
    :data:`MODEL_TIMEOUT_S`: a real model's first token comes after it has read the prompt."""
    return AgentSession(
        llm=model,
        vad=None,
        turn_handling={"turn_detection": None},
        conn_options=SessionConnectOptions(
            llm_conn_options=APIConnectOptions(max_retry=0, timeout=MODEL_TIMEOUT_S)
        ),
    )

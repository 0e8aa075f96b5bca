"""What an agent of the call is given: the caller's memory as a message of its context, and
the tools that let the caller control that memory."""

from __future__ import annotations

from typing import Any

from livekit.agents import llm

from . import prompts
from .calls import SessionManager

__all__ = ["MEMORY_MESSAGE_ID", "memory_tools", "with_memory"]

MEMORY_MESSAGE_ID = "caller_memory"
"""Id of the system message that carries the caller's memory in an agent's context."""


def with_memory(chat_ctx: llm.ChatContext, prompt: str) -> llm.ChatContext:
    """A copy of ``chat_ctx`` whose memory message is ``prompt`` (none when it is ""): the
    agent's own instructions are left exactly as they are."""
    chat_ctx = chat_ctx.copy()
    existing = chat_ctx.get_by_id(MEMORY_MESSAGE_ID)
    if existing is not None:
        chat_ctx.items.remove(existing)
    if prompt:
        chat_ctx.add_message(role="system", content=prompt, id=MEMORY_MESSAGE_ID)
    return chat_ctx


def memory_tools(manager: SessionManager, session_id: str) -> list[llm.FunctionTool[..., Any]]:
    """The function tools of :meth:`.CallMemory.tools`, for the call ``session_id``."""

    async def forget_me(confirmed: bool) -> str:
        if not confirmed:
            return prompts.FORGET_ME.ask_first
        outcome = await manager.ask_to_forget(session_id)
        if outcome == "unavailable":
            return prompts.FORGET_ME.unavailable
        return prompts.FORGET_ME.requested if outcome == "requested" else prompts.FORGET_ME.done

    async def dont_remember_this_call() -> str:
        manager.dont_remember(session_id)
        return prompts.DONT_REMEMBER.done

    async def record_memory_consent(agreed: bool) -> str:
        manager.set_consent(session_id, agreed)
        return prompts.RECORD_CONSENT.agreed if agreed else prompts.RECORD_CONSENT.declined

    found: list[llm.FunctionTool[..., Any]] = [
        llm.function_tool(forget_me, description=prompts.FORGET_ME.description),
        llm.function_tool(dont_remember_this_call, description=prompts.DONT_REMEMBER.description),
    ]
    if manager.config.consent_required:
        found.append(
            llm.function_tool(record_memory_consent, description=prompts.RECORD_CONSENT.description)
        )
    return found

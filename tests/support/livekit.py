"""LiveKit for the tests: the plugin's offline-call harness, plus what only tests read.

Everything that needs LiveKit's private names is in ``livekit.plugins.caller_memory.testing``
(see its ``PRIVATE_NAMES``); this module adds readers of LLM requests.
"""

from __future__ import annotations

from livekit.agents.llm import ChatContext

from livekit.plugins.caller_memory.testing import (
    ScriptedLLM,
    ToolCall,
    is_summary_request,
    join,
    leave,
    offline_job,
    participant,
    set_attributes,
    shut_down,
    sip_caller,
    text_session,
)

__all__ = [
    "ScriptedLLM",
    "ToolCall",
    "is_summary_request",
    "job",
    "join",
    "last_item",
    "leave",
    "participant",
    "set_attributes",
    "shut_down",
    "sip_caller",
    "text_session",
    "texts",
]

job = offline_job


def last_item(chat_ctx: ChatContext) -> tuple[str, str]:
    """(role, text) of the request's last item; ``("tool", output)`` for a tool's answer."""
    item = chat_ctx.items[-1]
    if item.type == "function_call_output":
        return "tool", item.output
    if item.type == "message":
        return item.role, item.text_content or ""
    return item.type, ""


def texts(chat_ctx: ChatContext) -> list[tuple[str, str]]:
    """(role, text) of every message of a request."""
    return [(m.role, m.text_content or "") for m in chat_ctx.messages()]

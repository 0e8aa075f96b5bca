"""The life of a call, as the guide's session manager: start, turns, consent, end into memory.

```python
manager = await init_session_manager(llm=agent_llm)
ctx = await manager.start_session(session_id=sid, phone_number=caller_phone)
if ctx.is_returning:
    greeting = f"Welcome back! {ctx.greeting_context}"
manager.add_turn(sid, "user", user_text)
manager.add_turn(sid, "assistant", reply)
await manager.end_session(sid)
```

A *call* is what the guide calls a session: one phone call, ``session_id`` its id (a LiveKit job
id). Its flow: :meth:`SessionManager.start_session` hashes the number (:mod:`..identity`) and
looks the caller up within the budget (:mod:`.lookup`); :meth:`~SessionManager.add_turn`
records turns, redacted (:mod:`..redaction`), and journals them (:mod:`.turns`,
:mod:`..journal`); :meth:`~SessionManager.end_session` summarizes (:mod:`..summarizer`) and
saves, or keeps the call for later (:mod:`..recovery`). Consent, erasure and export are in
:mod:`.rights` (carried out across the store, the outbox and the calls held by
:mod:`..privacy`), the texts the LLM sees in
:mod:`..prompts`.

The modules: :mod:`.state` (what a call holds), :mod:`.lookup`, :mod:`.turns`,
:mod:`.lifecycle`, :mod:`.rights`, :mod:`.maintenance`, and :mod:`.manager`, which puts them
together.
"""

from __future__ import annotations

from .manager import SessionManager, get_session_manager, init_session_manager
from .state import LookupStatus, SessionContext

__all__ = [
    "LookupStatus",
    "SessionContext",
    "SessionManager",
    "get_session_manager",
    "init_session_manager",
]

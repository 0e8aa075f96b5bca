"""A LiveKit worker process for the settings tests: it imports :mod:`.env_agent` (whose
``CallerMemory()`` reads the environment and ``.env`` of the working folder), then runs jobs
one after the other through LiveKit's own ``ProcJobExecutor``, as a worker does.

Between two jobs it can write a line into ``.env`` (an operator's edit while the worker runs).
It prints one JSON line: each job's exit code.

Run: ``python -m tests.support.env_worker '<json: {"jobs": [...], "edit_before": {...}}>'``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path


async def _run(plan: dict[str, object]) -> list[int | None]:
    from livekit.plugins.caller_memory.testing import job_process

    from .env_agent import server

    codes: list[int | None] = []
    edits: dict[str, str] = plan.get("edit_before", {})  # type: ignore[assignment]
    for job in plan["jobs"]:  # type: ignore[attr-defined]
        if job["id"] in edits:
            with Path(".env").open("a") as env_file:
                env_file.write(edits[job["id"]] + "\n")
        async with job_process(server, job_id=job["id"], metadata=json.dumps(job)) as exe:
            await exe.join()
            codes.append(exe.exitcode)
    return codes


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_run(json.loads(sys.argv[1])))), flush=True)

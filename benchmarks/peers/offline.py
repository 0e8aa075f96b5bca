"""Keeps the peers benchmark off the network: the environment that turns off mem0's and chroma's
telemetry and the Hugging Face hub, set before either is imported, and a guard that refuses any
socket connection to an address outside this machine (and counts the attempts)."""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

ENVIRONMENT = {
    "MEM0_TELEMETRY": "False",
    "ANONYMIZED_TELEMETRY": "False",  # chroma's
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # mem0 builds its default LLM client (OpenAI) even when no call needs it; infer=False never
    # calls it, and the guard below would refuse the connection if anything did.
    "OPENAI_API_KEY": "not-used-offline",
}

blocked: list[str] = []
"""Addresses refused by the guard in this process (host:port, never a payload)."""


def set_environment(mem0_dir: str) -> None:
    """Set the variables (mem0 reads its own at import time): call before importing mem0."""
    os.environ.update(ENVIRONMENT)
    os.environ["MEM0_DIR"] = mem0_dir  # mem0 writes a config file there, not in ~/.mem0


def _local(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # a Unix socket
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a name to resolve: not ours


def guard_network() -> None:
    """Refuse connections to anything but loopback and Unix sockets, in this process."""
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        if not _local(address):
            blocked.append(f"{address[0]}:{address[1]}")
            raise ConnectionRefusedError("the peers benchmark runs offline")
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not _local(address):
            blocked.append(f"{address[0]}:{address[1]}")
            return 111  # ECONNREFUSED
        return original_connect_ex(self, address)

    # setattr: the stubs type these methods more narrowly than the wrappers need.
    setattr(socket.socket, "connect", connect)  # noqa: B010
    setattr(socket.socket, "connect_ex", connect_ex)  # noqa: B010

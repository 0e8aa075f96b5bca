"""A TCP proxy in front of a Redis server, whose network can be made to fail on demand.

A real network fails in more ways than a stopped server: connections refused, a peer that
accepts and never answers (a black hole: a dropped route, a full conntrack table), replies that
come late, a reply cut off half-way. The proxy runs in a thread of its own, so that the process
under test (or another process) talks to it as to any remote Redis.

```python
with FaultProxy(server.port) as proxy:
    url = proxy.url
    proxy.set_mode("blackhole")   # new and open connections: nothing comes back
    proxy.set_mode("pass")        # healed
```
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Literal

__all__ = ["FaultProxy", "Mode"]

Mode = Literal["pass", "refuse", "blackhole", "delay", "cut"]
"""``pass``: forward everything. ``refuse``: close each connection at once (as a port nothing
listens on, closer to a crashed server). ``blackhole``: keep connections open and forward
nothing, either way. ``delay``: forward replies ``delay_s`` late. ``cut``: forward the first
byte of the next reply, then close the connection (a reply cut off mid-way)."""


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>`` until told otherwise.

    Args:
        target_port: The real server's port.
        delay_s: How late replies come in ``delay`` mode.
    """

    def __init__(self, target_port: int, *, delay_s: float = 1.0) -> None:
        self._target = target_port
        self._mode: Mode = "pass"
        self.delay_s = delay_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>``."""
        return f"redis://127.0.0.1:{self.port}"

    @property
    def mode(self) -> Mode:
        """What the network does now."""
        return self._mode

    def start(self) -> FaultProxy:
        """Listen on a free port."""
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def set_mode(self, mode: Mode) -> None:
        """Change what the network does, for open connections and new ones."""
        self._mode = mode
        if mode == "refuse":
            asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(10)

    def stop(self) -> None:
        """Close every connection and the listener, and stop the thread."""
        if self._server is not None:

            async def close() -> None:
                assert self._server is not None
                self._server.close()
                await self._close_all()
                # A connection held in a black hole would outlive its loop: end each one.
                for task in self._connections:
                    task.cancel()
                await asyncio.gather(*self._connections, return_exceptions=True)

            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        if self._mode == "refuse":
            client_w.close()
            return
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, server_w}
        try:
            # stop() cancels a held connection: it ends quietly, since Python 3.11's stream
            # server prints a traceback for a connection task that ends cancelled.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(
                    self._pipe(client_r, server_w, replies=False),
                    self._pipe(server_r, client_w, replies=True),
                )
        finally:
            for writer in (client_w, server_w):
                self._writers.discard(writer)
                writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                mode = self._mode
                while mode == "blackhole":  # hold it: nothing passes, in either direction
                    await asyncio.sleep(0.05)
                    mode = self._mode
                if mode == "refuse":
                    return
                if replies and mode == "delay":
                    await asyncio.sleep(self.delay_s)
                if replies and mode == "cut":
                    writer.write(data[:1])
                    await writer.drain()
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()
        writer.close()


@contextlib.contextmanager
def fault_proxy(target_port: int, **kwargs: float) -> Iterator[FaultProxy]:
    """A started :class:`FaultProxy`, stopped at the end."""
    proxy = FaultProxy(target_port, **kwargs)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()

"""Run the service's ASGI app under uvicorn in a background thread (load tests, benchmarks, demos)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Server(uvicorn.Server):
    """uvicorn that signals when it has started listening."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.up = threading.Event()

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        self.up.set()


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int | None = None,
                    start_timeout_s: float = 60.0) -> Iterator[str]:
    """Serve ``app`` on ``host:port`` (a free port by default) until the block ends; yields its base URL."""
    port = port or free_port(host)
    server = _Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        if not server.up.wait(start_timeout_s):
            raise RuntimeError(f"uvicorn did not start on {host}:{port} within {start_timeout_s:.0f} s")
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(30)

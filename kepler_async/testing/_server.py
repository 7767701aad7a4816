"""Serve an ASGI app with uvicorn on 127.0.0.1 from a background thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import uvicorn

__all__ = ["serve"]


@contextlib.contextmanager
def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    lifespan: Literal["auto", "on", "off"] = "off",
    startup_timeout: float = 10.0,
) -> Iterator[str]:
    """Run ``app`` on ``host:port`` (0 picks a free port) and yield its base URL.

    ``lifespan="on"`` runs the app's startup and shutdown (uvicorn's setting). The
    server stops, and its thread ends, when the block exits.
    """
    # uvicorn binds the socket itself: handed a socket of ours, its connections
    # answered ~40 ms late (measured; the mark of Nagle meeting delayed ACKs).
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan=lifespan
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="kepler-sim-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulator server did not start")
            time.sleep(0.005)
        bound_port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)

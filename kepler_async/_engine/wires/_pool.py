"""httpcore's connection pool, with each idle connection promised to one request.

What it mends (measured with ``benchmarks/pool_passes.py``, 2026-12-04): httpcore 1.0
hands an idle connection to a waiting request but leaves it marked idle until that
request starts on it, some awaits later. Every request that arrives in between is
handed the same connection, loses the race for it (``ConnectionNotAvailable``) and
goes round the pool again: 1.8 lost races per poll at 10 in flight, for raw httpx as
for us. And every pass through the pool asks each idle connection's socket whether
the server closed it (a ``poll()`` system call behind several anyio attribute
lookups): 24-34 such checks per poll.

This pool keeps httpcore's rules (the connection limit, the idle limit, keep-alive
expiry, closed connections dropped) and changes two things: a connection handed to a
request is not handed to another until that request is done with it, and a socket is
checked when its connection is about to be used, with a sweep of all idle connections
at most once a second. Only pools of the engine's own httpx clients are changed; a
client the caller passes in, and proxied routes, are left as they are.
"""

from __future__ import annotations

import time
from typing import Any

import httpcore
import httpx

__all__ = ["promise_connections"]

#: How often, at most, every idle connection is checked for expiry.
SWEEP_EVERY = 1.0


class PromisingPool(httpcore.AsyncConnectionPool):
    """An ``AsyncConnectionPool`` whose idle connections go to one request at a time.

    It adds no state of its own (a pool becomes one by a change of class), so
    everything httpcore sets up in ``__init__`` stays as httpcore made it."""

    def _assign_requests_to_connections(self) -> list[Any]:
        closing: list[Any] = []
        # A connection a request holds (waiting to start, running, or just finished
        # and about to be given back) is nobody else's.
        promised = {id(r.connection) for r in self._requests if r.connection is not None}
        now = time.monotonic()
        sweep = now >= getattr(self, "_promising_next_sweep", 0.0)
        if sweep:
            self._promising_next_sweep = now + SWEEP_EVERY
        kept_idle = 0
        for connection in list(self._connections):
            if connection.is_closed():
                self._connections.remove(connection)
            elif connection.is_idle() and id(connection) not in promised:
                surplus = kept_idle >= self._max_keepalive_connections
                if surplus or (sweep and connection.has_expired()):
                    self._connections.remove(connection)
                    closing.append(connection)
                else:
                    kept_idle += 1
        for pool_request in [r for r in self._requests if r.is_queued()]:
            connection = self._usable(pool_request.request.url.origin, promised, closing)
            if connection is None:
                if len(self._connections) >= self._max_connections:
                    idle = [c for c in self._connections if c.is_idle() and id(c) not in promised]
                    if not idle:
                        continue  # it waits for a connection to come back
                    self._connections.remove(idle[0])
                    closing.append(idle[0])
                connection = self.create_connection(pool_request.request.url.origin)
                self._connections.append(connection)
            promised.add(id(connection))
            pool_request.assign_to_connection(connection)
        return closing

    def _usable(self, origin: httpcore.Origin, promised: set[int], closing: list[Any]) -> Any:
        """The first available connection to ``origin`` nobody holds, checked now."""
        for connection in list(self._connections):
            if (
                id(connection) in promised
                or not connection.can_handle_request(origin)
                or not connection.is_available()
            ):
                continue
            if connection.has_expired():
                self._connections.remove(connection)
                closing.append(connection)
                continue
            return connection
        return None


def promise_connections(client: httpx.AsyncClient) -> None:
    """Give ``client``'s direct route a ``PromisingPool`` if it has httpcore's own."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    if type(pool) is httpcore.AsyncConnectionPool:
        pool.__class__ = PromisingPool

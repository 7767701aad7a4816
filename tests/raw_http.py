"""A raw HTTP/1.1 server of our own on 127.0.0.1: not the simulator, not a mock transport.

It answers each request by script over real sockets, so both wires (httpx's transport
and aiohttp) meet the same bytes, including answers that never come.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc

__all__ = ["Exchange", "Respond", "Server"]


Respond = Callable[["Exchange"], Awaitable[bool]]  # returns False to close the connection


class Exchange:
    """One request as the server read it, and the raw socket to answer on."""

    def __init__(self, stream: anyio.abc.ByteStream, head: bytes, body: bytes) -> None:
        self.stream = stream
        lines = head.decode("latin-1").split("\r\n")
        self.method, self.target, _ = lines[0].split(" ", 2)
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        self.body = body

    async def send(self, status: int, body: bytes = b"", **headers: str) -> bool:
        head = f"HTTP/1.1 {status} X\r\n"
        headers.setdefault("content-length", str(len(body)))
        head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
        await self.stream.send(head.encode() + b"\r\n" + body)
        return True

    async def json(self, status: int, payload: object, **headers: str) -> bool:
        return await self.send(
            status, json.dumps(payload).encode(), content_type="application/json", **headers
        )


class Server:
    """Answers each request with the next step of ``script`` (the last one repeats)."""

    def __init__(self, *script: Respond) -> None:
        self.script = list(script)
        self.requests: list[Exchange] = []

    async def _handle(self, stream: anyio.abc.ByteStream) -> None:
        buffer = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        buffer += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    try:
                        buffer += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return  # the client hung up in the middle of its body
                body, buffer = buffer[:length], buffer[length:]
                exchange = Exchange(stream, head, body)
                self.requests.append(exchange)
                step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
                try:
                    if not await step(exchange):
                        return
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, self._handle)
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                tg.cancel_scope.cancel()

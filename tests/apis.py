"""The four APIs behind one test harness, so one test covers all of them.

Each ``Api`` knows how to make its simulator and a client wired to it through a
``Wire`` (a transport in front of the simulator that counts requests and can hold,
refuse or lose the answer to a submit), and how to make the n-th distinct submission.
Tests are parametrised by ``API_NAMES`` and run on fake time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx

from kepler_async import AsyncKepler, JobEngine, JobHandle, SQLiteJobStore
from kepler_async._engine._client import ApiClient
from kepler_async.deepidv import AsyncDeepidv
from kepler_async.midlyr import AsyncMidLyr
from kepler_async.parsetx import AsyncParseTx
from kepler_async.testing import (
    DEEPIDV_KEY,
    LIVE_KEY,
    MIDLYR_KEY,
    PARSETX_KEY,
    DeepidvSimulator,
    KeplerSimulator,
    MidLyrSimulator,
    ParseTxSimulator,
)


class Wire(httpx.AsyncBaseTransport):
    """The tests' one fake-server helper: a transport in front of an ASGI app (or of
    another transport) that counts and logs requests, and can rewrite any answer, hold
    or refuse GETs and POSTs, make a poll's body endless, or lose or garble the answer
    to a submit."""

    def __init__(self, target: Any) -> None:
        if isinstance(target, httpx.AsyncBaseTransport):
            self.inner: httpx.AsyncBaseTransport = target
        else:
            self.inner = httpx.ASGITransport(app=target)
        self.posts = 0
        self.gets = 0
        #: (loop time, method, host, path) of every request
        self.log: list[tuple[float, str, str, str]] = []
        #: rewrite(request): an answer of its own for a request, or None to pass it on
        self.rewrite: Callable[[httpx.Request], httpx.Response | None] | None = None
        self.hold_posts = 0.0  # seconds each POST waits before it is sent
        self.hold_gets = 0.0  # seconds each GET waits before it is sent
        self.endless_gets = False  # GETs answer a body that never ends
        self.lose_posts = 0  # the next N POSTs reach the API but their answers are lost
        self.garble_posts = 0  # the next N POSTs reach the API; their answers are garbled
        self.refuse_posts: list[httpx.Response] = []  # canned answers for the next POSTs
        self.refuse_gets: list[httpx.Response] = []  # canned answers for the next GETs
        self.answer_paths: dict[str, httpx.Response] = {}  # a GET path's next answer
        self.posted = anyio.Event()

    def times(self, path_prefix: str) -> list[float]:
        """When requests to paths starting with ``path_prefix`` were sent."""
        return [t for t, _, _, path in self.log if path.startswith(path_prefix)]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.log.append((anyio.current_time(), request.method, request.url.host, request.url.path))
        if self.rewrite is not None and (rewritten := self.rewrite(request)) is not None:
            return rewritten
        if request.method == "POST":
            return await self._post(request)
        self.gets += 1
        if self.endless_gets:
            return httpx.Response(200, stream=Endless())
        if self.hold_gets:
            await anyio.sleep(self.hold_gets)
        if request.url.path in self.answer_paths:
            return self.answer_paths.pop(request.url.path)
        if self.refuse_gets:
            return self.refuse_gets.pop(0)
        return await self.inner.handle_async_request(request)

    async def _post(self, request: httpx.Request) -> httpx.Response:
        if self.hold_posts:
            await anyio.sleep(self.hold_posts)
        self.posts += 1
        self.posted.set()
        if self.refuse_posts:
            return self.refuse_posts.pop(0)
        response = await self.inner.handle_async_request(request)
        if self.lose_posts:
            self.lose_posts -= 1
            raise httpx.ReadTimeout("the answer never came", request=request)
        if self.garble_posts:
            self.garble_posts -= 1
            await response.aread()
            return httpx.Response(response.status_code, content=b'{"job_id": "12')
        return response


class Endless(httpx.AsyncByteStream):
    """A poll answer whose body starts well and never ends."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"status": "running", "padding": "'
        while True:
            await anyio.sleep(0.05)
            yield b"x" * 1024


def answer(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


@attrs.frozen
class Api:
    """One API as the harness drives it."""

    name: str
    key: str
    make_sim: Callable[[], Any]
    client_class: type[ApiClient[Any]]
    #: submit(client, n, deadline, journal): the n-th distinct submission
    submit: Callable[..., Awaitable[JobHandle[Any]]]
    #: jobs the server started (billed work)
    jobs_started: Callable[[Any], int]
    #: the 429 bodies that limit paid work (submits) and a request rate
    quota_429: tuple[dict[str, Any], dict[str, str]]
    rate_429: tuple[dict[str, Any], dict[str, str]]
    #: the journal key of the n-th submission
    journal_key: Callable[[int], str]
    #: the n-th distinct input of the API's fan-out verb, and one it refuses
    item: Callable[[int], Any] = lambda n: n
    bad_item: object = None
    #: many(client, inputs, **options): the API's fan-out verb
    many: Callable[..., Any] = lambda client, inputs, **options: None

    def client(
        self,
        sim: Any,
        wire: Wire | None = None,
        *,
        engine: JobEngine | None = None,
        journal: Path | None = None,
        key: str | None = None,
    ) -> ApiClient[Any]:
        store = SQLiteJobStore(journal, threaded=False) if journal is not None else None
        return self.client_class(
            key or self.key,
            base_url=f"http://{self.name}.test",
            transport=wire or Wire(sim.create_app()),
            engine=engine,
            journal=store,
        )


async def _kepler(client: Any, n: int, deadline: Any = None, journal: bool = True) -> Any:
    return await client.submit(f"d{n}.com", deadline=deadline)


async def _deepidv(client: Any, n: int, deadline: Any = None, journal: bool = True) -> Any:
    return await client.submit_adverse_media(
        first_name=f"Ada{n}",
        last_name="Lovelace",
        date_of_birth="1815-12-10",
        idempotency_key=f"idem-{n}",
        deadline=deadline,
        journal_key=f"person-{n}" if journal else None,
    )


async def _midlyr(client: Any, n: int, deadline: Any = None, journal: bool = True) -> Any:
    return await client.submit_screen(
        f"text number {n}", deadline=deadline, journal_key=f"text-{n}" if journal else None
    )


async def _parsetx(client: Any, n: int, deadline: Any = None, journal: bool = True) -> Any:
    return await client.submit_enrich(
        [f"AMZN Mktp US {n}"], deadline=deadline, journal_key=f"batch-{n}" if journal else None
    )


def _kepler_sim() -> KeplerSimulator:
    return KeplerSimulator(clock=anyio.current_time, failure_mix={}, per_key_cold_per_hour=None)


APIS = {
    "kepler": Api(
        name="kepler",
        key=LIVE_KEY,
        make_sim=_kepler_sim,
        client_class=AsyncKepler,
        submit=_kepler,
        jobs_started=lambda sim: sim.counters.total_cold_runs,
        quota_429=({"error": "rate_limited", "reason": "per_key_cold_1h"}, {"Retry-After": "60"}),
        rate_429=({"error": "rate_limited", "reason": "requests"}, {"Retry-After": "60"}),
        journal_key=lambda n: f"d{n}.com",
        item=lambda n: f"d{n}.com",
        bad_item="not a domain",
        many=lambda client, inputs, **options: client.score_many(inputs, **options),
    ),
    "deepidv": Api(
        name="deepidv",
        key=DEEPIDV_KEY,
        make_sim=lambda: DeepidvSimulator(clock=anyio.current_time, failure_rate=0),
        client_class=AsyncDeepidv,
        submit=_deepidv,
        jobs_started=lambda sim: sim.counters.jobs_created,
        quota_429=({"error": "rate_limited"}, {"Retry-After": "60"}),
        rate_429=({"error": "rate_limited"}, {"Retry-After": "60"}),
        journal_key=lambda n: f"person-{n}",
        item=lambda n: {
            "first_name": f"Ada{n}",
            "last_name": "Lovelace",
            "date_of_birth": "1815-12-10",
        },
        bad_item={"first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "yesterday"},
        many=lambda client, inputs, **options: client.screen_adverse_media_many(inputs, **options),
    ),
    "midlyr": Api(
        name="midlyr",
        key=MIDLYR_KEY,
        make_sim=lambda: MidLyrSimulator(clock=anyio.current_time, failure_rate=0),
        client_class=AsyncMidLyr,
        submit=_midlyr,
        jobs_started=lambda sim: sim.counters.jobs_created,
        quota_429=({"error": {"code": "rate_limited", "message": "slow"}}, {"Retry-After": "60"}),
        rate_429=({"error": {"code": "rate_limited", "message": "slow"}}, {"Retry-After": "60"}),
        journal_key=lambda n: f"text-{n}",
        item=lambda n: f"text number {n}",
        bad_item="   ",
        many=lambda client, inputs, **options: client.screen_many(inputs, **options),
    ),
    "parsetx": Api(
        name="parsetx",
        key=PARSETX_KEY,
        make_sim=lambda: ParseTxSimulator(clock=anyio.current_time, failure_rate=0),
        client_class=AsyncParseTx,
        submit=_parsetx,
        jobs_started=lambda sim: sim.counters.jobs_created,
        # The daily token budget: a limit on paid work that lifts (the monthly quota
        # ends a fan-out for good: tests/engine/test_fan_out.py).
        quota_429=(
            {"error": "token budget", "token_usage": 10, "token_limit": 10, "plan": "free"},
            {"Retry-After": "60"},
        ),
        rate_429=({"error": "too many requests"}, {"Retry-After": "60"}),
        journal_key=lambda n: f"batch-{n}",
        item=lambda n: [f"AMZN Mktp US {n}"],
        bad_item=[],
        many=lambda client, inputs, **options: client.enrich_many(inputs, **options),
    ),
}
API_NAMES = list(APIS)
#: The APIs whose submit may start paid work and has no idempotency key.
BILLED = {"kepler", "midlyr", "parsetx"}
#: The APIs that tell a quota 429 from a rate 429.
QUOTA_SCOPED = {"kepler", "parsetx"}

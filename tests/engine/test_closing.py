"""Closing ends every wait: ``aclose()`` while hundreds of callers wait on submits.

A raw HTTP server of our own (``tests/raw_http.py``, real sockets on 127.0.0.1) answers
the billed POSTs late, in a random order, or never, and every poll with ``pending``, so
that at the moment of closing some submits wait for a request slot, some are on the
wire, some have just been answered and some jobs are being polled. Every caller must
come back, within ``aclose()``'s bound, with ``ClientClosed`` or ``SubmitUncertain``:
none may be left waiting. A race, so each case runs many rounds; on both wires, on
asyncio and (through the trio copies, where httpx sends) on trio.
"""

from __future__ import annotations

import json
import os
import random
import uuid

import anyio
import pytest

import kepler_async as ka
from kepler_async import AsyncKepler, PollPolicy
from tests.backends import run_on_asyncio_and_trio
from tests.bodies import SCORE
from tests.raw_http import Exchange, Server

KEY = "ki_live_closing-test-key"
CALLERS = 300
#: Rounds per case (``KEPLER_CLOSING_ROUNDS`` for a longer soak). Before the fix, 12
#: rounds caught the race in every run on trio (both wires) and on asyncio with httpx;
#: asyncio with aiohttp never showed it.
ROUNDS = int(os.environ.get("KEPLER_CLOSING_ROUNDS", "30"))
#: ``aclose()`` promises 5 s; the callers must all be back by then too.
BOUND = 6.0


@pytest.fixture(params=["httpx", "aiohttp"])
def wire(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def late_answers(rng: random.Random, release: anyio.Event) -> Server:
    """POST: no answer at all (one in eight), or 200 inline or 202 either after 0-60 ms
    or held until ``release`` (so that many answers land at the moment of closing);
    GET of a job: pending."""

    async def answer(x: Exchange) -> bool:
        domain = json.loads(x.body)["domain"] if x.method == "POST" else None
        if x.method == "GET":
            job_id = x.target.rsplit("/", 1)[-1]
            return await x.json(200, {"job_id": job_id, "status": "pending"})
        roll = rng.random()
        if roll < 0.125:
            await anyio.sleep_forever()
        if rng.random() < 0.5:
            await release.wait()
        else:
            await anyio.sleep(rng.random() * 0.06)
        if roll < 0.25:
            return await x.json(200, {**SCORE, "domain": domain})
        job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return await x.json(
            202,
            {
                "job_id": job_id,
                "status": "pending",
                "domain": domain,
                "poll_url": f"/v1/jobs/{job_id}",
            },
        )

    return Server(answer)


async def one_round(
    url: str, wire: str, rng: random.Random, release: anyio.Event
) -> dict[str, int]:
    policy = PollPolicy(first_delay=0.02, interval=0.02, multiplier=1.0, cap=0.02, deadline=60)
    kepler = AsyncKepler(KEY, base_url=url, poll_policy=policy, http_backend=wire)
    outcomes: dict[str, int] = {}
    all_back = anyio.Event()

    async def caller(i: int) -> None:
        try:
            if i % 3:
                await kepler.score(f"d{i}.com")
            else:
                job = await kepler.submit(f"d{i}.com")
                await job
        except (ka.ClientClosed, ka.SubmitUncertain) as error:
            name = type(error).__name__
            if "could not be read" in str(error):  # the server's bytes are right
                name = f"unexpected {error}"
        except ka.KeplerError as error:  # anything else is a failure of the test
            name = f"unexpected {type(error).__name__}: {error}"
        else:
            name = "scored"
        outcomes[name] = outcomes.get(name, 0) + 1
        if sum(outcomes.values()) == CALLERS:
            all_back.set()

    async with kepler, anyio.create_task_group() as tg:
        for i in range(CALLERS):
            tg.start_soon(caller, i)
        await anyio.sleep(0.05 + rng.random() * 0.2)
        release.set()  # the held answers are on their way back
        await anyio.sleep(rng.random() * 0.004)
        started = anyio.current_time()
        with anyio.move_on_after(BOUND) as bounded:
            await kepler.aclose()
            await all_back.wait()
        if bounded.cancelled_caught:
            tg.cancel_scope.cancel()
        closed_in = anyio.current_time() - started
    returned = sum(outcomes.values())
    assert returned == CALLERS, f"{CALLERS - returned} callers still waited {BOUND}s after aclose()"
    assert closed_in < BOUND
    return outcomes


async def test_aclose_ends_every_wait_of_hundreds_of_callers(wire: str) -> None:
    rng = random.Random(20261204)
    seen: dict[str, int] = {}
    for _ in range(ROUNDS):
        release = anyio.Event()
        server = late_answers(rng, release)
        async with server.running() as url:
            for name, count in (await one_round(url, wire, rng, release)).items():
                seen[name] = seen.get(name, 0) + count
    assert not [name for name in seen if name.startswith("unexpected")], seen
    # The rounds really closed on every kind of wait.
    assert seen.get("ClientClosed", 0) > 0
    assert seen.get("SubmitUncertain", 0) > 0


run_on_asyncio_and_trio(globals(), virtual_time=False)

"""The HTTP boundary's promises on each wire: httpx's transport and aiohttp.

A raw TCP server of our own (not the simulator, not a mock transport) answers by
script over real sockets on 127.0.0.1, so both wires are tested the same way: the
headers they send, statuses, retries and ``Retry-After``, redirects never followed,
bounded reads, timeouts, a POST whose answer is lost, refused connections, and the
deadline as a hard stop. Every test runs once per wire on asyncio and, through the trio
copies, on trio, where aiohttp cannot run and httpx sends instead (also tested).
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import anyio
import anyio.abc
import pytest
import sniffio

import kepler_async as ka
from kepler_async import RetryPolicy
from kepler_async._engine._http import HttpBoundary
from kepler_async._kepler._errors import kepler_error, kepler_submit_never_started
from tests.backends import run_on_asyncio_and_trio
from tests.raw_http import Exchange, Respond, Server

KEY = "ki_live_s3cr3t-wire-key-never-printed"


def ok(payload: object = None, **headers: str) -> Respond:
    async def step(x: Exchange) -> bool:
        return await x.json(200, {"ok": True} if payload is None else payload, **headers)

    return step


def status(code: int, error: str, **headers: str) -> Respond:
    async def step(x: Exchange) -> bool:
        return await x.json(code, {"error": error}, **headers)

    return step


async def hang_up(x: Exchange) -> bool:
    return False  # read the request, answer nothing, close


async def stall(x: Exchange) -> bool:
    await anyio.sleep_forever()
    return False  # pragma: no cover


@pytest.fixture(params=["httpx", "aiohttp"])
def wire(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def expected_wire(wire: str) -> str:
    """What really sends: aiohttp runs on asyncio only."""
    return wire if sniffio.current_async_library() == "asyncio" else "httpx"


def boundary(url: str, wire: str, **kwargs: Any) -> HttpBoundary:
    kwargs.setdefault("retry", RetryPolicy(attempts=3, initial=0.01, jitter=0.0))
    return HttpBoundary.create(
        api_key=KEY,
        base_url=url,
        auth_header="X-API-Key",
        map_error=kepler_error,
        never_started=kepler_submit_never_started,
        http_backend=wire,
        **kwargs,
    )


async def test_the_wire_sends_the_key_and_identifies_itself(wire: str) -> None:
    server = Server(ok())
    async with server.running() as url:
        http = boundary(url, wire)
        reply = await http.request("GET", "/v1/usage", params={"a": 1})
        posted = await http.request("POST", "/v1/score", json={"domain": "é.com"}, billed=True)
        assert http.http_backend == expected_wire(wire)
        await http.aclose()
    assert reply.body == {"ok": True}
    assert posted.status == 200
    get, post = server.requests
    assert (get.method, get.target) == ("GET", "/v1/usage?a=1")
    assert get.headers["x-api-key"] == KEY
    assert get.headers["user-agent"] == f"kepler-async/{ka.__version__}"
    assert get.headers["accept"] == "application/json"
    assert post.headers["content-type"] == "application/json"
    assert json.loads(post.body) == {"domain": "é.com"}


async def test_statuses_map_to_the_error_tree_and_bodies_are_scrubbed(wire: str) -> None:
    async def echo_key(x: Exchange) -> bool:
        return await x.json(401, {"error": "unauthorized", "message": x.headers["x-api-key"]})

    server = Server(echo_key, status(404, "job not found"), status(429, "rate limited"))
    async with server.running() as url:
        http = boundary(url, wire)
        with pytest.raises(ka.AuthenticationError) as auth:
            await http.request("GET", "/v1/usage")
        with pytest.raises(ka.NotFound):
            await http.request("GET", "/v1/jobs/x")
        with pytest.raises(ka.RateLimited):
            await http.request("GET", "/v1/usage")
        await http.aclose()
    assert KEY not in str(auth.value)
    assert KEY not in auth.value.message


async def test_5xx_on_a_get_is_retried_after_retry_after(wire: str) -> None:
    server = Server(status(503, "busy", retry_after="1"), ok())
    async with server.running() as url:
        http = boundary(url, wire)
        started = anyio.current_time()
        reply = await http.request("GET", "/v1/usage")
        waited = anyio.current_time() - started
        await http.aclose()
    assert reply.status == 200
    assert len(server.requests) == 2
    assert waited >= 0.9  # Retry-After: 1 beat the 0.01 s backoff


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_redirect_is_never_followed(wire: str, method: str) -> None:
    async def redirect(x: Exchange) -> bool:
        return await x.send(307, location=f"https://evil.example{x.target}")

    server = Server(redirect)
    async with server.running() as url:
        http = boundary(url, wire)
        with pytest.raises(ka.ProtocolError, match=r"evil\.example"):
            await http.request(method, "/v1/score", json={"domain": "a.com"}, billed=True)
        await http.aclose()
    assert len(server.requests) == 1


async def test_a_declared_size_over_the_limit_is_not_read(wire: str) -> None:
    async def huge(x: Exchange) -> bool:
        await x.stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n{")
        return False

    server = Server(huge)
    async with server.running() as url:
        http = boundary(url, wire)
        with pytest.raises(ka.ProtocolError, match="1,073,741,824 bytes"):
            await http.request("GET", "/v1/usage")
        await http.aclose()


# (on trio, httpx leaves the inner generators of a read stopped early to the garbage
# collector, which warns; what matters is that reading stops at the limit)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_chunked_body_over_the_limit_is_cut_off(wire: str) -> None:
    async def endless(x: Exchange) -> bool:
        await x.stream.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(64):  # 4 MiB, past the 1 MiB limit
            await x.stream.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        return False

    server = Server(endless)
    async with server.running() as url:
        http = boundary(url, wire, max_body=1024 * 1024)
        with pytest.raises(ka.ProtocolError, match="1,048,576-byte limit"):
            await http.request("GET", "/v1/usage")
        await http.aclose()


# (on trio, httpx leaves the inner generators of a read stopped early to the garbage
# collector, which warns; what matters is that reading stops at the limit)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_compressed_bomb_counts_its_decoded_size(wire: str) -> None:
    bomb = gzip.compress(b"0" * (4 * 1024 * 1024))

    async def compressed(x: Exchange) -> bool:
        return await x.send(200, bomb, content_encoding="gzip")

    server = Server(compressed)
    async with server.running() as url:
        http = boundary(url, wire, max_body=1024 * 1024)
        with pytest.raises(ka.ProtocolError, match="limit"):
            await http.request("GET", "/v1/usage")
        await http.aclose()


async def test_a_server_that_never_answers_times_out(wire: str) -> None:
    server = Server(stall)
    async with server.running() as url:
        http = boundary(url, wire, timeout=0.3, retry=RetryPolicy(attempts=1))
        with pytest.raises(ka.TransportError, match="timed out") as info:
            await http.request("GET", "/v1/usage")
        await http.aclose()
    assert info.value.request_sent


async def test_a_billed_post_whose_answer_is_lost_is_uncertain_and_not_resent(
    wire: str,
) -> None:
    server = Server(hang_up)
    async with server.running() as url:
        http = boundary(url, wire)
        with pytest.raises(ka.SubmitUncertain) as info:
            await http.request("POST", "/v1/score", json={"domain": "a.com"}, billed=True)
        await http.aclose()
    assert info.value.request_sent
    assert len(server.requests) == 1  # it arrived once and was never sent again


async def test_a_billed_post_never_rides_a_connection_the_server_just_closed(
    wire: str,
) -> None:
    """A server closes an idle keep-alive connection as the client picks it: a GET
    would be retried, a billed POST would be in doubt. So a POST takes a new one."""

    async def answer_then_close(x: Exchange) -> bool:
        await x.json(200, {"ok": True})
        return False  # close, as a server's idle timeout does

    server = Server(answer_then_close, answer_then_close, ok())
    async with server.running() as url:
        http = boundary(url, wire, retry=RetryPolicy(attempts=1))
        for _ in range(20):
            await http.request("GET", "/v1/usage")
            reply = await http.request("POST", "/v1/score", json={"domain": "a.com"}, billed=True)
            assert reply.status == 200
        await http.aclose()


async def test_a_lost_submit_comes_out_of_async_with_as_itself_in_a_task_group(
    wire: str,
) -> None:
    """As a user holds it: a client opened in a child task (a trio nursery on trio), the
    error caught outside `async with`: `SubmitUncertain`, not an ExceptionGroup."""
    server = Server(hang_up)
    caught: list[BaseException] = []

    async def user_task(url: str) -> None:
        try:
            async with ka.AsyncKepler(KEY, base_url=url, http_backend=wire) as kepler:
                await kepler.score("stripe.com")
        except BaseException as error:
            caught.append(error)

    async with server.running() as url, anyio.create_task_group() as tg:
        tg.start_soon(user_task, url)
    assert len(caught) == 1
    assert type(caught[0]) is ka.SubmitUncertain
    assert len(server.requests) == 1  # the POST arrived once and was not resent


async def test_a_get_whose_answer_is_lost_is_retried(wire: str) -> None:
    server = Server(hang_up, ok())
    async with server.running() as url:
        http = boundary(url, wire)
        assert (await http.request("GET", "/v1/usage")).status == 200
        await http.aclose()
    assert len(server.requests) == 2


async def test_a_refused_connection_never_sent_anything(wire: str) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nobody listens there now
    http = boundary(f"http://127.0.0.1:{port}", wire, retry=RetryPolicy(attempts=2, initial=0.01))
    with pytest.raises(ka.TransportError, match="could not connect") as info:
        await http.request("POST", "/v1/score", json={"domain": "a.com"}, billed=True)
    await http.aclose()
    assert not info.value.request_sent
    assert not isinstance(info.value, ka.SubmitUncertain)


async def test_the_deadline_is_a_hard_stop_on_a_server_that_never_answers(wire: str) -> None:
    job = "9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f"

    async def accept_then_stall(x: Exchange) -> bool:
        if x.method == "POST":
            return await x.json(
                202,
                {
                    "job_id": job,
                    "status": "pending",
                    "domain": "stripe.com",
                    "poll_url": f"/v1/jobs/{job}",
                },
            )
        await anyio.sleep_forever()
        return False  # pragma: no cover

    server = Server(accept_then_stall)
    policy = ka.PollPolicy(first_delay=0.01, interval=0.01, cap=0.01, jitter=0.0)
    async with (
        server.running() as url,
        ka.AsyncKepler(
            KEY, base_url=url, http_backend=wire, poll_policy=policy, timeout=30
        ) as kepler,
    ):
        started = anyio.current_time()
        with pytest.raises(ka.DeadlineExceeded):
            await kepler.score("stripe.com", deadline=0.5)
        late = anyio.current_time() - started - 0.5
    assert late < 0.5  # a poll hung 30 s in a read; the deadline did not wait for it


async def test_aiohttp_needs_its_extra_and_no_httpx_transport() -> None:
    import httpx

    with pytest.raises(ka.ConfigurationError, match="cannot use an httpx"):
        ka.AsyncKepler(
            KEY,
            base_url="http://127.0.0.1:1",
            transport=httpx.MockTransport(lambda r: httpx.Response(200)),
            http_backend="aiohttp",
        )
    with pytest.raises(ka.ConfigurationError, match="http_backend"):
        ka.AsyncKepler(KEY, base_url="http://127.0.0.1:1", http_backend="curl")


run_on_asyncio_and_trio(globals(), virtual_time=False)


def test_the_default_wire_and_in_flight_limit_come_from_the_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx

    monkeypatch.delenv("KEPLER_ASYNC_HTTP_BACKEND", raising=False)
    assert (ka.JobEngine().http_backend, ka.JobEngine().scheduler.max_in_flight) == ("httpx", 10)
    fast = ka.JobEngine(http_backend="aiohttp")
    assert fast.scheduler.max_in_flight == 50  # benchmarks/throughput.py
    assert ka.JobEngine(http_backend="aiohttp", max_in_flight=7).scheduler.max_in_flight == 7
    on_fast = ka.AsyncKepler(KEY, base_url="http://127.0.0.1:1", engine=fast)
    assert on_fast.http_backend == "aiohttp"
    monkeypatch.setenv("KEPLER_ASYNC_HTTP_BACKEND", "aiohttp")
    assert ka.AsyncKepler(KEY, base_url="http://127.0.0.1:1").http_backend == "aiohttp"
    mocked = ka.AsyncKepler(
        KEY,
        base_url="http://127.0.0.1:1",
        transport=httpx.MockTransport(lambda r: httpx.Response(200)),
    )
    assert mocked.http_backend == "httpx"  # a transport of yours is httpx's
    monkeypatch.setenv("KEPLER_ASYNC_HTTP_BACKEND", "curl")
    with pytest.raises(ka.ConfigurationError, match="KEPLER_ASYNC_HTTP_BACKEND"):
        ka.AsyncKepler(KEY, base_url="http://127.0.0.1:1")

"""A hostile server, not the simulator: huge bodies, redirects that would take the key
elsewhere, errors that echo the key. asyncio and trio (fake time where time matters);
the memory test runs a real server in a child process."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

import kepler_async as ka
from kepler_async import AsyncKepler
from kepler_async.deepidv import AsyncDeepidv
from tests.backends import run_on_asyncio_and_trio

KEY = "ki_live_s3cr3t-key-123"
JOB = "9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f"
BASE = "https://api.keplerinsights.us"


def hostile(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> AsyncKepler:
    return AsyncKepler(KEY, base_url=BASE, transport=httpx.MockTransport(handler), **kwargs)


# --- bounded reads ------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_refused_by_its_declared_size() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": str(2**30)}, content=b"")

    async with hostile(handler) as kepler:
        with pytest.raises(ka.ProtocolError, match="8,388,608-byte limit"):
            await kepler.get_job(JOB)


# httpx's aiter_bytes() leaves its inner generators (aiter_raw, the stream's) to the
# garbage collector when a read stops early; trio warns about each. What matters here
# is that reading stops at the limit.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
# A chunked body over the limit and a compressed bomb: tests/engine/test_wires.py, on
# both wires over real sockets.


async def test_polls_have_a_smaller_limit_and_a_big_poll_answer_is_transient() -> None:
    polls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal polls
        if request.method == "POST":
            body = {"job_id": JOB, "status": "pending", "domain": "a.com"}
            return httpx.Response(202, json={**body, "poll_url": f"/v1/jobs/{JOB}"})
        polls += 1
        return httpx.Response(200, content=b"[" + b"1," * 600_000 + b"1]")  # 1.2 MB

    async with hostile(handler) as kepler:
        job = await kepler.submit("a.com", deadline=60)
        with pytest.raises(ka.DeadlineExceeded) as info:
            await job
    assert isinstance(info.value.__cause__, ka.ProtocolError)
    assert "1,048,576-byte limit" in str(info.value.__cause__)
    assert polls >= 2  # retried on the job's schedule until the deadline


def test_a_gigabyte_answer_costs_no_gigabyte_of_memory(tmp_path: object) -> None:
    """A real server streams 1 GiB; the client stops at its limit (peak RSS)."""
    script = textwrap.dedent(
        """
        import resource, anyio
        import kepler_async as ka
        from kepler_async.testing import serve

        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            chunk = b"x" * 65536
            for _ in range(16384):  # 1 GiB
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

        async def main(url):
            async with ka.AsyncKepler("ki_live_x1234", base_url=url) as kepler:
                try:
                    await kepler.get_job("9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f")
                except ka.ProtocolError as error:
                    return str(error)

        with serve(app) as url:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            message = anyio.run(main, url)
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) / 1024, "|", message)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    grown_mib, message = done.stdout.strip().split(" | ", 1)
    assert "byte limit" in message
    assert float(grown_mib) < 50


# --- the key goes to the API host only --------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_redirect_is_refused_even_with_a_client_that_follows_them(method: str) -> None:
    router = respx.MockRouter(assert_all_called=False)
    router.route(host="api.keplerinsights.us").mock(
        side_effect=lambda request: httpx.Response(
            307, headers={"location": f"https://evil.example{request.url.path}"}
        )
    )
    evil = router.route(host="evil.example").respond(200, json={})
    users = httpx.AsyncClient(
        transport=httpx.MockTransport(router.async_handler), follow_redirects=True
    )
    async with users, AsyncKepler(KEY, base_url=BASE, http_client=users) as kepler:
        with pytest.raises(  # noqa: PT012 (one call, chosen by the parameter)
            ka.ProtocolError, match=r"redirect to 'https://evil\.example/v1/"
        ):
            if method == "GET":
                await kepler.get_score("stripe.com")
            else:
                await kepler.score("stripe.com")
    assert not evil.called  # the key never left; the billed POST was not replayed


# --- the key never comes back out -------------------------------------------------------


async def test_a_key_echoed_by_the_server_is_masked_everywhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        echo = request.headers["x-api-key"]
        return httpx.Response(
            500,
            json={"error": f"bad {echo}", "message": f"key {echo}", "reason": echo},
            headers={"x-request-id": f"req-{echo}"},
        )

    caplog.set_level(logging.DEBUG, logger="kepler_async")
    async with hostile(handler, retry=ka.RetryPolicy(attempts=2, initial=0.01)) as kepler:
        with pytest.raises(ka.ServerError) as info:
            await kepler.usage()
    error = info.value
    texts = [str(error), repr(error), *map(str, error.args), error.message]
    texts += [str(error.code), str(error.reason), str(error.request_id)]
    assert all(KEY not in text for text in texts), texts
    assert "***" in error.message
    assert KEY not in caplog.text
    assert "retrying" in caplog.text  # the DEBUG record was written, masked


@pytest.mark.parametrize(
    "key", ["dk_ab\r\nX-Evil: 1", "dk_ab\x00cd", "dk ab cd", "dk_\u00e9t\u00e9"]
)
def test_a_malformed_key_is_refused_without_printing_it(key: str) -> None:
    with pytest.raises(ka.ConfigurationError) as info:
        AsyncDeepidv(key, base_url="https://api.deepidv.com")
    assert key not in str(info.value)
    assert "ab" not in str(info.value).replace("able", "")


def test_a_parsetx_key_must_look_like_one() -> None:
    from kepler_async.parsetx import AsyncParseTx

    with pytest.raises(ka.ConfigurationError, match="'pt_'"):
        AsyncParseTx("sk_live_1234")
    AsyncParseTx("pt_live_1234")


async def test_numbers_too_long_to_read_are_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"job_id": ' + b"9" * 100_000 + b"}")

    async with hostile(handler) as kepler:
        with pytest.raises(ka.ProtocolError, match="not JSON"):
            await kepler.get_job(JOB)


run_on_asyncio_and_trio(globals(), virtual_time=True)

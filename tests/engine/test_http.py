"""The HTTP boundary: headers, error mapping, and the retry rules for safe and billed calls."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import respx

import kepler_async as ka
from kepler_async import RetryPolicy
from kepler_async._engine._http import HttpBoundary, map_httpx_error
from kepler_async._kepler._errors import kepler_error, kepler_submit_never_started
from tests.backends import run_on_asyncio_and_trio

KEY = "ki_live_s3cr3t-value-never-printed"
BASE_URL = "https://api.example.test"


def answers(*script: httpx.Response | Exception) -> respx.MockRouter:
    """A respx router for the API host whose one route plays ``script`` in order (the
    last answer repeats); ``router.calls`` records what was sent."""
    steps = list(script)

    def next_answer(request: httpx.Request) -> httpx.Response:
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        if isinstance(step, Exception):
            raise step
        return step

    router = respx.MockRouter(base_url=BASE_URL, assert_all_mocked=True)
    router.route().mock(side_effect=next_answer)
    return router


def make(router: respx.MockRouter, **kwargs: object) -> tuple[HttpBoundary, list[float]]:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    boundary = HttpBoundary.create(
        api_key=KEY,
        base_url=BASE_URL + "/",
        auth_header="X-API-Key",
        map_error=kepler_error,
        never_started=kepler_submit_never_started,
        transport=httpx.MockTransport(router.async_handler),
        sleep=fake_sleep,
        rand=lambda: 0.0,
        **kwargs,  # type: ignore[arg-type]
    )
    return boundary, sleeps


def ok(body: object = None, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"ok": True} if body is None else body, headers=headers)


def err(status: int, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": code}, headers=headers)


def _all_httpx_exception_classes() -> list[type[Exception]]:
    return sorted(
        (
            value
            for value in vars(httpx).values()
            if isinstance(value, type) and issubclass(value, Exception)
        ),
        key=lambda cls: cls.__name__,
    )


def _instantiate(cls: type[Exception]) -> Exception:
    request = httpx.Request("GET", "https://api.example.test/v1/usage")
    if cls is httpx.HTTPStatusError:
        return cls("boom", request=request, response=httpx.Response(502, request=request))
    for args, kwargs in (
        (("boom",), {"request": request}),
        (("boom",), {}),
        ((), {}),
    ):
        try:
            return cls(*args, **kwargs)
        except TypeError:
            continue
    raise AssertionError(f"cannot build {cls}")


@pytest.mark.parametrize("cls", _all_httpx_exception_classes(), ids=lambda c: c.__name__)
async def test_every_httpx_exception_maps_into_the_tree(cls: type[Exception]) -> None:
    original = _instantiate(cls)
    boundary, _ = make(answers(original), retry=RetryPolicy(attempts=1))
    with pytest.raises(ka.KeplerError) as info:
        await boundary.request("GET", "/v1/usage")
    assert info.value.__cause__ is original
    assert KEY not in str(info.value)


@pytest.mark.parametrize(
    ("error", "billed", "expected", "sent"),
    [
        (httpx.ConnectError("refused"), True, ka.TransportError, False),
        (httpx.ConnectTimeout("slow"), True, ka.TransportError, False),
        (httpx.PoolTimeout("busy"), True, ka.TransportError, False),
        (httpx.ReadTimeout("slow"), True, ka.SubmitUncertain, True),
        (httpx.WriteTimeout("slow"), True, ka.SubmitUncertain, True),
        (httpx.ReadError("reset"), True, ka.SubmitUncertain, True),
        (httpx.RemoteProtocolError("hung up"), True, ka.SubmitUncertain, True),
        (httpx.ReadTimeout("slow"), False, ka.TransportError, True),
        (httpx.DecodingError("gzip"), False, ka.ProtocolError, None),
        (httpx.TooManyRedirects("loop"), False, ka.ProtocolError, None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_transport_errors_say_whether_the_request_may_have_arrived(
    error, billed, expected, sent
) -> None:
    mapped = map_httpx_error(error, method="POST", path="/v1/score", billed=billed)
    assert type(mapped) is expected
    if sent is not None:
        assert isinstance(mapped, ka.TransportError)
        assert mapped.request_sent is sent


async def test_headers_identify_and_authenticate() -> None:
    router = answers(ok())
    boundary, _ = make(router)
    reply = await boundary.request("GET", "/v1/usage", params={"a": 1})
    assert reply.status == 200
    assert reply.body == {"ok": True}
    sent = router.calls[0].request
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["user-agent"] == f"kepler-async/{ka.__version__}"
    assert sent.headers["accept"] == "application/json"
    assert str(sent.url) == "https://api.example.test/v1/usage?a=1"


async def test_safe_requests_retry_transient_failures_with_growing_backoff() -> None:
    router = answers(httpx.ConnectError("refused"), err(502, "bad gateway"), ok())
    boundary, sleeps = make(router, retry=RetryPolicy(attempts=3, initial=0.5, jitter=0.0))
    reply = await boundary.request("GET", "/v1/usage")
    assert reply.body == {"ok": True}
    assert len(router.calls) == 3
    assert sleeps == [0.5, 1.0]


async def test_safe_requests_honour_retry_after_on_5xx() -> None:
    router = answers(err(503, "busy", **{"Retry-After": "7"}), ok())
    boundary, sleeps = make(router, retry=RetryPolicy(initial=0.5, jitter=0.0))
    await boundary.request("GET", "/v1/usage")
    assert sleeps == [7.0]


async def test_exhausted_retries_raise_the_last_error_with_its_cause() -> None:
    failure = httpx.ReadTimeout("slow")
    router = answers(failure)
    boundary, sleeps = make(router, retry=RetryPolicy(attempts=4, jitter=0.0, initial=1, cap=3))
    with pytest.raises(ka.TransportError) as info:
        await boundary.request("GET", "/v1/usage")
    assert info.value.__cause__ is failure
    assert len(router.calls) == 4
    assert sleeps == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429])
async def test_client_errors_are_never_retried(status: int) -> None:
    router = answers(err(status, "nope"))
    boundary, sleeps = make(router)
    with pytest.raises(ka.APIError):
        await boundary.request("GET", "/v1/usage")
    assert len(router.calls) == 1
    assert sleeps == []


async def test_billed_post_is_resent_when_the_connection_never_opened() -> None:
    router = answers(httpx.ConnectError("refused"), ok({"job_id": "x"}, status=202))
    boundary, _ = make(router)
    reply = await boundary.request("POST", "/v1/score", json={"domain": "a.com"}, billed=True)
    assert reply.status == 202
    assert len(router.calls) == 2
    assert json.loads(router.calls[0].request.content) == {"domain": "a.com"}


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("slow"), httpx.ReadError("reset"), httpx.RemoteProtocolError("bye")],
    ids=lambda e: type(e).__name__,
)
async def test_billed_post_that_may_have_arrived_is_never_resent(failure: Exception) -> None:
    router = answers(failure, ok())
    boundary, _ = make(router)
    with pytest.raises(ka.SubmitUncertain) as info:
        await boundary.request("POST", "/v1/score", json={"domain": "a.com"}, billed=True)
    assert len(router.calls) == 1
    assert info.value.request_sent
    assert "not sent again" in str(info.value)


async def test_billed_post_retries_an_engine_that_never_started() -> None:
    router = answers(err(500, "scoring engine unavailable"), ok(status=202))
    boundary, _ = make(router)
    reply = await boundary.request("POST", "/v1/score", json={"domain": "a.com"}, billed=True)
    assert reply.status == 202
    assert len(router.calls) == 2


@pytest.mark.parametrize(
    ("status", "code"), [(500, "internal error"), (503, "unavailable"), (429, "rate limited")]
)
async def test_billed_post_is_not_resent_after_other_failures(status: int, code: str) -> None:
    router = answers(err(status, code), ok(status=202))
    boundary, _ = make(router)
    with pytest.raises(ka.APIError):
        await boundary.request("POST", "/v1/score", json={"domain": "a.com"}, billed=True)
    assert len(router.calls) == 1


async def test_a_success_that_is_not_json_is_a_protocol_error_without_the_key() -> None:
    boundary, _ = make(answers(httpx.Response(200, text=f"<html>oops {KEY}</html>")))
    with pytest.raises(ka.ProtocolError) as info:
        await boundary.request("GET", "/v1/usage")
    assert "<html>oops" in str(info.value)
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value.args)


async def test_an_error_body_that_echoes_the_key_is_scrubbed() -> None:
    body = {"error": "unauthorized", "message": f"bad key {KEY}"}
    boundary, _ = make(answers(httpx.Response(401, json=body)))
    with pytest.raises(ka.AuthenticationError) as info:
        await boundary.request("GET", "/v1/usage")
    assert KEY not in str(info.value)
    assert KEY not in info.value.message
    assert "***" in info.value.message


async def test_an_html_error_page_keeps_its_status_and_an_excerpt() -> None:
    boundary, _ = make(answers(httpx.Response(502, text="<h1>Bad Gateway</h1>")))
    with pytest.raises(ka.ServerError) as info:
        await boundary.request("GET", "/v1/usage", retry=RetryPolicy(attempts=1))
    assert info.value.status == 502
    assert "Bad Gateway" in str(info.value)


async def test_unexpected_non_2xx_success_status_is_a_protocol_error() -> None:
    boundary, _ = make(answers(httpx.Response(304)))
    with pytest.raises(ka.ProtocolError, match="unexpected status"):
        await boundary.request("GET", "/v1/usage")


async def test_closed_boundary_refuses_and_owned_client_is_closed() -> None:
    boundary, _ = make(answers(ok()))
    await boundary.aclose()
    await boundary.aclose()  # idempotent
    assert boundary._client.is_closed
    with pytest.raises(ka.ClientClosed):
        await boundary.request("GET", "/v1/usage")


async def test_an_injected_client_is_used_as_is_and_left_open() -> None:
    router = answers(ok())
    injected = httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler))
    boundary = HttpBoundary.create(
        api_key=KEY,
        base_url="https://api.example.test",
        auth_header="X-API-Key",
        map_error=kepler_error,
        never_started=kepler_submit_never_started,
        http_client=injected,
    )
    await boundary.request("GET", "/v1/usage")
    await boundary.aclose()
    assert not injected.is_closed
    assert len(router.calls) == 1
    await injected.aclose()


async def test_retries_are_logged_at_debug_without_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    boundary, _ = make(answers(err(503, "busy"), ok()))
    await boundary.request("GET", "/v1/usage")
    messages = [record.getMessage() for record in caplog.records]
    assert any("retrying GET /v1/usage" in m for m in messages)
    assert all(KEY not in m for m in messages)


def test_repr_hides_the_key() -> None:
    boundary, _ = make(answers(ok()))
    assert KEY not in repr(boundary)


run_on_asyncio_and_trio(globals(), virtual_time=False)

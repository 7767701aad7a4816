"""kepler_async.testing's pytest fixtures, used as a user's project uses them: a small
test file run by pytest (pytester, in a subprocess) under pytest-asyncio in strict
mode, in auto mode, and under anyio's plugin on asyncio and trio."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import asyncio

import httpx
import pytest
import sniffio

import kepler_async as ka
from kepler_async import AsyncKepler
from kepler_async.testing import LIVE_KEY, VendorCounters

PERSON = {"first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1815-12-10"}


{mark}
async def test_a_cached_score(kepler_client, kepler_sim):
    kepler_sim.seed_score("stripe.com", age=60)
    assert (await kepler_client.score("stripe.com")).domain == "stripe.com"
    assert kepler_sim.counters.cold_runs_billed["stripe.com"] == 0


{mark}
async def test_a_cold_job_finishes_when_simulated_time_says(kepler_client, kepler_sim, sim_clock):
    job = await kepler_client.submit("plaid.com")
    assert not job.done()
    sim_clock.advance(91)  # Kepler's runs take 25-90 s
    score = await job
    assert score.domain == "plaid.com"
    assert kepler_sim.counters.cold_runs_billed["plaid.com"] == 1


async def rate_company(kepler, domain):
    \"\"\"The user's own code: one await for a score, whatever the path.\"\"\"
    score = await kepler.score(domain)
    return f"{score.domain}: {score.ki_rating}"


{mark}
async def test_code_that_awaits_a_cold_score(kepler_client, kepler_sim):
    label = await rate_company(kepler_client, "plaid.com")  # 25-90 simulated seconds
    assert label.startswith("plaid.com: ")
    assert kepler_sim.counters.cold_runs_billed["plaid.com"] == 1


{mark}
async def test_a_task_and_a_hand_on_the_clock(kepler_client, kepler_sim, sim_clock):
    if sniffio.current_async_library() != "asyncio":
        pytest.skip("asyncio.create_task is asyncio's")
    task = asyncio.create_task(rate_company(kepler_client, "plaid.com"))
    sim_clock.advance(91)
    label = await task
    assert label.startswith("plaid.com: ")


{mark}
async def test_a_job_never_let_finish_fails_fast(kepler_client, kepler_sim):
    kepler_sim.script("never.example", duration=10_000)
    with pytest.raises(ka.DeadlineExceeded):
        await kepler_client.score("never.example")


{mark}
async def test_the_vendor_clients(deepidv_client, midlyr_client, parsetx_client, sim_clock,
                                  deepidv_sim, midlyr_sim, parsetx_sim):
    screening = await deepidv_client.submit_adverse_media(**PERSON)
    text = await midlyr_client.submit_screen("0% APR forever")
    enriched = await parsetx_client.submit_enrich(["AMZN Mktp US"])
    sim_clock.advance(3600)
    for handle in (screening, text, enriched):
        try:
            await handle
        except ka.JobFailed:
            pass  # the simulators' failure mix: settled either way
    for sim in (deepidv_sim, midlyr_sim, parsetx_sim):
        assert isinstance(sim.counters, VendorCounters)
        assert len(sim.jobs) == 1


{mark}
async def test_the_simulator_over_http(kepler_sim, kepler_sim_url):
    kepler_sim.seed_score("stripe.com", age=60)
    assert kepler_sim_url.startswith("http://127.0.0.1:")
    async with AsyncKepler(LIVE_KEY, base_url=kepler_sim_url, allow_plain_http=True) as kepler:
        assert (await kepler.score("stripe.com")).domain == "stripe.com"
"""

ASYNCIO = ["-p", "no:anyio", "-o", "asyncio_default_fixture_loop_scope=function"]
SETUPS = {
    # name: (marker line, pytest arguments)
    "pytest-asyncio strict": ("@pytest.mark.asyncio", [*ASYNCIO, "-o", "asyncio_mode=strict"]),
    "pytest-asyncio auto": ("", [*ASYNCIO, "-o", "asyncio_mode=auto"]),
    "anyio plugin": ("@pytest.mark.anyio", ["-p", "no:asyncio"]),
}

PLUGIN_ONLY = 'pytest_plugins = ["kepler_async.testing.fixtures"]\n'
ANYIO_CONFTEST = textwrap.dedent(
    """
    import pytest

    pytest_plugins = ["kepler_async.testing.fixtures"]

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(request):
        return request.param
    """
)


@pytest.mark.parametrize("setup", SETUPS)
def test_the_fixtures_work_in_a_users_project(pytester: pytest.Pytester, setup: str) -> None:
    mark, args = SETUPS[setup]
    pytester.makepyfile(test_user=USER_TESTS.replace("{mark}", mark))
    pytester.makeconftest(ANYIO_CONFTEST if setup == "anyio plugin" else PLUGIN_ONLY)
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider", *args)
    if setup == "anyio plugin":  # each test on asyncio and trio; one is asyncio's only
        result.assert_outcomes(passed=13, skipped=1)
    else:
        result.assert_outcomes(passed=7)


RESPX_TEST = """
import pytest

from kepler_async import AsyncKepler
from kepler_async.testing import LIVE_KEY


{mark}
async def test_an_unchanged_client_routed_by_respx(respx_mock, kepler_sim, virtual_time):
    kepler_sim.mock(respx_mock)  # https://api.keplerinsights.us -> the simulator
    async with AsyncKepler(LIVE_KEY) as kepler:  # no transport, no base_url, no policy
        score = await kepler.score("plaid.com")  # a cold run of 25-90 simulated seconds
    assert score.domain == "plaid.com"
    assert kepler_sim.counters.cold_runs_billed["plaid.com"] == 1
"""


@pytest.mark.parametrize("setup", ["pytest-asyncio strict", "anyio plugin"])
def test_respx_with_an_unchanged_client_takes_simulated_time_only(
    pytester: pytest.Pytester, setup: str
) -> None:
    """An ``AsyncKepler()`` with the production poll policy (first poll after 32 s),
    routed to a simulator by respx: on virtual time its cold score takes no real wait
    (it took 30.6 s). The subprocess's time limit is a hang guard far above the
    second the run takes, below the 30 s one cold score took."""
    mark, args = SETUPS[setup]
    pytester.makepyfile(test_user=RESPX_TEST.replace("{mark}", mark))
    pytester.makeconftest(ANYIO_CONFTEST if setup == "anyio plugin" else PLUGIN_ONLY)
    result = pytester.runpytest_subprocess(
        "-W", "error", "-p", "no:cacheprovider", *args, timeout=20
    )
    result.assert_outcomes(passed=2 if setup == "anyio plugin" else 1)


def test_without_a_plugin_for_async_fixtures_the_message_says_what_to_do(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest('pytest_plugins = ["kepler_async.testing.fixtures"]\n')
    pytester.makepyfile(
        test_user="""
        def test_sync(kepler_client):
            pass
        """
    )
    result = pytester.runpytest_subprocess(*ASYNCIO, "-o", "asyncio_mode=strict")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*not an async test*"])


def test_the_readmes_test_examples_pass_under_pytest_asyncio(pytester: pytest.Pytester) -> None:
    """The README's pytest-asyncio and respx examples, copied as a user would."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "async def test_" in b]
    assert len(blocks) == 2
    for number, block in enumerate(blocks):
        pytester.makepyfile(**{f"test_readme_{number}": block})
    pytester.makeconftest('pytest_plugins = ["kepler_async.testing.fixtures"]\n')
    result = pytester.runpytest_subprocess(*ASYNCIO, "-o", "asyncio_mode=strict", "-W", "error")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("missing", ["starlette", "uvicorn"])
def test_the_testing_kit_without_its_extra_names_the_extra(missing: str) -> None:
    """``import kepler_async.testing`` without the ``sim`` extra says what to install
    (it failed deep inside with ``No module named 'starlette'``)."""
    blocked = f"import sys; sys.modules[{missing!r}] = None; import kepler_async.testing"
    run = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: kepler_async.testing needs the 'sim' extra")
    assert missing in last
    assert 'pip install "kepler-async[sim]"' in last

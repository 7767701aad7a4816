"""Every simulator answer validates against the vendor's OpenAPI file.

``tests/data/kepler-openapi.yaml`` is a copy of the vendor's spec. It is OpenAPI 3.1
but still uses 3.0's ``nullable: true``, which JSON Schema ignores; ``_openapi_nullable``
turns it into a real ``null`` type so documented nulls (``completed_at``...) validate.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from kepler_async.testing import (
    FREE_KEY,
    LIVE_KEY,
    OTHER_KEY,
    SANDBOX_KEY,
    SIM_BASE_URL,
    KeplerSimulator,
    ManualClock,
    asgi_transport,
)

SPEC_PATH = Path(__file__).parent.parent / "data" / "kepler-openapi.yaml"
SPEC_URI = "urn:kepler-openapi"
JOB = "9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f"


def _openapi_nullable(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _openapi_nullable(v) for k, v in node.items()}
        if node.pop("nullable", False):
            if "type" in node:
                node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
            if "$ref" in node or ("properties" in node and "type" not in node):
                node = {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_openapi_nullable(v) for v in node]
    return node


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = _openapi_nullable(yaml.safe_load(SPEC_PATH.read_text()))
    return loaded


def response_schema(spec: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    """The JSON schema the spec gives for ``method path`` answering ``status``."""
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            response = item[method.lower()]["responses"][str(status)]
            if "$ref" in response:
                name = response["$ref"].rsplit("/", 1)[-1]
                response = spec["components"]["responses"][name]
            return copy.deepcopy(response["content"]["application/json"]["schema"])
    raise AssertionError(f"{method} {path} is not in the spec")


def validate(spec: dict[str, Any], method: str, path: str, response: httpx.Response) -> None:
    schema = response_schema(spec, method, path, response.status_code)
    registry = Registry().with_resource(
        SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012)
    )

    def absolute(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (SPEC_URI + v if k == "$ref" and v.startswith("#") else absolute(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [absolute(v) for v in node]
        return node

    validator = jsonschema.Draft202012Validator(
        absolute(schema),
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.path))
    assert not errors, f"{method} {path} -> {response.status_code}: " + "; ".join(
        f"{list(e.path)}: {e.message}" for e in errors[:5]
    )


CASES: list[tuple[str, str, str, dict[str, Any] | None, int]] = [
    # key, method, path, JSON body or query, expected status
    (SANDBOX_KEY, "POST", "/v1/score", {"domain": "acme.test"}, 200),
    (LIVE_KEY, "POST", "/v1/score", {"domain": "cold-domain.com"}, 202),
    (LIVE_KEY, "POST", "/v1/score", {"domain": "fresh-domain.com"}, 200),
    (LIVE_KEY, "POST", "/v1/score", {}, 400),
    (FREE_KEY, "POST", "/v1/score", {"domain": "cold-domain.com"}, 403),
    ("ki_live_nobody", "POST", "/v1/score", {"domain": "a.com"}, 401),
    (SANDBOX_KEY, "GET", "/v1/score/unicorn.test", None, 200),
    (LIVE_KEY, "GET", "/v1/score/fresh-domain.com", None, 200),
    (LIVE_KEY, "GET", "/v1/score/never-scored.com", None, 404),
    (SANDBOX_KEY, "GET", "/v1/score/acme.test/history", {"limit": "3"}, 200),
    (LIVE_KEY, "GET", "/v1/score/fresh-domain.com/history", None, 200),
    (SANDBOX_KEY, "GET", "/v1/company/cohort.test/cohort", None, 200),
    (LIVE_KEY, "GET", "/v1/company/fresh-domain.com/cohort", None, 200),
    (LIVE_KEY, "GET", "/v1/company/never-scored.com/cohort", None, 404),
    (SANDBOX_KEY, "GET", "/v1/company/struggling.test/confidence", None, 200),
    (LIVE_KEY, "GET", "/v1/company/fresh-domain.com/confidence", None, 200),
    (LIVE_KEY, "GET", "/v1/company/never-scored.com/confidence", None, 404),
    (SANDBOX_KEY, "GET", "/v1/distribution", None, 200),
    (LIVE_KEY, "GET", "/v1/distribution", None, 200),
    (SANDBOX_KEY, "GET", "/v1/movers", {"window": "7d"}, 200),
    (LIVE_KEY, "GET", "/v1/movers", {"window": "90d"}, 200),
    (LIVE_KEY, "GET", "/v1/movers", {"window": "1y"}, 400),
    (SANDBOX_KEY, "GET", "/v1/signals", None, 200),
    (LIVE_KEY, "GET", "/v1/usage", None, 200),
    (SANDBOX_KEY, "GET", "/v1/usage", None, 200),
    (FREE_KEY, "GET", "/v1/usage", None, 200),
    (LIVE_KEY, "GET", f"/v1/jobs/{JOB}", None, 404),
    ("ki_live_nobody", "GET", "/v1/usage", None, 401),
]


@pytest.mark.parametrize(
    ("api_key", "method", "path", "payload", "status"),
    CASES,
    ids=[f"{c[1]} {c[2]} {c[4]} {c[0][:7]}" for c in CASES],
)
@pytest.mark.asyncio
async def test_simulator_answers_match_the_spec(spec, api_key, method, path, payload, status):
    sim = KeplerSimulator(seed=1, clock=ManualClock())
    sim.seed_score("fresh-domain.com", age=60)
    sim.seed_score("fresh-domain.com", age=45 * 86400)
    async with httpx.AsyncClient(
        transport=asgi_transport(sim), base_url=SIM_BASE_URL, headers={"X-API-Key": api_key}
    ) as http:
        if method == "POST":
            response = await http.post(path, json=payload)
        else:
            response = await http.get(path, params=payload)
    assert response.status_code == status, response.text
    validate(spec, method, path, response)


@pytest.mark.asyncio
async def test_job_bodies_match_the_spec_in_every_state(spec) -> None:
    clock = ManualClock()
    sim = KeplerSimulator(seed=1, clock=clock)
    sim.script("ok.com", duration=30)
    sim.script("bad.com", failure_reason="scoring_completed_no_record", duration=30)
    async with httpx.AsyncClient(
        transport=asgi_transport(sim), base_url=SIM_BASE_URL, headers={"X-API-Key": LIVE_KEY}
    ) as http:
        ids = []
        for domain in ("ok.com", "bad.com"):
            accepted = await http.post("/v1/score", json={"domain": domain})
            validate(spec, "POST", "/v1/score", accepted)
            ids.append(accepted.json()["job_id"])
        seen = set()
        for advance in (0, 31):
            clock.advance(advance)
            for job_id in ids:
                response = await http.get(f"/v1/jobs/{job_id}")
                validate(spec, "GET", f"/v1/jobs/{job_id}", response)
                seen.add(response.json()["status"])
        assert seen == {"pending", "complete", "failed"}
        foreign = await http.get(f"/v1/jobs/{ids[0]}", headers={"X-API-Key": OTHER_KEY})
        assert foreign.status_code == 403
        validate(spec, "GET", f"/v1/jobs/{ids[0]}", foreign)


@pytest.mark.asyncio
async def test_rate_limited_answers_match_the_spec(spec) -> None:
    sim = KeplerSimulator(seed=1, clock=ManualClock(), per_key_cold_per_hour=1)
    async with httpx.AsyncClient(
        transport=asgi_transport(sim), base_url=SIM_BASE_URL, headers={"X-API-Key": LIVE_KEY}
    ) as http:
        await http.post("/v1/score", json={"domain": "a.com"})
        limited = await http.post("/v1/score", json={"domain": "b.com"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    validate(spec, "POST", "/v1/score", limited)

"""The sandbox shortener's answers, success and error, validated against Shlink's published OpenAPI.

The spec (tests/data/shlink/openapi-v5.0.2.json, Shlink's own inlined release
file) is the only source of the expected shapes: openapi-core finds the
operation by method and path, the response by status and media type, and
validates the body against its schema.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_core import Config, OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse

from labkit.params import Lab
from labkit.sandbox import Sandbox
from labkit.secrets import SecretRef, resolve

SPEC = Path(__file__).resolve().parent.parent / "data" / "shlink" / "openapi-v5.0.2.json"

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    """The published contract; problem+json bodies are JSON (openapi-core needs telling)."""
    config = Config(extra_media_type_deserializers={"application/problem+json": json.loads})
    return OpenAPI.from_file_path(str(SPEC), config=config)


@pytest.fixture(scope="module")
def api(sandbox: Sandbox, sandbox_lab: Lab) -> Iterator[httpx.Client]:
    """A raw httpx client with the sandbox's API key (raw: the contract is about the wire)."""
    key_file = sandbox_lab.shlink.api_key.file
    assert key_file is not None
    key = resolve(SecretRef(file=sandbox_lab.path(key_file)))
    with httpx.Client(
        base_url=sandbox_lab.shlink.base_url, headers={"X-Api-Key": key.reveal()}, timeout=10
    ) as client:
        yield client


def validate(spec: OpenAPI, response: httpx.Response, content_type: str | None = None) -> None:
    """Raise unless ``response`` is what the spec documents for its request."""
    request = response.request
    mock_request = MockRequest(
        "https://s.lab",
        request.method,
        request.url.path,
        args=dict(request.url.params),
        headers=dict(request.headers),
        data=request.content,
    )
    mock_response = MockResponse(
        response.content,
        response.status_code,
        headers=dict(response.headers),
        content_type=content_type or response.headers.get("content-type", ""),
    )
    spec.validate_response(mock_request, mock_response)


def _slug() -> str:
    return f"contract-{secrets.token_hex(4)}"


@pytest.fixture
def short_url(api: httpx.Client) -> Iterator[dict[str, Any]]:
    """A fresh short URL with tags and a visit limit, deleted afterwards."""
    response = api.post(
        "/rest/v3/short-urls",
        json={"longUrl": "https://example.com/contract", "customSlug": _slug(), "tags": ["a"]},
    )
    assert response.status_code == 200, response.text
    created = response.json()
    yield created
    api.delete(f"/rest/v3/short-urls/{created['shortCode']}")


def test_create_answers_the_documented_short_url_object(spec: OpenAPI, api: httpx.Client) -> None:
    response = api.post(
        "/rest/v3/short-urls",
        json={
            "longUrl": "https://example.com/c",
            "customSlug": _slug(),
            "tags": ["x"],
            "validUntil": "2099-01-01T00:00:00+00:00",
            "maxVisits": 10,
        },
    )
    assert response.status_code == 200
    validate(spec, response)
    assert response.json()["meta"]["maxVisits"] == 10


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/rest/v3/short-urls/{code}", 200),
        ("/rest/v3/short-urls/{code}/visits", 200),
        ("/rest/v3/short-urls", 200),
        ("/rest/v2/short-urls/{code}", 200),
    ],
)
def test_reads_match_the_spec(
    spec: OpenAPI, api: httpx.Client, short_url: dict[str, Any], path: str, code: int
) -> None:
    api.get(f"/{short_url['shortCode']}")  # one visit, so the visit list is not empty
    response = api.get(path.format(code=short_url["shortCode"]))
    assert response.status_code == code
    validate(spec, response)


def test_edit_and_delete_match_the_spec(
    spec: OpenAPI, api: httpx.Client, short_url: dict[str, Any]
) -> None:
    code = short_url["shortCode"]
    edited = api.patch(f"/rest/v3/short-urls/{code}", json={"longUrl": "https://example.org"})
    assert edited.status_code == 200
    validate(spec, edited)
    deleted = api.delete(f"/rest/v3/short-urls/{code}")
    assert deleted.status_code == 204
    validate(spec, deleted)


def test_redirect_is_the_documented_302(
    spec: OpenAPI, api: httpx.Client, short_url: dict[str, Any]
) -> None:
    response = api.get(f"/{short_url['shortCode']}")
    assert response.status_code == 302
    validate(spec, response)
    assert response.headers["location"] == short_url["longUrl"]


def test_health_body_matches_the_spec(spec: OpenAPI, api: httpx.Client) -> None:
    response = api.get("/rest/health")
    assert response.status_code == 200
    # Shlink sends application/health+json (HealthAction.php); its spec lists the body under
    # application/json. Assert the real header, validate the body against the spec's schema.
    assert response.headers["content-type"] == "application/health+json"
    validate(spec, response, content_type="application/json")
    assert response.json()["status"] == "pass"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "problem"),
    [
        (
            "POST",
            "/rest/v3/short-urls",
            {"longUrl": "https://e.com", "maxVisits": -1},
            400,
            "invalid-data",
        ),
        (
            "POST",
            "/rest/v3/short-urls",
            {"longUrl": "https://e.com", "validSince": "soon"},
            400,
            "invalid-data",
        ),
        ("GET", "/rest/v3/short-urls/no-such-code", None, 404, "short-url-not-found"),
        ("PATCH", "/rest/v3/short-urls/no-such-code", {"title": "t"}, 404, "short-url-not-found"),
        ("PATCH", "/rest/v3/short-urls/{code}", {"maxVisits": "many"}, 400, "invalid-data"),
        ("DELETE", "/rest/v3/short-urls/no-such-code", None, 404, "short-url-not-found"),
        ("GET", "/rest/v3/short-urls/no-such-code/visits", None, 404, "short-url-not-found"),
    ],
)
def test_errors_are_the_documented_problems(
    spec: OpenAPI,
    api: httpx.Client,
    short_url: dict[str, Any],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    problem: str,
) -> None:
    response = api.request(method, path.format(code=short_url["shortCode"]), json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    validate(spec, response)
    assert response.json()["type"] == f"https://shlink.io/api/error/{problem}"


def test_duplicate_slug_is_the_documented_non_unique_slug(
    spec: OpenAPI, api: httpx.Client, short_url: dict[str, Any]
) -> None:
    response = api.post(
        "/rest/v3/short-urls",
        json={"longUrl": "https://example.com/other", "customSlug": short_url["shortCode"]},
    )
    assert response.status_code == 400
    validate(spec, response)
    assert response.json()["type"] == "https://shlink.io/api/error/non-unique-slug"
    assert response.json()["customSlug"] == short_url["shortCode"]


@pytest.mark.parametrize(
    ("key", "problem"), [(None, "missing-authentication"), ("wrong-key", "invalid-api-key")]
)
def test_authentication_errors_match_the_spec(
    spec: OpenAPI, sandbox_lab: Lab, key: str | None, problem: str
) -> None:
    headers = {"X-Api-Key": key} if key else {}
    with httpx.Client(base_url=sandbox_lab.shlink.base_url, timeout=10) as client:
        response = client.get("/rest/v3/short-urls", headers=headers)
    assert response.status_code == 401
    validate(spec, response)
    assert response.json()["type"] == f"https://shlink.io/api/error/{problem}"


def test_validator_rejects_a_response_missing_required_fields(spec: OpenAPI) -> None:
    """The validator itself can fail: a ShortUrl without its required fields is refused."""
    request = httpx.Request("GET", "http://127.0.0.1/rest/v3/short-urls/abc")
    truncated = httpx.Response(
        200, json={"shortCode": "abc", "longUrl": "https://e.com"}, request=request
    )
    with pytest.raises(OpenAPIError, match="not valid"):
        validate(spec, truncated)

"""A small Shlink REST API v3 client over httpx, following Shlink's published OpenAPI contract.

Errors are translated here, once: an HTTP error answer becomes ``ShlinkError``
carrying the problem+json ``type``, ``status`` and ``detail``; a transport
failure becomes ``ConnectError``. The API key is sent only as the
``X-Api-Key`` header and never appears in a message.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from labkit.errors import ConnectError, LabkitError
from labkit.params import Lab
from labkit.secrets import Secret, redact

__all__ = ["ShlinkClient", "ShlinkError"]

_API = "/rest/v3"


class ShlinkError(LabkitError):
    """Shlink answered with an error: ``status``, problem ``type`` (a URI) and ``detail``."""

    def __init__(
        self, method: str, url: str, status: int, type_: str, detail: str, body: Any = None
    ) -> None:
        self.status = status
        self.type = type_
        self.detail = detail
        self.body = body
        kind = type_.rsplit("/", 1)[-1] if type_ else "no problem type"
        super().__init__(
            redact(f"{method} {url} answered {status} ({kind}): {detail}; {_hint(status, kind)}")
        )


def _hint(status: int, kind: str) -> str:
    if kind in {"invalid-api-key", "missing-authentication"}:
        return "check the API key the params point at (shlink.api_key)"
    if status == 404:
        return "the short code does not exist (deleted, or created on another instance)"
    if status >= 500:
        return "the service is unhealthy: check GET /rest/health and its database"
    return "see the detail for the field at fault"


class ShlinkClient:
    """Shlink's REST API: health, create/get/edit/delete/list short URLs, visits, resolve."""

    def __init__(self, base_url: str, api_key: Secret, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            follow_redirects=False,
            # Never through a proxy from the environment (HTTP_PROXY...): the allow-list
            # vouches for the target, and the API key must go nowhere else.
            trust_env=False,
            headers={
                "X-Api-Key": api_key.reveal(),
                "Accept": "application/json",
                "User-Agent": "labkit-shlink-client",
            },
        )

    @classmethod
    def from_lab(cls, lab: Lab, timeout_s: float = 10.0) -> ShlinkClient:
        """A client for ``lab.shlink``; NotAllowed when its host is outside the allow-list."""
        host = urlsplit(lab.shlink.base_url).hostname or ""
        lab.require_allowed(host)
        return cls(lab.shlink.base_url, lab.secret(lab.shlink.api_key), timeout_s)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ConnectError(
                f"{method} {self.base_url}{path}: {type(exc).__name__}: {exc}; "
                "is the service running? (sandbox: labkit sandbox status)"
            ) from exc
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error(method, f"{self.base_url}{path}", response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def health(self) -> dict[str, Any]:
        """GET /rest/health as a dict; a 503 ``fail`` answer is returned, not raised."""
        response = self._request("GET", "/rest/health")
        if response.status_code not in {200, 503}:
            raise _error("GET", f"{self.base_url}/rest/health", response)
        body: dict[str, Any] = response.json()
        return {**body, "httpStatus": response.status_code}

    def create(
        self,
        long_url: str,
        *,
        custom_slug: str | None = None,
        tags: list[str] | None = None,
        find_if_exists: bool = False,
        valid_until: str | None = None,
        max_visits: int | None = None,
    ) -> dict[str, Any]:
        """POST /short-urls: the created (or, with ``find_if_exists``, existing) short URL."""
        body: dict[str, Any] = {"longUrl": long_url}
        optional = {
            "customSlug": custom_slug,
            "tags": tags,
            "validUntil": valid_until,
            "maxVisits": max_visits,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        if find_if_exists:
            body["findIfExists"] = True
        result: dict[str, Any] = self._call("POST", f"{_API}/short-urls", json=body)
        return result

    def get(self, short_code: str) -> dict[str, Any]:
        """GET /short-urls/{shortCode}."""
        result: dict[str, Any] = self._call("GET", f"{_API}/short-urls/{short_code}")
        return result

    def edit(self, short_code: str, **fields: Any) -> dict[str, Any]:
        """PATCH /short-urls/{shortCode} with API field names (``longUrl=...``)."""
        result: dict[str, Any] = self._call("PATCH", f"{_API}/short-urls/{short_code}", json=fields)
        return result

    def delete(self, short_code: str) -> None:
        """DELETE /short-urls/{shortCode} (204)."""
        self._call("DELETE", f"{_API}/short-urls/{short_code}")

    def list(self, page: int = 1, items_per_page: int = 10) -> dict[str, Any]:
        """GET /short-urls: ``{"shortUrls": {"data": [...], "pagination": {...}}}``."""
        params = {"page": page, "itemsPerPage": items_per_page}
        result: dict[str, Any] = self._call("GET", f"{_API}/short-urls", params=params)
        return result

    def visits(self, short_code: str) -> dict[str, Any]:
        """GET /short-urls/{shortCode}/visits: ``{"visits": {"data": [...], ...}}``."""
        result: dict[str, Any] = self._call("GET", f"{_API}/short-urls/{short_code}/visits")
        return result

    def resolve(self, short_code: str) -> httpx.Response:
        """GET /{shortCode} without following the redirect (inspect status and Location)."""
        return self._request("GET", f"/{short_code}")

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> ShlinkClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ShlinkClient({self.base_url!r})"


def _error(method: str, url: str, response: httpx.Response) -> ShlinkError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = str(body.get("detail") or body.get("title") or "")
        problem_type = str(body.get("type") or "")
    else:
        detail = response.text[:200].strip() or response.reason_phrase
        problem_type = ""
    return ShlinkError(method, url, response.status_code, problem_type, detail, body)

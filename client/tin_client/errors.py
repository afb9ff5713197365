"""The one exception the client raises for an HTTP error: the RFC 9457 problem body, parsed."""

from __future__ import annotations

from typing import Any

import httpx


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (the services send delta-seconds), or None."""
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class ApiError(Exception):
    """A 4xx/5xx answer. ``status``, ``title``, ``detail``, ``type`` come from the problem body
    (``application/problem+json``); ``invalid_fields`` from its ``errors`` list (422);
    ``retry_after_s`` from its ``Retry-After`` header (429, 503)."""

    def __init__(
        self,
        status: int,
        body: dict[str, Any],
        method: str = "",
        url: str = "",
        retry_after_s: float | None = None,
    ):
        self.status = status
        self.retry_after_s = retry_after_s
        self.body = body
        self.title: str = body.get("title") or httpx.codes.get_reason_phrase(status)
        self.detail: str | None = body.get("detail")
        self.type: str | None = body.get("type")
        self.invalid_fields: list[str] = [
            e["field"] for e in body.get("errors") or [] if isinstance(e, dict) and "field" in e
        ]
        self.request = f"{method} {url}".strip()
        super().__init__(f"{status} {self.title}" + (f": {self.detail}" if self.detail else ""))

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text[:500] or None}
        if not isinstance(body, dict):
            body = {"detail": str(body)[:500]}
        request = response.request
        return cls(
            response.status_code, body, request.method, str(request.url), retry_after_s(response)
        )

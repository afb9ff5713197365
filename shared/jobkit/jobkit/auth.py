"""Optional bearer-token check for the protected routes (health endpoints stay open).

require_token = bearer_token_dependency(settings)
app.include_router(jobs_router, dependencies=[Depends(require_token)])
"""

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from jobkit.problems import ProblemError, problem_type
from jobkit.settings import ServiceSettings

SettingsSource = ServiceSettings | Callable[[], ServiceSettings]


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401,
        "Unauthorized",
        detail,
        type_=problem_type("unauthorized"),
        headers={"WWW-Authenticate": "Bearer"},
    )


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of two tokens."""
    return secrets.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def bearer_token_dependency(settings: SettingsSource) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency enforcing ``Authorization: Bearer <settings.api_token>``.

    ``settings`` is a settings object or a zero-argument callable returning one (read on each
    request). When ``api_token`` is unset (or empty) every request passes; otherwise a missing
    or wrong token gets a 401 problem with ``WWW-Authenticate: Bearer``.
    """
    scheme = HTTPBearer(auto_error=False, description="The service's API token.")

    async def require_bearer_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)],
    ) -> None:
        current = settings() if callable(settings) else settings
        token = current.api_token
        expected = token.get_secret_value() if token is not None else ""
        if not expected:
            return
        if credentials is None or not credentials.credentials:
            raise _unauthorized("Missing 'Authorization: Bearer <token>' header.")
        if not token_matches(credentials.credentials, expected):
            raise _unauthorized("Invalid bearer token.")

    return require_bearer_token

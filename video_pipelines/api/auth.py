"""Who calls: `Authorization: Bearer <api key>` -> the key's tenant, then its rate limit, as a dependency.
The key itself is never logged or echoed."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from video_pipelines.api.problems import ApiProblem
from video_pipelines.api.state import ApiState, api_state
from video_pipelines.executions import Caller

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key made with `video-pipelines api-keys create --name NAME [--tenant T]`.",
)

MISSING_KEY = (
    "this call needs an API key: send Authorization: Bearer <key> "
    "(keys are made with `video-pipelines api-keys create --name NAME`)"
)
BAD_KEY = "the API key is not valid (unknown or revoked)"


def authenticated(
    state: Annotated[ApiState, Depends(api_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The caller of an `/api/...` request: its key's tenant (raises the 401 or 429 problem)."""
    if credentials is None or not credentials.credentials:
        raise ApiProblem(401, MISSING_KEY, headers={"WWW-Authenticate": "Bearer"})
    key = state.keys.authenticate(credentials.credentials)
    if key is None:
        raise ApiProblem(401, BAD_KEY, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if state.limiter is not None:
        wait = state.limiter.take(key.key_id)
        if wait is not None:
            assert state.settings.rate_limit is not None
            limit = state.settings.rate_limit
            raise ApiProblem(
                429,
                f"this API key made more than {limit.requests} requests in {limit.period_seconds:g} s; "
                f"try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )
    return Caller(key.tenant)


CallerDep = Annotated[Caller, Depends(authenticated)]

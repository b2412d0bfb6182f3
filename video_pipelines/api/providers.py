"""`POST /api/providers/{provider}/webhook`: a provider says one of our jobs ended, and its parked execution goes on.

No API key: the provider proves itself with its own signature (`providers.callbacks`). The answer is 200 for every
verified call, also one about a job no node waits on (the provider would otherwise retry it for a day).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from video_pipelines.api.models import Problem, ProviderCallbackAnswer
from video_pipelines.api.problems import ApiProblem
from video_pipelines.api.routes import ApiState, StateDep, read_body
from video_pipelines.executions.parking import continue_parked
from video_pipelines.providers.callbacks import CallbackRefused, JobNews, UnknownCaller, job_news
from video_pipelines.submissions import ProviderWaits

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 1024 * 1024  # a prediction with its output URLs and logs

router = APIRouter()


@router.post(
    "/api/providers/{provider}/webhook",
    name="provider_webhook",
    summary="A provider's call when one of our jobs ends (verified with its signature)",
    responses={
        400: {"model": Problem, "description": "The body cannot be read."},
        401: {"model": Problem, "description": "The call is not verified as the provider's."},
        404: {"model": Problem, "description": "No webhooks are taken from this provider."},
        413: {"model": Problem, "description": "The body is larger than the server's limit."},
    },
)
async def provider_webhook(provider: str, request: Request, state: StateDep) -> ProviderCallbackAnswer:
    body = await read_body(request, MAX_CALLBACK_BYTES)
    try:
        # In a thread: fal's verifier may fetch its keys (a blocking HTTP call) the first time or on rotation.
        news = await run_in_threadpool(job_news, provider, body, request.headers, request.query_params)
    except UnknownCaller as exc:
        raise ApiProblem(404, str(exc)) from None
    except CallbackRefused as exc:
        log.warning("%s", exc)
        raise ApiProblem(401, str(exc)) from None
    execution_id = await run_in_threadpool(_land, state, news)
    return ProviderCallbackAnswer(job_id=news.job_id, ended=news.ended, execution_id=execution_id)


def _land(state: ApiState, news: JobNews) -> str | None:
    """Mark the job's wait finished and ask for its execution's continuation; the execution that waits on it."""
    waits = ProviderWaits(state.store)
    wait = waits.get(news.provider, news.job_id)
    if wait is None:
        return None
    if news.ended:
        waits.finish(news.provider, news.job_id)  # the poller may have been first: the continuation is asked anyway
        continue_parked(state.records, state.store, wait.execution_id)
    return wait.execution_id

"""The `provider_waits` sensor: parked executions go on when their provider job ends, or end at their deadline.

With `VIDEO_PIPELINES_PUBLIC_URL` set, providers call the API and this sensor is the safety net for a webhook
that never came; without it, this sensor is how a job is found finished. What it does is `executions.parking`.
"""

from __future__ import annotations

import logging
import time

import dagster as dg

from video_pipelines.executions.parking import PollReport, poll_waits
from video_pipelines.orchestration.resources.artifacts import SubmissionStoreResource
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.orchestration.sensors import ticks
from video_pipelines.submissions.waits import POLL_SECONDS_ENV

SWEEP_SECONDS = 5.0


def _log(log: logging.Logger, report: PollReport) -> None:
    for label in report.finished:
        log.info(f"{label} ended")
    for execution_id in report.continued:
        log.info(f"{execution_id}: its continuation is asked for")
    for execution_id, why in report.ended.items():
        log.warning(f"{execution_id}: {why}")
    for label in report.canceled:
        log.info(f"{label} canceled at the provider")
    for error in report.errors:
        log.warning(f"could not check {error}; checked again later")


@dg.sensor(
    name="provider_waits",
    description=(
        "Follows the provider jobs that parked executions wait on: checks those due (every "
        f"{POLL_SECONDS_ENV}), asks for the continuation of an execution whose job ended, ends one whose deadline "
        "passed while parked, and cancels the jobs nobody will collect. One look per tick (every 1 s by "
        "`video-pipelines daemon`): a provider's webhook asks for the continuation itself."
    ),
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def provider_waits(context: dg.SensorEvaluationContext, submissions: SubmissionStoreResource) -> dg.SensorResult:
    # The sweep (deadlines, executions ended another way) reads each parked execution: every SWEEP_SECONDS.
    last_sweep = float(context.cursor) if context.cursor else 0.0
    sweep = time.time() - last_sweep >= SWEEP_SECONDS
    report = poll_waits(DagsterRunRecords(context.instance), submissions.store(), sweep=sweep)
    _log(context.log, report)
    return dg.SensorResult(skip_reason=_reason(report), cursor=str(time.time()) if sweep else context.cursor)


def _reason(report: PollReport) -> dg.SkipReason:
    ended = [f"{execution_id} ({why})" for execution_id, why in report.ended.items()]
    return ticks.reason(
        [
            f"provider jobs ended: {ticks.listed(report.finished)}" if report.finished else "",
            f"continuation asked for: {ticks.listed(report.continued)}" if report.continued else "",
            f"ended while parked: {ticks.listed(ended)}" if ended else "",
            f"canceled at the provider: {ticks.listed(report.canceled)}" if report.canceled else "",
            f"could not check, checked again later: {ticks.listed(report.errors)}" if report.errors else "",
        ],
        idle=f"{report.checked} waiting job(s) checked, none ended" if report.checked else "no provider job due",
    )

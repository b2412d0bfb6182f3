"""Retrying an execution, and re-executing its run from failure, with `execute_plan` on a real SQLite instance.

Runs are launched the way the daemon launches them: the plan sensor is evaluated, and each
run request's run is executed in this process on the same instance, with its run config and
tags; a later look of the sensor marks it launched. The voice track is served by a real HTTP
server on 127.0.0.1 that answers 503 until the test lets it through.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._grpc.server import DagsterApiServer

from video_pipelines.doors import cli, client
from video_pipelines.errors import ExecutionError
from video_pipelines.executions import RunState, execution_status
from video_pipelines.nodes import retries
from video_pipelines.operations.checks import CheckName
from video_pipelines.operations.ffmpeg import probe
from video_pipelines.orchestration.definitions import execute_plan_job
from video_pipelines.orchestration.resources.artifacts import SubmissionStoreResource
from video_pipelines.orchestration.run_records import DagsterRunRecords, run_view
from video_pipelines.orchestration.sensors.plans import evaluate_submissions, resume_lost_runs, submitted_plans
from video_pipelines.submissions import AttemptState, AttemptStore, SubmissionState

from ..conftest import UNAVAILABLE, VOICE, MediaServer
from ..media import dominant_frequency, local_path_of, pcm_mono


def voiced_plan(audio_url: str) -> dict[str, Any]:
    return {
        "jobs": [
            {"id": "gen", "type": "generateVideo", "params": {"prompt": "a fox", "duration": 1, "resolution": 64}},
            {"id": "voice", "type": "lipSync", "params": {"audioUrl": audio_url, "provider": "local"},
             "dependsOn": ["gen"]},
        ]
    }  # fmt: skip


@pytest.fixture
def target(dagster_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[client.Deployment]:
    for name in ("VIDEO_PIPELINES_API_URL", "VIDEO_PIPELINES_API_KEY"):
        monkeypatch.delenv(name, raising=False)  # the client's calls go to this local deployment
    with client.deployment() as deployment:
        yield deployment


def sensor_tick(target: client.Deployment) -> list[dg.RunRequest]:
    """One evaluation of the plan sensor, as the daemon runs it (the store opened for it and closed after)."""
    with dg.build_sensor_context(
        instance=target.instance, resources={"submissions": SubmissionStoreResource()}
    ) as context:
        result = submitted_plans(context)
    assert isinstance(result, dg.SensorResult)
    return list(result.run_requests or [])


def launch(target: client.Deployment, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """The run the daemon launches for `request`, executed here, then marked launched by the sensor's next look."""
    result = execute_plan_job().execute_in_process(
        run_config=request.run_config,
        tags={**request.tags, "dagster/run_key": str(request.run_key)},
        instance=target.instance,
        raise_on_error=False,
    )
    assert evaluate_submissions(target.store, target.instance).run_requests == []  # nothing launched twice
    return result


def succeeded_steps(result: dg.ExecuteInProcessResult) -> set[str]:
    return {str(event.step_key) for event in result.all_events if event.is_step_success}


def materialized(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """Each node recorded in the run: node id -> its materialization's metadata values."""
    events = result.get_asset_materialization_events()
    metadatas = [event.step_materialization_data.materialization.metadata for event in events]
    return {
        str(metadata["node_id"].value): {key: value.value for key, value in metadata.items()} for metadata in metadatas
    }


def failed_first_run(target: client.Deployment, voice: MediaServer) -> tuple[str, dg.ExecuteInProcessResult]:
    """Submit the voiced plan and run it while its voice track answers 503: it fails after its transient retries."""
    execution_id = client.submit(voiced_plan(voice.url(VOICE)), target=target)
    [request] = sensor_tick(target)
    assert request.run_key == execution_id
    first = launch(target, request)
    assert not first.success
    logs = target.instance.all_logs(first.run_id)
    retried = [entry.step_key for entry in logs if "transient failure, attempt" in entry.user_message]
    assert retried == ["node[voice]"] * retries.MAX_RETRIES  # inside its step
    assert len(UNAVAILABLE) - len(voice.fail_next[VOICE]) == retries.MAX_RETRIES + 1  # every attempt got a 503
    assert set(materialized(first)) == {"gen"}
    submission = target.store.get(execution_id)
    assert submission is not None and (submission.state, submission.run_id) == (SubmissionState.LAUNCHED, first.run_id)
    return execution_id, first


def test_a_failed_execution_is_retried_and_its_completed_node_does_not_run_again(
    target: client.Deployment, voice: MediaServer, quick_retries: None
) -> None:
    execution_id, first = failed_first_run(target, voice)
    failed = client.status(execution_id, target=target)
    assert (failed["status"], failed["runId"], failed["attempt"]) == ("failed", first.run_id, 1)
    assert failed["error"].startswith(f"voice (lipSync) failed after {retries.MAX_RETRIES + 1} attempts")
    assert "503" in failed["error"]
    assert (failed["jobs"]["gen"]["status"], failed["jobs"]["voice"]["status"]) == ("completed", "failed")

    # The run status sensor of a deployment sees the failure: not a lost worker, so it resumes nothing.
    [record] = target.instance.get_records_for_run(first.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    assert record.event_log_entry.dagster_event is not None
    with dg.build_run_status_sensor_context(
        sensor_name="resume_lost_runs",
        dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=target.instance,
        dagster_run=first.dagster_run,
        resources={"submissions": SubmissionStoreResource()},
    ) as context:
        resume_lost_runs(context)
    assert AttemptStore(target.store).of_execution(execution_id) == []

    pending = client.retry(execution_id, target=target)
    assert (pending["status"], pending["error"], pending["runId"]) == ("pending", None, first.run_id)
    attempt = AttemptStore(target.store).get(execution_id, 2)
    assert attempt is not None and (attempt.state, attempt.reason.value, attempt.previous_run_id) == (
        AttemptState.PENDING, "retry", first.run_id
    )  # fmt: skip
    assert client.retry(execution_id, target=target)["status"] == "pending"  # asked twice: still one attempt
    assert AttemptStore(target.store).of_execution(execution_id) == [attempt]

    voice.fail_next.pop(VOICE)  # the voice track is served from now on
    [request] = sensor_tick(target)
    assert request.run_key == f"{execution_id}:attempt-2"
    assert {key: request.tags.get(key) for key in ("video/execution_id", "video/attempt", "video/attempt_reason")} == {
        "video/execution_id": execution_id, "video/attempt": "2", "video/attempt_reason": "retry"
    }  # fmt: skip
    assert request.tags["video/previous_run_id"] == first.run_id
    assert not [key for key in request.tags if key.startswith("video/provider_job/")]  # a retry resumes no job

    second = launch(target, request)
    assert second.success
    launched = AttemptStore(target.store).get(execution_id, 2)
    assert launched is not None and (launched.state, launched.run_id) == (AttemptState.LAUNCHED, second.run_id)
    steps = succeeded_steps(second)
    assert "node[gen]" not in steps and not any("[gen]" in step for step in steps)  # gen did not run again
    assert "node[voice]" in steps  # with gen carried, voice is the only node this run runs
    recorded = materialized(second)
    assert recorded["gen"]["status"] == "completed" and recorded["gen"]["carried_from_run"] == first.run_id
    assert recorded["gen"]["sha256"] == materialized(first)["gen"]["sha256"]  # the same video, not a new one
    assert recorded["voice"]["carried_from_run"] == ""

    final = client.status(execution_id, target=target)
    assert (final["status"], final["progress"], final["error"], final["runId"]) == (
        "completed", 100, None, second.run_id
    )  # fmt: skip
    assert {node: job["status"] for node, job in final["jobs"].items()} == {"gen": "completed", "voice": "completed"}
    # gen's media checks ran in the first run, where it was made; voice's in the second.
    assert final["jobs"]["gen"]["checks"] == failed["jobs"]["gen"]["checks"] != []
    assert [check["name"] for check in final["jobs"]["voice"]["checks"]] == [name.value for name in CheckName]
    assert final["attempt"] == 2
    assert final["attempts"] == [
        {"attempt": 1, "runId": first.run_id, "status": "failed", "reason": None},
        {"attempt": 2, "runId": second.run_id, "status": "completed", "reason": "retry"},
    ]
    video = local_path_of(final["result"]["url"])
    info = probe(video)
    assert abs(info.duration - 1.0) <= 0.2 and info.audio_codec == "aac"
    assert abs(dominant_frequency(pcm_mono(video)) - 440) < 20  # the voice track served after the flip

    with pytest.raises(ExecutionError, match=f"execution {execution_id} is completed; only a failed or canceled"):
        client.retry(execution_id, target=target)
    assert [a.number for a in AttemptStore(target.store).of_execution(execution_id)] == [2]


def test_the_retry_command(
    target: client.Deployment, voice: MediaServer, quick_retries: None, capsys: pytest.CaptureFixture[str]
) -> None:
    execution_id, first = failed_first_run(target, voice)
    capsys.readouterr()  # the run's own log lines
    assert cli.main(["retry", execution_id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["executionId"], shown["status"], shown["runId"]) == (execution_id, "pending", first.run_id)

    voice.fail_next.pop(VOICE)
    [request] = sensor_tick(target)
    assert launch(target, request).success
    capsys.readouterr()
    assert cli.main(["retry", execution_id]) == 1  # refused by its state (HTTP 409), not invalid input
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (
        f"error: execution {execution_id} is completed; only a failed or canceled execution can be retried"
    )
    assert cli.main(["retry", "exec_nope"]) == 2
    assert "no execution exec_nope" in capsys.readouterr().err


def test_a_run_re_executed_from_failure_completes_its_execution(
    target: client.Deployment, voice: MediaServer, quick_retries: None
) -> None:
    """The Dagster UI's "Re-execute from failure": a run of the parent's config and tags that skips gen's step."""
    execution_id, first = failed_first_run(target, voice)
    parent = target.instance.get_run_by_id(first.run_id)
    assert parent is not None and parent.tags["video/execution_id"] == execution_id

    voice.fail_next.pop(VOICE)
    # As `create_reexecuted_run` makes it for the UI (use_parent_run_tags): the parent's run config and tags.
    again = dg.execute_job(
        dg.reconstructable(execute_plan_job),
        instance=target.instance,
        run_config=parent.run_config,
        tags={key: value for key, value in parent.tags.items() if not key.startswith("dagster/")},
        reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, target.instance),
    )
    assert again.success
    steps = {event.step_key for event in again.all_events if event.is_step_success}
    assert "node[voice]" in steps and "node[gen]" not in steps and "plan" not in steps

    records = DagsterRunRecords(target.instance)
    assert set(records.node_records(again.run_id)) == {"voice"}  # gen's record lives in the first run only
    status = execution_status(records, target.store, execution_id)
    assert (status.state.value, status.run_id, status.progress, status.error) == (
        "completed", again.run_id, 100, None
    )  # fmt: skip
    assert {node_id: node.state.value for node_id, node in status.nodes.items()} == {
        "gen": "completed", "voice": "completed"
    }  # fmt: skip
    assert [(a.attempt, a.run_id, a.state.value, a.reason) for a in status.attempts] == [
        (1, first.run_id, "failed", None),
        (2, again.run_id, "completed", None),
    ]
    assert status.result is not None and probe(local_path_of(status.result.url)).audio_codec == "aac"
    assert execution_status(records, None, execution_id).state is status.state  # without the store too
    latest = records.find_run(execution_id)
    assert latest is not None and latest.state is RunState.SUCCESS


@pytest.mark.parametrize("reporter", [DagsterApiServer, None], ids=["as-the-code-server-reports-it", "unprefixed"])
def test_a_run_whose_process_the_code_server_saw_die_counts_as_a_lost_worker(
    dagster_home: Path, reporter: type[object] | None
) -> None:
    """The default launcher's way of losing a run: Dagster's code server reports its process's crash, then fails it."""
    from dagster._utils import get_run_crash_explanation

    with dg.DagsterInstance.get() as instance:
        records = DagsterRunRecords(instance)
        failed = execute_plan_job().execute_in_process(
            run_config={"ops": {"plan": {"config": {"jobs": []}}}}, instance=instance, raise_on_error=False
        )
        plain = records.find_run(failed.run_id)
        assert plain is not None and plain.state is RunState.FAILURE
        assert records.lost_worker(plain) is None  # an invalid plan is no lost worker

        run = instance.get_run_by_id(failed.run_id)
        assert run is not None
        explanation = get_run_crash_explanation(prefix=f"Run execution process for {run.run_id}", exit_code=-9)
        # The code server names itself: "[DagsterApiServer] Run execution process for ..."
        instance.report_engine_event(explanation, run, cls=reporter)
        lost = records.find_run(failed.run_id)
        assert lost is not None
        assert records.lost_worker(lost) == "the run worker process was terminated by signal 9 (SIGKILL)"


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        ("terminating connection due to administrator command\nserver closed the connection unexpectedly", True),
        ('connection to server at "127.0.0.1", port 5432 failed: Connection refused', True),
        ("canceling statement due to statement timeout", False),  # the database answered: not an outage
    ],
)
def test_a_step_that_lost_its_database_connection_counts_as_a_lost_worker(
    dagster_home: Path, error: str, lost: bool
) -> None:
    """A database restarted under a step fails it for the infrastructure: the execution is resumed, not failed."""
    import psycopg2

    @dg.op
    def node() -> None:
        try:
            raise psycopg2.OperationalError(error)
        except psycopg2.OperationalError as exc:  # as SQLAlchemy raises it: its error, caused by the driver's
            raise RuntimeError("(psycopg2.OperationalError) the statement failed") from exc

    with dg.DagsterInstance.get() as instance:
        result = (
            dg.GraphDefinition(name="g", node_defs=[node])
            .to_job()
            .execute_in_process(instance=instance, raise_on_error=False)
        )
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        found = DagsterRunRecords(instance).lost_worker(run_view(run))
        if lost:
            assert found == "the database connection was lost during step node (its event log has the error)"
            assert "127.0.0.1" not in found
        else:
            assert found is None

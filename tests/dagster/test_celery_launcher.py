"""The Celery topology's core: settings, priority order on both real brokers, the dead-worker check (a ping, or
on SQS a worker's beat), a cancel of a run still in the broker (Redis, and SQS on moto's server)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
from dagster._core.launcher import WorkerStatus
from dagster._core.test_utils import create_run_for_test
from dagster_celery.config import TASK_EXECUTE_JOB_NAME
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG
from dagster_celery.tasks import create_execute_job_task
from kombu.exceptions import OperationalError as BrokerError

from video_pipelines.deployment.workers import (
    BrokerKind,
    RunWorker,
    WorkerSettings,
    WorkerWatch,
    celery_priority,
    local_artifacts_warning,
)
from video_pipelines.errors import UsageError
from video_pipelines.executions import EXECUTION_ID_TAG, RunState, stop_run
from video_pipelines.executions.records import LOST_WORKER_TAG, WORKER_TAG
from video_pipelines.orchestration.job.ops import execute_plan
from video_pipelines.orchestration.run_records import DagsterRunRecords
from video_pipelines.orchestration.sensors import plans
from video_pipelines.orchestration.workers.celery_launcher import (
    VideoCeleryRunLauncher,
    make_celery_app,
    workers_answering,
)
from video_pipelines.submissions import SubmissionStore
from video_pipelines.submissions.worker_beats import BEAT_STALE_SECONDS, WorkerBeat, WorkerBeats
from video_pipelines.vocabulary import Priority

from ..conftest import free_port
from ..workers import AMQP_URL, REDIS_URL, SQS_URL, require_service, sqs_env


def test_priorities_keep_dagster_order_on_each_broker() -> None:
    high, normal, low = (p.dagster_priority for p in (Priority.HIGH, Priority.NORMAL, Priority.LOW))
    amqp = [celery_priority(p, BrokerKind.AMQP) for p in (high, normal, low)]
    redis = [celery_priority(p, BrokerKind.REDIS) for p in (high, normal, low)]
    assert amqp == [10, 5, 0]  # RabbitMQ: higher first, within x-max-priority 10
    assert redis == [0, 5, 9]  # kombu's Redis transport: lower first, steps 0..9
    assert celery_priority(1000, BrokerKind.AMQP) == 10 and celery_priority(-1000, BrokerKind.REDIS) == 9
    # SQS delivers in the order it received: no priority is sent (Dagster's run queue still orders runs).
    assert celery_priority(high, BrokerKind.SQS) is None


def test_settings_from_env() -> None:
    redis = WorkerSettings.from_env({"VIDEO_PIPELINES_BROKER_URL": REDIS_URL})
    assert redis.result_backend == REDIS_URL and redis.queue == "dagster"
    with pytest.raises(UsageError, match="no broker configured"):
        WorkerSettings.from_env({})
    with pytest.raises(UsageError, match="required with a RabbitMQ or SQS broker"):
        WorkerSettings.from_env({"VIDEO_PIPELINES_BROKER_URL": AMQP_URL})
    with pytest.raises(UsageError, match="which rpc:// cannot serve"):
        WorkerSettings.from_env({"VIDEO_PIPELINES_BROKER_URL": AMQP_URL, "VIDEO_PIPELINES_RESULT_BACKEND": "rpc://"})
    sqs = WorkerSettings.from_env({"VIDEO_PIPELINES_BROKER_URL": SQS_URL, "VIDEO_PIPELINES_RESULT_BACKEND": REDIS_URL})
    assert sqs.kind is BrokerKind.SQS and not sqs.kind.remote_control and sqs.result_backend == REDIS_URL
    with pytest.raises(UsageError, match="required with a RabbitMQ or SQS broker"):
        WorkerSettings.from_env({"VIDEO_PIPELINES_BROKER_URL": SQS_URL})
    database = {"VIDEO_PIPELINES_BROKER_URL": SQS_URL, "VIDEO_PIPELINES_RESULT_BACKEND": "db+postgresql://db/video"}
    assert WorkerSettings.from_env(database).result_backend == "db+postgresql+psycopg2://db/video"
    with pytest.raises(UsageError, match=r"must be redis://\.\.\., amqp://\.\.\. or sqs://"):
        WorkerSettings.from_env({"VIDEO_PIPELINES_BROKER_URL": "kafka://queue"})


def test_local_artifacts_warning_only_when_the_broker_is_elsewhere() -> None:
    local = WorkerSettings(REDIS_URL, REDIS_URL)
    remote = WorkerSettings("redis://broker.internal:6379/0", "redis://broker.internal:6379/0")
    assert local_artifacts_warning(local, None) is None
    assert local_artifacts_warning(remote, "s3://bucket/videos") is None
    warning = local_artifacts_warning(remote, "file:///srv/videos")
    assert warning is not None and "file:///srv/videos" in warning and "s3://" in warning
    # sqs:// names no host: AWS's SQS is elsewhere; an SQS-compatible server on loopback is not.
    sqs = WorkerSettings(SQS_URL, REDIS_URL)
    assert local_artifacts_warning(sqs, None) is not None
    assert local_artifacts_warning(sqs, None, "http://127.0.0.1:4566") is None


def test_watch_tolerates_one_missed_answer() -> None:
    now = [100.0]
    watch = WorkerWatch(clock=lambda: now[0])
    worker = RunWorker("w1@host", 4242)
    assert watch.missed("run", worker) is None
    watch.forget("run")  # an answer resets the count
    assert watch.missed("run", worker) is None
    now[0] += 20
    assert watch.missed("run", worker) == "run worker w1@host (pid 4242) is gone: no answer for 20 s"
    assert RunWorker.from_started_meta({"hostname": "w@h", "pid": 7}) == RunWorker("w@h", 7)
    assert RunWorker.from_started_meta(None) is None


def beat_at(name: str, seconds_ago: float) -> WorkerBeat:
    return WorkerBeat(name, ("dagster",), 1, ("task",), datetime.now(UTC) - timedelta(seconds=seconds_ago))


def test_on_sqs_a_worker_answers_by_a_fresh_beat(tmp_path: Any) -> None:
    app = make_celery_app(
        WorkerSettings.from_env({"VIDEO_PIPELINES_BROKER_URL": SQS_URL, "VIDEO_PIPELINES_RESULT_BACKEND": REDIS_URL})
    )
    with SubmissionStore(f"sqlite:///{tmp_path / 'store.db'}") as store:
        beats = WorkerBeats(store)
        assert workers_answering(app, BrokerKind.SQS, ["w1@host"], 1, beats) == set()
        beats.record(beat_at("w1@host", 0))
        beats.record(beat_at("w2@host", BEAT_STALE_SECONDS + 1))
        assert workers_answering(app, BrokerKind.SQS, ["w1@host", "w2@host", "other@host"], 1, beats) == {"w1@host"}
    app.close()


def _consumed_order(broker: str, backend: str) -> list[str]:
    """Publish low, normal, high through the launcher's app, then consume one at a time."""
    require_service(broker)
    settings = WorkerSettings(broker, backend, queue=f"test-{uuid.uuid4().hex[:10]}")
    app = make_celery_app(settings)
    order: list[str] = []
    queue = app.amqp.queues[settings.queue]
    try:
        with app.connection_for_write() as connection:
            queue.bind(connection.default_channel).declare()
            for name, priority in (("low", Priority.LOW), ("normal", Priority.NORMAL), ("high", Priority.HIGH)):
                app.send_task(
                    "execute_job",
                    args=(name,),
                    queue=settings.queue,
                    routing_key=f"{settings.queue}.execute_job",
                    priority=celery_priority(priority.dagster_priority, settings.kind),
                    connection=connection,
                )

            def take(body: Any, message: Any) -> None:
                order.append(body[0][0])
                message.ack()

            with connection.Consumer(queue, accept=["json"], callbacks=[take], prefetch_count=1):
                while len(order) < 3:
                    connection.drain_events(timeout=10)
            queue.bind(connection.default_channel).delete()
    finally:
        app.close()
    return order


@pytest.mark.parametrize("broker", [REDIS_URL, AMQP_URL], ids=["redis", "rabbitmq"])
def test_a_real_broker_delivers_high_before_normal_before_low(broker: str) -> None:
    require_service(REDIS_URL)
    assert _consumed_order(broker, REDIS_URL) == ["high", "normal", "low"]


def test_health_check_fails_a_run_whose_worker_does_not_answer(tmp_path: Any) -> None:
    require_service(REDIS_URL)
    queue = f"test-{uuid.uuid4().hex[:10]}"
    launcher = VideoCeleryRunLauncher(broker=REDIS_URL, default_queue=queue)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        launcher.register_instance(instance)
        task_id = str(uuid.uuid4())
        # What a worker's child stores as it starts a task (track_started): its node name and pid.
        launcher.celery.backend.store_result(task_id, {"hostname": "gone@nowhere", "pid": 4242}, "STARTED")
        run = create_run_for_test(instance, job_name="j", status=dg.DagsterRunStatus.STARTED)
        instance.add_run_tags(run.run_id, {DAGSTER_CELERY_TASK_ID_TAG: task_id})
        run = instance.get_run_by_id(run.run_id)
        assert run is not None
        first = launcher.check_run_worker_health(run)
        assert first.status is WorkerStatus.RUNNING  # one missed answer is tolerated
        second = launcher.check_run_worker_health(run)
        assert second.status is WorkerStatus.FAILED
        assert second.msg is not None and second.msg.startswith("run worker gone@nowhere (pid 4242) is gone")
        ended = instance.get_run_by_id(run.run_id)
        assert ended is not None and ended.status is dg.DagsterRunStatus.FAILURE
        launcher.celery.backend.forget(task_id)
    launcher.celery.close()


def test_on_sqs_the_health_check_reads_the_workers_beat(tmp_path: Any) -> None:
    """SQS carries no ping: a worker whose beat went stale fails its run (one stale reading tolerated)."""
    require_service(REDIS_URL)
    launcher = VideoCeleryRunLauncher(broker=SQS_URL, backend=REDIS_URL, default_queue=f"test-{uuid.uuid4().hex[:10]}")
    alive, gone = (f"{name}-{uuid.uuid4().hex[:8]}@host" for name in ("alive", "gone"))
    with (
        dg.instance_for_test(temp_dir=str(tmp_path)) as instance,
        SubmissionStore(f"sqlite:///{tmp_path / 'store.db'}") as store,
    ):
        launcher.register_instance(instance)
        launcher._beats = WorkerBeats(store)  # the deployment's database
        launcher.beats.record(beat_at(alive, 0))
        launcher.beats.record(beat_at(gone, BEAT_STALE_SECONDS + 5))
        runs = {}
        for hostname in (alive, gone):
            task_id = str(uuid.uuid4())
            launcher.celery.backend.store_result(task_id, {"hostname": hostname, "pid": 4242}, "STARTED")
            run = create_run_for_test(instance, job_name="j", status=dg.DagsterRunStatus.STARTED)
            instance.add_run_tags(run.run_id, {DAGSTER_CELERY_TASK_ID_TAG: task_id})
            runs[hostname] = instance.get_run_by_id(run.run_id)
        assert launcher.check_run_worker_health(runs[alive]).status is WorkerStatus.RUNNING
        assert launcher.check_run_worker_health(runs[gone]).status is WorkerStatus.RUNNING  # one miss tolerated
        launcher._pings.clear()  # answers are reused for a few seconds: read the beats again now
        assert launcher.check_run_worker_health(runs[alive]).status is WorkerStatus.RUNNING
        failed = launcher.check_run_worker_health(runs[gone])
        assert failed.status is WorkerStatus.FAILED and failed.msg is not None
        assert failed.msg.startswith(f"run worker {gone} (pid 4242) is gone"), failed.msg
    launcher.celery.close()


def test_health_check_asks_the_run_when_the_backend_lost_its_task(tmp_path: Any) -> None:
    """A Redis restarted without its data forgets a running task (PENDING): the run's own worker tag is pinged."""
    require_service(REDIS_URL)
    launcher = VideoCeleryRunLauncher(broker=REDIS_URL, default_queue=f"test-{uuid.uuid4().hex[:10]}")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        launcher.register_instance(instance)
        run = create_run_for_test(instance, job_name="j", status=dg.DagsterRunStatus.STARTED)
        tags = {DAGSTER_CELERY_TASK_ID_TAG: str(uuid.uuid4()), WORKER_TAG: RunWorker("gone@nowhere", 4242).tag()}
        instance.add_run_tags(run.run_id, tags)
        run = instance.get_run_by_id(run.run_id)
        assert run is not None
        assert launcher.celery.AsyncResult(tags[DAGSTER_CELERY_TASK_ID_TAG]).state == "PENDING"
        # Not UNKNOWN, which run monitoring answers by failing the run: its worker is asked, as for STARTED.
        assert launcher.check_run_worker_health(run).status is WorkerStatus.RUNNING
        second = launcher.check_run_worker_health(run)
        assert second.status is WorkerStatus.FAILED
        assert second.msg is not None and second.msg.startswith("run worker gone@nowhere (pid 4242) is gone")
        ended = instance.get_run_by_id(run.run_id)
        assert ended is not None and ended.status is dg.DagsterRunStatus.FAILURE
        assert ended.tags[LOST_WORKER_TAG] == second.msg  # resumed, as a run whose worker died
    launcher.celery.close()


@pytest.mark.parametrize("task_state", ["SUCCESS", "FAILURE"])
def test_a_run_whose_task_ended_without_its_end_recorded_is_lost(tmp_path: Any, task_state: str) -> None:
    """A worker that could not write the run's end (the database restarting) leaves it STARTED with its task
    ended: lost, so the execution is resumed; a run that ended as the check looked is left alone."""
    require_service(REDIS_URL)
    launcher = VideoCeleryRunLauncher(broker=REDIS_URL, default_queue=f"test-{uuid.uuid4().hex[:10]}")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        launcher.register_instance(instance)
        task_id = str(uuid.uuid4())
        outcome = RuntimeError("could not connect to the database") if task_state == "FAILURE" else None
        launcher.celery.backend.store_result(task_id, outcome, task_state)
        ended = create_run_for_test(instance, job_name="j", status=dg.DagsterRunStatus.SUCCESS)
        stuck = create_run_for_test(instance, job_name="j", status=dg.DagsterRunStatus.STARTED)
        for run in (ended, stuck):
            instance.add_run_tags(run.run_id, {DAGSTER_CELERY_TASK_ID_TAG: task_id})
        read = instance.get_run_by_id(ended.run_id)
        assert read is not None
        stale = read._replace(status=dg.DagsterRunStatus.STARTED)  # as the monitor read it, before it ended
        assert launcher.check_run_worker_health(stale).status is WorkerStatus.SUCCESS
        run = instance.get_run_by_id(stuck.run_id)
        assert run is not None
        health = launcher.check_run_worker_health(run)
        assert health.status is WorkerStatus.FAILED
        assert health.msg is not None and "without the run's end recorded" in health.msg
        failed = instance.get_run_by_id(run.run_id)
        assert failed is not None and failed.status is dg.DagsterRunStatus.FAILURE
        assert failed.tags[LOST_WORKER_TAG] == health.msg  # resumed, as a run whose worker died
        launcher.celery.backend.forget(task_id)
    launcher.celery.close()


def test_a_run_the_broker_cannot_take_is_tagged_lost(tmp_path: Any) -> None:
    """Dagster fails a run whose launch raises: tagged lost first, its execution is resumed instead of failed."""
    launcher = VideoCeleryRunLauncher(broker=f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        launcher.register_instance(instance)
        run = create_run_for_test(instance, job_name="j", status=dg.DagsterRunStatus.STARTING)
        signature = create_execute_job_task(launcher.celery).si(execute_job_args_packed={})
        with pytest.raises((BrokerError, RuntimeError)):  # RuntimeError: the result backend's, from the same cause
            launcher._launch_celery_task_run(run, signature, TASK_EXECUTE_JOB_NAME)
        tagged = instance.get_run_by_id(run.run_id)
        assert tagged is not None and tagged.tags[LOST_WORKER_TAG].startswith("the broker could not take the run: ")
    launcher.celery.close()


@pytest.fixture(params=["redis", "sqs"])
def broker_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Redis, or SQS on moto's server (its AWS environment set in this process) with Redis as result backend."""
    require_service(REDIS_URL)
    if request.param == "redis":
        yield REDIS_URL
        return
    request.getfixturevalue("aws_env")  # no AWS configuration of the machine
    for name, value in sqs_env(request.getfixturevalue("s3_endpoint")).items():
        monkeypatch.setenv(name, value)
    yield SQS_URL


def test_a_cancel_of_a_run_still_in_the_broker_ends_it_canceled_at_once(tmp_path: Any, broker_url: str) -> None:
    """Its task is revoked (where the broker carries it) and the run CANCELED there and then: it does not wait
    behind the queue's backlog for a worker slot (status `processing`), as a run left to obey its cancel would."""
    queue = f"test-{uuid.uuid4().hex[:10]}"  # no worker consumes it: the task waits in the broker
    launcher_config = {
        "module": "video_pipelines.orchestration.workers.celery_launcher",
        "class": "VideoCeleryRunLauncher",
        "config": {"broker": broker_url, "backend": REDIS_URL, "default_queue": queue},
    }
    with (
        dg.instance_for_test(temp_dir=str(tmp_path), overrides={"run_launcher": launcher_config}) as instance,
        SubmissionStore(f"sqlite:///{tmp_path / 'submissions.db'}") as store,
    ):
        launcher = instance.run_launcher
        assert isinstance(launcher, VideoCeleryRunLauncher)
        submission, _created = store.submit({"jobs": []})
        assert store.claim(submission.execution_id)
        run = create_run_for_test(
            instance,
            job_name="j",
            status=dg.DagsterRunStatus.STARTING,
            tags={EXECUTION_ID_TAG: submission.execution_id},
        )
        signature = create_execute_job_task(launcher.celery).si(execute_job_args_packed={})
        launcher._launch_celery_task_run(run, signature, TASK_EXECUTE_JOB_NAME)
        assert store.mark_launched(submission.execution_id, run.run_id)
        assert store.request_cancel(submission.execution_id)
        records = DagsterRunRecords(instance)
        queued = records.find_run(submission.execution_id)
        assert queued is not None and queued.state is RunState.STARTING

        assert stop_run(records, store, queued)
        ended = instance.get_run_by_id(run.run_id)
        assert ended is not None and ended.status is dg.DagsterRunStatus.CANCELED
        assert not records.cancel_unbegun(run.run_id)  # once only: the run is no longer STARTING
    launcher.celery.close()


def test_a_launch_is_lost_when_no_worker_holds_its_task_while_one_of_its_queue_is_idle(tmp_path: Any) -> None:
    """Read from the workers' beats, on every broker (SQS carries no inspection): a PENDING task that no worker runs
    or holds, while a worker of its queue has a free child, was lost by the broker (a restart without its data;
    on SQS, a message handed to the long poll of a worker that stopped). A task waiting for a busy worker is not."""
    require_service(REDIS_URL)
    queue = f"test-{uuid.uuid4().hex[:10]}"
    launcher = VideoCeleryRunLauncher(broker=REDIS_URL, default_queue=queue)
    with (
        dg.instance_for_test(temp_dir=str(tmp_path)) as instance,
        SubmissionStore(f"sqlite:///{tmp_path / 'store.db'}") as store,
    ):
        launcher.register_instance(instance)
        launcher._beats = beats = WorkerBeats(store)
        tasks = {name: f"{name}-{uuid.uuid4()}" for name in ("running", "waiting", "lost", "started")}
        runs = []
        for task_id in tasks.values():
            run = create_run_for_test(instance, job_name="j", status=dg.DagsterRunStatus.STARTING)
            instance.add_run_tags(run.run_id, {DAGSTER_CELERY_TASK_ID_TAG: task_id})
            runs.append(instance.get_run_by_id(run.run_id))
        by_task = {run.tags[DAGSTER_CELERY_TASK_ID_TAG]: run.run_id for run in runs if run is not None}
        launcher.celery.backend.store_result(tasks["started"], None, "STARTED")  # a worker began it
        now = datetime.now(UTC)
        stuck = [run for run in runs if run is not None]

        assert launcher.lost_in_broker(stuck) == {}  # no worker alive: none would have taken it
        busy = WorkerBeat("busy@h", (queue,), 1, (tasks["running"],), now, waiting=(tasks["waiting"],))
        assert not busy.idle
        beats.record(busy)
        beats.record(WorkerBeat("elsewhere@h", ("other",), 2, (), now))  # idle, but on another queue
        beats.record(WorkerBeat("dead@h", (queue,), 2, (), now - timedelta(seconds=BEAT_STALE_SECONDS + 1)))
        assert launcher.lost_in_broker(stuck) == {}  # every live worker of its queue busy: it waits its turn

        beats.record(WorkerBeat("idle@h", (queue,), 2, (), now))
        lost = launcher.lost_in_broker(stuck)
        assert lost == {
            by_task[tasks["lost"]]: (
                f"the broker lost its Celery task {tasks['lost']}: no worker took it, though idle@h has a free child"
            )
        }
        launcher.celery.backend.forget(tasks["started"])
    launcher.celery.close()


def test_a_run_whose_task_a_worker_took_but_never_started_is_failed_as_lost(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI: the broker went away as a child took a run's task; the task's start failed outside its body and the
    worker held it on, so neither the beats nor the task's state said lost, and the run stayed STARTING until run
    monitoring's 300 s start timeout. A child tags the run as it takes the task and starts it within a second or
    two: STARTING that long after the tag, it is failed as lost (so resumed); a run just taken is not."""
    require_service(REDIS_URL)
    monkeypatch.setattr(plans, "LOST_LAUNCH_SECONDS", 0.0)
    monkeypatch.setattr(plans, "TAKEN_NEVER_STARTED_SECONDS", 0.5)
    launcher_config = {
        "module": "video_pipelines.orchestration.workers.celery_launcher",
        "class": "VideoCeleryRunLauncher",
        "config": {"broker": REDIS_URL, "default_queue": f"test-{uuid.uuid4().hex[:10]}"},
    }
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides={"run_launcher": launcher_config}) as instance:

        def taken_run() -> str:
            run = create_run_for_test(instance, job_name=execute_plan.name, status=dg.DagsterRunStatus.STARTING)
            instance.add_run_tags(run.run_id, {WORKER_TAG: "w1@h pid 4242"})
            return run.run_id

        stuck = taken_run()
        time.sleep(0.6)  # past the threshold under test (0.5 s here), not a wait for something to happen
        fresh = taken_run()
        reason = plans.lost_launches(dg.build_sensor_context(instance=instance))
        assert isinstance(reason, dg.SkipReason) and "1 of them taken by a worker and never started" in str(
            reason.skip_message
        )
        failed, running = instance.get_run_by_id(stuck), instance.get_run_by_id(fresh)
        assert failed is not None and failed.status is dg.DagsterRunStatus.FAILURE
        assert failed.tags[LOST_WORKER_TAG].startswith("w1@h pid 4242 took the run's Celery task")
        assert running is not None and running.status is dg.DagsterRunStatus.STARTING
        instance.run_launcher.celery.close()  # type: ignore[attr-defined]

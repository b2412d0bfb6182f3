"""The `video-pipelines` command line (docs/plans-and-operations.md and docs/http-api.md).

Each command imports what it needs when it runs (Dagster, pydantic, httpx each cost a command a tenth of a
second or more): `--help` and a local `submit` answer in a fraction of a second.

Invalid input exits 2 with the message on stderr; stdout carries only the answer. Commands on an
existing execution never make an instance; `api-keys` and `prune-catalog` are always local.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from video_pipelines.errors import ExecutionConflict, PlanValidationError, UsageError, VideoPipelineError
from video_pipelines.vocabulary import Priority

if TYPE_CHECKING:
    from video_pipelines.executions import Admission
    from video_pipelines.storage import ArtifactStore
    from video_pipelines.submissions import SubmissionStore

EXIT_REFUSED = 1  # the execution's state refuses the call (HTTP 409)
EXIT_INVALID = 2


def _read_plan(path: str) -> dict[str, Any]:
    from video_pipelines.plan import load_plan_json

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read plan {path}: {exc.strerror}") from None
    return load_plan_json(text)


def _validate(args: argparse.Namespace) -> int:
    from video_pipelines.executions import admit, validation_report
    from video_pipelines.plan.overrides import SubmitOptions
    from video_pipelines.providers.pricing import PricingTable

    data = SubmitOptions(base_execution_id=args.base_execution_id).apply(_read_plan(args.plan))
    admission = admit(data, tenant=args.tenant)
    if admission.plan.base_execution_id:
        # A variant needs the deployment: its base is read from the runs there, as `submit` reads it.
        from video_pipelines.doors import client

        with client.deployment(create=False) as target:
            admission = admit(data, target.records, target.store, tenant=args.tenant)
            admission = _with_earlier_results(admission, target.store, args.tenant)
    else:
        from video_pipelines.deployment.instance import dagster_home_path, is_new_instance
        from video_pipelines.submissions import SubmissionStore

        home = dagster_home_path()
        if not is_new_instance(home):
            with SubmissionStore.from_env(home) as store:
                admission = _with_earlier_results(admission, store, args.tenant)
    report = validation_report(admission, PricingTable.from_env())
    if args.json:
        _print_json(report)
    else:
        _print_validation(report)
    return 0


def _with_earlier_results(admission: Admission, store: SubmissionStore, tenant: str | None) -> Admission:
    from dataclasses import replace

    from video_pipelines.deployment.instance import dagster_home_path
    from video_pipelines.executions.reuse import decide_reuse
    from video_pipelines.submissions import DEFAULT_TENANT, NodeResultIndex

    if admission.resolved is None:
        return admission

    def artifacts() -> ArtifactStore:
        # Imported only when a node would be reused: the storage package loads FFmpeg's operations.
        from video_pipelines.storage.factory import store_from_env

        return store_from_env(dagster_home_path())

    resolved = decide_reuse(
        admission.resolved,
        NodeResultIndex(store),
        tenant=tenant or DEFAULT_TENANT,
        execution_id="",
        artifacts=artifacts,
        warn=_warn,
    )
    return replace(admission, resolved=resolved)


def _print_validation(report: dict[str, Any]) -> None:
    print(f"plan is valid: {len(report['nodes'])} job(s) in {report['levels']} level(s), in execution order:")
    for entry in report["nodes"]:
        inputs = f" <- {', '.join(entry['dependsOn'])}" if entry["dependsOn"] else ""
        cost = "cost unknown" if entry["estimatedCost"] is None else f"~${entry['estimatedCost']:.4f}"
        reason = f" ({entry['reason']})" if entry["reason"] else ""
        where = f"{entry['id']:<16} {entry['operation']:<13} level {entry['level']}"
        print(f"  {where}  {entry['action']:<6} {cost}{inputs}{reason}")
    if report["baseExecutionId"]:
        note = f" ({report['baseNote']})" if report["baseNote"] else ""
        print(f"base execution: {report['baseExecutionId']}{note}")
    unknown = " + unknown" if report["costUnknown"] else ""
    print(f"estimated cost of what would run: ${report['estimatedCost']:.4f}{unknown}")


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False))


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _warn_new_instance(home: Path) -> None:
    _warn(f"no Dagster instance at {home}; created a new one. Set DAGSTER_HOME to use an existing deployment.")


def _submit(args: argparse.Namespace) -> int:
    from video_pipelines.doors import client

    plan = _read_plan(args.plan)
    with client.connect(create=True) as target:
        options = client.SubmitOptions(
            base_execution_id=args.base_execution_id,
            webhook_url=args.webhook_url,
            webhook_secret=args.webhook_secret,
            priority=args.priority,
            idempotency_key=args.idempotency_key,
        )
        execution_id = client.submit(plan, options, target=target)
        if isinstance(target, client.Deployment) and target.created:  # by this submission, validated first
            _warn_new_instance(target.home)
        # Over the API, its /health says whether its daemon runs; locally nothing else would tell.
        if isinstance(target, client.Deployment) and target.daemon_problem() is not None:
            _warn(
                f"no daemon is running for {target.where}: the submission stays pending until one runs "
                "(`video-pipelines dev` or `video-pipelines daemon`)"
            )
        if not args.wait:
            _print_json({"executionId": execution_id})
            return 0
        final = client.wait(execution_id, target=target)
    _print_json(final)
    return 0 if final["status"] == "completed" else 1


def _on_execution(args: argparse.Namespace) -> int:
    from video_pipelines.doors import client

    call = {"status": client.status, "cancel": client.cancel}[args.verb]
    _print_json(call(args.execution_id))
    return 0


def _retry(args: argparse.Namespace) -> int:
    from video_pipelines.doors import client

    if args.failed_since is None and args.execution_id is None:
        raise UsageError("usage: video-pipelines retry EXECUTION_ID | retry --failed-since TIME [--limit N]")
    if args.failed_since is not None and args.execution_id is not None:
        raise UsageError("give an EXECUTION_ID or --failed-since, not both")
    if args.execution_id is not None:
        _print_json(client.retry(args.execution_id))
    else:
        _print_json(client.retry_failed(since=_since(args.failed_since), limit=args.limit))
    return 0


_AGO = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(text: str) -> str:
    """An ISO 8601 time, or a time ago (`30m`, `6h`, `2d`) as the ISO 8601 time it names (UTC)."""
    ago = _AGO.fullmatch(text.strip())
    if ago is None:
        return text
    seconds = int(ago.group(1)) * _UNIT_SECONDS[ago.group(2)]
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


def _logs(args: argparse.Namespace) -> int:
    from video_pipelines.doors import client

    if args.follow:
        lines = client.follow_logs(args.execution_id, cursor=args.cursor)
    else:
        lines = iter(client.logs(args.execution_id, cursor=args.cursor, limit=args.limit)["logs"])
    for line in lines:
        if args.json:
            print(json.dumps(line, ensure_ascii=False), flush=True)
        else:
            node = line["node"] or "-"
            print(f"{line['at']} {line['level'].upper():<8} {node:<12} {line['message']}", flush=True)
    return 0


def _costs(args: argparse.Namespace) -> int:
    from video_pipelines.doors import client

    start = _since(args.start) if args.start else None
    end = _since(args.end) if args.end else None
    if args.suggestions:
        _print_json(client.cost_suggestions(start=start, end=end))
    else:
        _print_json(client.costs(group_by=args.group_by, start=start, end=end))
    return 0


def _deliveries(args: argparse.Namespace) -> int:
    from video_pipelines.doors import client

    match args.target:
        case [execution_id]:
            _print_json(client.deliveries(execution_id))
        case ["redeliver", webhook_id]:
            _print_json(client.redeliver(webhook_id))
        case _:
            raise UsageError("usage: video-pipelines deliveries EXECUTION_ID | deliveries redeliver WEBHOOK_ID")
    return 0


def _api_keys(args: argparse.Namespace) -> int:
    # Always the local deployment's store: making keys is an operator's act, never one over the API.
    from video_pipelines.deployment.instance import dagster_home_path, is_new_instance, prepare_dagster_home
    from video_pipelines.submissions import DEFAULT_TENANT, ApiKeys, SubmissionStore

    home = dagster_home_path()
    if is_new_instance(home):
        _warn_new_instance(home)
    with SubmissionStore.from_env(prepare_dagster_home(home)) as store:
        keys = ApiKeys(store)
        match args.action:
            case "create":
                tenant = DEFAULT_TENANT if args.tenant is None else args.tenant
                created, key = keys.create(args.name, tenant=tenant, operator=args.operator)
                answer = {"keyId": created.key_id, "name": created.name, "tenant": created.tenant}
                _print_json({**answer, "operator": created.operator, "key": key})
                print("the key is shown only now; only its hash is stored", file=sys.stderr)
            case "list":
                _print_json([listed.to_wire() for listed in keys.list()])
            case "revoke":
                _print_json(keys.revoke(args.key).to_wire())
    return 0


def _prune_catalog(args: argparse.Namespace) -> int:
    # Always the local deployment's instance: pruning the catalog is an operator's act, never one over the API.
    from video_pipelines.doors import client
    from video_pipelines.orchestration.catalog.retention import parse_retention_days, prune_catalog

    retention = parse_retention_days(args.older_than_days, "--older-than-days")
    with client.deployment(create=False) as target:
        report = prune_catalog(target.instance, retention, dry_run=args.dry_run)
    print(report.summary(), file=sys.stderr)
    _print_json(report.to_wire())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from video_pipelines.doors.demo import run_demo

    return run_demo(args.plan, verbose=args.verbose)


def _serve(args: argparse.Namespace) -> int:
    from video_pipelines.api import ApiSettings, serve

    return serve(ApiSettings.from_env(host=args.host, port=args.port))


def _daemon(args: argparse.Namespace) -> int:
    from video_pipelines.orchestration.workers.daemon import run_daemon

    return run_daemon(args.daemon_args)


def _dev(args: argparse.Namespace) -> int:
    from video_pipelines.doors.dev import run_dev

    return run_dev(host=args.host, port=args.port, api_port=args.api_port)


def _worker(args: argparse.Namespace) -> int:
    import os
    import socket

    from video_pipelines.deployment.workers import WorkerSettings

    WorkerSettings.from_env()  # no broker, or an unusable backend: say so before importing anything
    if not os.environ.get("DAGSTER_HOME"):
        raise UsageError("set DAGSTER_HOME to the deployment's instance folder (its dagster.yaml) before `worker`")
    from video_pipelines.orchestration.workers import celery_worker
    from video_pipelines.orchestration.workers.celery_launcher import ensure_queue

    if args.queue:
        ensure_queue(celery_worker.app, args.queue)
    for warning in celery_worker.startup_warnings():
        _warn(warning)
    name = args.name or f"video-pipelines-{os.getpid()}@{socket.gethostname()}"
    argv = ["worker", "--pool=prefork", f"--concurrency={args.concurrency}", f"--hostname={name}"]
    argv += ["--prefetch-multiplier=1", f"--queues={args.queue or celery_worker.settings.queue}"]
    argv += ["--loglevel=INFO", "--without-gossip", "--without-mingle"]
    celery_worker.app.worker_main(argv)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="video-pipelines", description=__doc__.splitlines()[0] if __doc__ else None)
    verbs = parser.add_subparsers(dest="verb", required=True)

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help: str, usage: str | None = None
    ) -> argparse.ArgumentParser:
        added = verbs.add_parser(name, help=help, usage=usage)
        added.set_defaults(handler=handler)
        return added

    validate = command("validate", _validate, help="check a plan and show what would run, node by node")
    validate.add_argument("plan", help="plan JSON file, or - for stdin")
    validate.add_argument("--base-execution-id", help="validate as a variant of this execution")
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    validate.add_argument(
        "--tenant", help="whose earlier results the plan may reuse (an API key's tenant; default: the operators')"
    )

    submit = command("submit", _submit, help="submit a plan; prints its executionId at once")
    submit.add_argument("plan", help="plan JSON file, or - for stdin")
    submit.add_argument("--base-execution-id", help="run as a variant of this execution, reusing its results")
    submit.add_argument("--webhook-url", help="POST the signed result here when the execution ends")
    submit.add_argument("--webhook-secret", help="signing secret (kept out of Dagster's run storage)")
    submit.add_argument("--priority", choices=[priority.value for priority in Priority])
    submit.add_argument("--idempotency-key", help="the same key returns the same execution, never a second run")
    submit.add_argument("--wait", action="store_true", help="wait for the end and print the final status")
    _execution_verbs(command)
    _view_verbs(command)
    _service_verbs(command)
    return parser


# command(name, handler, help=..., usage=...): a subcommand of `video-pipelines`, which runs `handler`.
Command = Callable[..., argparse.ArgumentParser]


def _execution_verbs(command: Command) -> None:
    for verb, about in (
        ("status", "the status of an execution, node by node"),
        ("cancel", "cancel a pending submission or terminate its run (exit 1 if it already completed or failed)"),
    ):
        command(verb, _on_execution, help=about).add_argument("execution_id")
    deliveries = command(
        "deliveries",
        _deliveries,
        help="every webhook attempt of an execution: time, status or error; `redeliver WEBHOOK_ID` sends one again",
        usage="%(prog)s EXECUTION_ID | %(prog)s redeliver WEBHOOK_ID",
    )
    deliveries.add_argument("target", nargs="+", metavar="ARG", help="EXECUTION_ID, or redeliver WEBHOOK_ID")

    api_keys = command("api-keys", _api_keys, help="create, list or revoke the HTTP API's keys (each for one tenant)")
    key_actions = api_keys.add_subparsers(dest="action", required=True)
    create_key = key_actions.add_parser("create", help="make a key; prints it once (only its hash is stored)")
    create_key.add_argument("--name", required=True, help="what the key is for, shown by list")
    create_key.add_argument("--tenant", help="whose executions the key submits and sees (default: the default tenant)")
    create_key.add_argument(
        "--operator",
        action="store_true",
        help="an operator's key: sees every tenant's executions and costs, the workers and the queue",
    )
    key_actions.add_parser("list", help="every key: id, name, tenant, prefix, created, revoked, last used, operator")
    revoke_key = key_actions.add_parser("revoke", help="refuse a key from now on")
    revoke_key.add_argument("key", metavar="KEY_ID_OR_PREFIX", help="the key id (key_...) or its prefix (vp_...)")

    prune = command(
        "prune-catalog",
        _prune_catalog,
        help="delete the asset catalog's partitions of executions ended more than N days ago "
        "(videos, runs, status and reuse stay)",
    )
    prune.add_argument(
        "--older-than-days", required=True, metavar="N", help="days since the execution's last run ended"
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would be deleted; delete nothing")


def _view_verbs(command: Command) -> None:
    """The operator's views: bulk retry, logs, costs."""
    retry = command(
        "retry",
        _retry,
        help="run a failed or canceled execution again (completed nodes are reused, only the rest run); "
        "--failed-since: every failed one since then",
        usage="%(prog)s EXECUTION_ID | %(prog)s --failed-since TIME [--limit N]",
    )
    retry.add_argument("execution_id", nargs="?")
    retry.add_argument(
        "--failed-since", metavar="TIME", help="retry the executions failed since TIME (ISO 8601, or 30m, 6h, 2d ago)"
    )
    retry.add_argument("--limit", type=int, default=100, help="at most this many, newest first (1 to 100)")

    logs = command("logs", _logs, help="an execution's log lines: time, level, node, message")
    logs.add_argument("execution_id")
    logs.add_argument("--follow", action="store_true", help="print lines as they are written, until the execution ends")
    logs.add_argument("--cursor", help="start after this cursor (a page's `cursor`)")
    logs.add_argument("--limit", type=int, default=1000, help="lines to print without --follow (1 to 1000)")
    logs.add_argument("--json", action="store_true", help="one JSON object per line")

    costs = command("costs", _costs, help="what executions cost and reuse saved, grouped; --suggestions: how to save")
    costs.add_argument("--group-by", choices=["provider", "operation", "day"], default="provider")
    costs.add_argument("--from", dest="start", metavar="TIME", help="executions submitted since (ISO 8601, or 7d ago)")
    costs.add_argument("--to", dest="end", metavar="TIME", help="executions submitted before (ISO 8601, or 1d ago)")
    costs.add_argument("--suggestions", action="store_true", help="ways to spend less, each with its saving")


def _service_verbs(command: Command) -> None:
    demo = command("demo", _demo, help="run the product demo end to end on the embedded defaults")
    demo.add_argument("--plan", help="run this plan file instead of the bundled product demo")
    demo.add_argument("--verbose", action="store_true", help="also print Dagster's run logs (DEBUG and up)")

    serve = command("serve", _serve, help="serve the HTTP API (one uvicorn process); docs at /docs")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)

    worker = command(
        "worker",
        _worker,
        help="a warm run worker: takes runs from $VIDEO_PIPELINES_BROKER_URL and runs them in its children",
    )
    worker.add_argument("--concurrency", type=int, default=2, help="runs at once (one child process each)")
    worker.add_argument("--queue", help="the queue to take runs from (default: dagster)")
    worker.add_argument("--name", help="the worker's node name, NAME@HOST (default: video-pipelines-PID@HOST)")

    command(
        "daemon",
        _daemon,
        help="dagster-daemon run, its sensors evaluated every second (submissions start sooner); "
        "takes the options of `dagster-daemon run`, e.g. -w workspace.yaml",
    )

    dev = command("dev", _dev, help="dagster-webserver + dagster-daemon + the HTTP API on the embedded default")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000, help="the Dagster webserver's port")
    dev.add_argument("--api-port", type=int, default=8080, help="the HTTP API's port")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, passed_on = parser.parse_known_args(argv)
    if args.verb == "daemon":
        args.daemon_args = passed_on  # every option is dagster-daemon run's
    elif passed_on:
        parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
    try:
        code: int = args.handler(args)
    except PlanValidationError as exc:
        print("invalid plan:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_INVALID
    except VideoPipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED if isinstance(exc, ExecutionConflict) else EXIT_INVALID
    return code


if __name__ == "__main__":
    sys.exit(main())

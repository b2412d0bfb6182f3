"""The `video-pipelines` command line (SPEC section 4).

Invalid input exits 2 with the message on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from video_pipelines.errors import PlanValidationError, UsageError, VideoPipelineError
from video_pipelines.plan import Plan, execution_order, levels, load_plan_json, parse_plan
from video_pipelines.plan.params import parse_params
from video_pipelines.plan.reuse import ResolvedPlan, resolve

EXIT_INVALID = 2


def _read_plan(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read plan {path}: {exc.strerror}") from None
    return load_plan_json(text)


def _validate(args: argparse.Namespace) -> int:
    from video_pipelines.orchestration.job import MAX_LEVELS

    data = _read_plan(args.plan)
    if args.base_execution_id:
        data = {**data, "baseExecutionId": args.base_execution_id}
    plan = parse_plan(data, max_depth=MAX_LEVELS)
    report = validation_report(plan, _resolve_against_base(plan))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"plan is valid: {len(plan.nodes)} job(s) in {report['levels']} level(s), in execution order:")
    for entry in report["nodes"]:
        inputs = f" <- {', '.join(entry['dependsOn'])}" if entry["dependsOn"] else ""
        cost = "cost unknown" if entry["estimatedCost"] is None else f"~${entry['estimatedCost']:.4f}"
        reason = f" ({entry['reason']})" if entry["reason"] else ""
        where = f"{entry['id']:<16} {entry['operation']:<13} level {entry['level']}"
        print(f"  {where}  {entry['action']:<6} {cost}{inputs}{reason}")
    if plan.base_execution_id:
        print(f"base execution: {plan.base_execution_id}" + (f" ({report['baseNote']})" if report["baseNote"] else ""))
    print(
        f"estimated cost of what would run: ${report['estimatedCost']:.4f}"
        + (" + unknown" if report["costUnknown"] else "")
    )
    return 0


def _resolve_against_base(plan: Plan) -> tuple[ResolvedPlan | None, str | None]:
    """The plan resolved against its base when the base can be read here, else why not."""
    if not plan.base_execution_id:
        return resolve(plan), None
    from video_pipelines import client
    from video_pipelines.errors import BaseNotReady, BaseUnusable
    from video_pipelines.orchestration.executions import load_base

    try:
        with client.deployment() as target:
            base = load_base(target.instance, plan.base_execution_id)
    except (BaseNotReady, BaseUnusable) as exc:
        return None, str(exc)
    parse_plan(plan.to_wire(), external_nodes=set(base.nodes))
    return resolve(plan, base), None


def validation_report(plan: Plan, resolution: tuple[ResolvedPlan | None, str | None]) -> dict[str, Any]:
    """What would run and what would be reused, node by node in execution order, with estimated costs."""
    from video_pipelines.plan.durations import expected_durations
    from video_pipelines.plan.refs import with_samples
    from video_pipelines.providers.pricing import PricingTable

    resolved, base_note = resolution
    pricing = PricingTable.from_env()
    seconds = expected_durations(
        plan,
        external={node_id: result.duration for node_id, result in (resolved.external if resolved else {}).items()},
        base_final=resolved.base_final.duration if resolved and resolved.base_final else None,
    )
    level = levels(plan)
    nodes = []
    total, unknown = 0.0, False
    for node in execution_order(plan):
        decision = resolved.decisions[node.id] if resolved else None
        action = decision.action.value if decision else "run"
        cost: float | None = 0.0
        if action == "run":
            input_seconds = seconds[node.depends_on[0]] if node.depends_on and node.depends_on[0] in seconds else None
            if node.consumes_inputs and not node.depends_on and resolved and resolved.base_final:
                input_seconds = resolved.base_final.duration
            params = parse_params(node.operation, with_samples(node.params))
            estimate = pricing.estimate(params, input_seconds=input_seconds)
            cost = estimate.usd if estimate is not None and estimate.known else None
            if cost is None and node.operation.value in ("generateVideo", "lipSync"):
                unknown = True
            cost = cost if cost is not None or node.operation.value in ("generateVideo", "lipSync") else 0.0
            total += cost or 0.0
        nodes.append(
            {
                "id": node.id,
                "operation": node.operation.value,
                "level": level[node.id],
                "dependsOn": list(node.depends_on),
                "action": action,
                "reason": decision.reason if decision and decision.reason != "new" else None,
                "reusedFrom": decision.reused_from if decision else None,
                "estimatedCost": cost,
            }
        )
    return {
        "valid": True,
        "levels": max(level.values()) + 1,
        "baseExecutionId": plan.base_execution_id,
        "baseNote": base_note,
        "estimatedCost": round(total, 4),
        "costUnknown": unknown,
        "nodes": nodes,
    }


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False))


def _submit(args: argparse.Namespace) -> int:
    from video_pipelines import client

    plan = _read_plan(args.plan)
    with client.deployment() as target:
        execution_id = client.submit(
            plan,
            base_execution_id=args.base_execution_id,
            webhook_url=args.webhook_url,
            webhook_secret=args.webhook_secret,
            priority=args.priority,
            idempotency_key=args.idempotency_key,
            target=target,
        )
        if not args.wait:
            _print_json({"executionId": execution_id})
            return 0
        final = client.wait(execution_id, target=target)
    _print_json(final)
    return 0 if final["status"] == "completed" else 1


def _status(args: argparse.Namespace) -> int:
    from video_pipelines import client

    _print_json(client.status(args.execution_id))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from video_pipelines import client

    _print_json(client.cancel(args.execution_id))
    return 0


def _deliveries(args: argparse.Namespace) -> int:
    from video_pipelines import client

    _print_json(client.deliveries(args.execution_id))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from video_pipelines.demo import run_demo

    return run_demo(args.plan)


def _dev(args: argparse.Namespace) -> int:
    from video_pipelines.instance import prepare_dagster_home, write_workspace

    home = prepare_dagster_home()
    workspace = write_workspace(home)
    print(f"DAGSTER_HOME={home}; webserver on http://{args.host}:{args.port}", file=sys.stderr)
    command = ["dagster", "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)]
    try:
        return subprocess.call(command, env=os.environ.copy())
    except KeyboardInterrupt:
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="video-pipelines", description=__doc__.splitlines()[0] if __doc__ else None)
    verbs = parser.add_subparsers(dest="verb", required=True)

    validate = verbs.add_parser("validate", help="check a plan and show what would run, node by node")
    validate.add_argument("plan", help="plan JSON file, or - for stdin")
    validate.add_argument("--base-execution-id", help="validate as a variant of this execution")
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    validate.set_defaults(handler=_validate)

    submit = verbs.add_parser("submit", help="submit a plan; prints its executionId at once")
    submit.add_argument("plan", help="plan JSON file, or - for stdin")
    submit.add_argument("--base-execution-id", help="run as a variant of this execution, reusing its results")
    submit.add_argument("--webhook-url", help="POST the signed result here when the execution ends")
    submit.add_argument("--webhook-secret", help="signing secret (kept out of Dagster's run storage)")
    submit.add_argument("--priority", choices=["high", "normal", "low"])
    submit.add_argument("--idempotency-key", help="the same key returns the same execution, never a second run")
    submit.add_argument("--wait", action="store_true", help="wait for the end and print the final status")
    submit.set_defaults(handler=_submit)

    status = verbs.add_parser("status", help="the status of an execution, node by node")
    status.add_argument("execution_id")
    status.set_defaults(handler=_status)

    cancel = verbs.add_parser("cancel", help="cancel a pending submission or terminate its run")
    cancel.add_argument("execution_id")
    cancel.set_defaults(handler=_cancel)

    deliveries = verbs.add_parser("deliveries", help="every webhook attempt of an execution: time, status or error")
    deliveries.add_argument("execution_id")
    deliveries.set_defaults(handler=_deliveries)

    demo = verbs.add_parser("demo", help="run the product demo end to end on the embedded defaults")
    demo.add_argument("--plan", help="run this plan file instead of the bundled product demo")
    demo.set_defaults(handler=_demo)

    dev = verbs.add_parser("dev", help="dagster-webserver + dagster-daemon on the embedded default")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(handler=_dev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except PlanValidationError as exc:
        print("invalid plan:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_INVALID
    except VideoPipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return code


if __name__ == "__main__":
    sys.exit(main())

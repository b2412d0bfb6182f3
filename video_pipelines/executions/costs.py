"""What a caller's executions cost, grouped, and what reuse saved; and suggestions to spend less, each computed
from those same records (never a guess about work the caller did not do).

Costs are what each node's run recorded it cost (`NodeRecord.cost_usd`, what the provider billed at the
pricing table's prices); `savedUsd` is what reuse saved at list prices, as in the status document. An
execution counts in the window its submission falls in (execution ids carry their creation time).

Videos never fetched are told from the fetches the API's `/artifacts` route records (`submissions.fetches`),
so only for videos whose URL passes through that route: a local folder served by the API, or S3 behind
`VIDEO_PIPELINES_PUBLIC_URL`. A CDN's URL (`VIDEO_PIPELINES_PUBLIC_BASE_URL`), a presigned S3 URL or a `file://`
URL is fetched without us: nothing is recorded, so nothing is suggested for those videos.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from video_pipelines.executions.attempts import ExecutionRuns
from video_pipelines.executions.lifecycle import Caller
from video_pipelines.executions.records import RunRecords
from video_pipelines.executions.spending import saved_usd
from video_pipelines.executions.status import run_status
from video_pipelines.plan import Plan, PlanNode, sinks
from video_pipelines.plan.model import ancestors
from video_pipelines.providers.pricing import PricingTable
from video_pipelines.submissions import SubmissionStore
from video_pipelines.submissions.fetches import VideoFetches
from video_pipelines.submissions.store import execution_created_at
from video_pipelines.vocabulary import ExecutionState, NodeState, WireRecord

# Submissions read per query while scanning a window.
_SCAN_BATCH = 200
# How long after an execution completed its final videos may go unfetched before that is suggested: a client
# that downloads what it ordered does so within the day (seconds; 0 counts every completed execution).
UNFETCHED_GRACE_ENV = "VIDEO_PIPELINES_UNFETCHED_GRACE_SECONDS"
DEFAULT_UNFETCHED_GRACE_SECONDS = 86400.0


class GroupBy(StrEnum):
    PROVIDER = "provider"
    OPERATION = "operation"
    DAY = "day"


@dataclass(frozen=True)
class NodeSpend:
    """One node with a video in one execution: what it cost (computed) or saved (reused)."""

    execution_id: str
    tenant: str
    day: str  # the execution's submission day, UTC (YYYY-MM-DD)
    node_id: str
    operation: str
    provider: str
    state: NodeState  # completed | reused
    cost_usd: float
    saved_usd: float
    duration: float
    sha256: str
    cached: bool  # whether the plan let this node reuse an earlier result (no `cache: false`)
    failed_execution: bool  # its execution is failed now
    fallback_from: tuple[str, ...] = ()  # the providers it moved on from before `provider` made it
    billed_failures_usd: float = 0.0  # of `cost_usd`, what those providers billed for their failed attempts
    url: str = ""  # where its video is fetched (the result's URL)
    sinks: tuple[str, ...] = ()  # the final outputs (sink nodes) its video goes into: itself, when it is one
    completed_at: float | None = None  # when its execution ended completed (epoch seconds); None: it did not

    @property
    def final(self) -> bool:
        """Whether it is one of its execution's final outputs (a sink node)."""
        return self.node_id in self.sinks


@dataclass(frozen=True)
class CostGroup(WireRecord):
    key: str
    total_usd: float
    saved_usd: float
    nodes: int
    executions: int


@dataclass(frozen=True)
class CostReport(WireRecord):
    total_usd: float
    saved_usd: float
    group_by: GroupBy
    groups: list[CostGroup]


@dataclass(frozen=True)
class Suggestion(WireRecord):
    kind: str
    message: str
    estimated_saving_usd: float
    executions: list[str]


def _provider(node: PlanNode | None) -> str:
    # As `PlanNode.is_remote` reads it: a node that names no provider ran locally.
    return str(node.params.get("provider") or "local") if node is not None else "local"


def _maker_model(node: PlanNode | None, provider: str) -> str | None:
    """The model the node's entry for `provider` names (its own params, or the fallback that made it)."""
    if node is None:
        return None
    entries = [node.params, *(entry for entry in node.params.get("fallbacks") or () if isinstance(entry, dict))]
    models = [entry.get("model") for entry in entries if entry.get("provider") == provider]
    return str(models[0]) if models and models[0] else None


def sinks_fed(plan: Plan) -> dict[str, tuple[str, ...]]:
    """Each node's final outputs: the sinks it is, or that depend on it, directly or not (in plan order)."""
    fed: dict[str, list[str]] = defaultdict(list)
    for sink in sinks(plan):
        for node_id in (sink.id, *ancestors(plan, sink.id)):
            fed[node_id].append(sink.id)
    return {node.id: tuple(fed[node.id]) for node in plan.nodes}


def _seconds(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def node_spends(
    caller: Caller,
    records: RunRecords,
    store: SubmissionStore,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    pricing: PricingTable | None = None,
) -> Iterator[NodeSpend]:
    """Every node with a video in the caller's executions submitted in [start, end), newest execution first."""
    low, high = _seconds(start), _seconds(end)  # a window that ends before it starts holds nothing
    pricing = pricing or PricingTable.from_env()
    before: str | None = None
    while True:
        submissions = store.newest(caller.tenant, limit=_SCAN_BATCH, before=before)
        for submission in submissions:
            created = execution_created_at(submission.execution_id) or submission.created_at.timestamp()
            if low is not None and created < low:
                return  # newest first: every later one is older still
            if high is not None and created >= high:
                continue
            latest = records.find_run(submission.execution_id)
            if latest is None:
                continue
            recorded = ExecutionRuns.of(records, latest).node_records(records)
            plan = latest.parsed_plan
            state = run_status(records, latest, store=store).state
            fed = sinks_fed(plan)
            day = datetime.fromtimestamp(created, UTC).date().isoformat()
            for node_id, record in recorded.items():
                node = plan.by_id.get(node_id)
                # A node that fell back names the provider that made it; the plan names the first one.
                provider = record.result.provider or _provider(node)
                cost = record.cost_usd if record.state is NodeState.COMPLETED else 0.0
                made_for = pricing.cost(provider, _maker_model(node, provider), record.result.duration)
                yield NodeSpend(
                    execution_id=submission.execution_id,
                    tenant=submission.tenant,
                    day=day,
                    node_id=node_id,
                    operation=record.operation,
                    provider=provider,
                    state=record.state,
                    cost_usd=cost,
                    saved_usd=saved_usd(plan, {node_id: record}, pricing),
                    duration=record.result.duration,
                    sha256=record.result.sha256,
                    cached=plan.caches(node) if node is not None else True,
                    failed_execution=state is ExecutionState.FAILED,
                    fallback_from=record.result.fallback_from or (),
                    billed_failures_usd=round(max(0.0, cost - made_for), 4) if record.result.fallback_from else 0.0,
                    url=record.result.url,
                    sinks=fed.get(node_id, ()),
                    completed_at=latest.ended_at if state is ExecutionState.COMPLETED else None,
                )
        if len(submissions) < _SCAN_BATCH:
            return
        before = submissions[-1].execution_id


def cost_report(spends: Sequence[NodeSpend], group_by: GroupBy) -> CostReport:
    """The spends' total and savings, and per provider, operation or day (groups by cost, highest first)."""
    grouped: dict[str, list[NodeSpend]] = defaultdict(list)
    for spend in spends:
        key = {GroupBy.PROVIDER: spend.provider, GroupBy.OPERATION: spend.operation, GroupBy.DAY: spend.day}[group_by]
        grouped[key].append(spend)
    groups = [
        CostGroup(
            key=key,
            total_usd=round(sum(spend.cost_usd for spend in members), 4),
            saved_usd=round(sum(spend.saved_usd for spend in members), 4),
            nodes=len(members),
            executions=len({spend.execution_id for spend in members}),
        )
        for key, members in grouped.items()
    ]
    # Days read in order; providers and operations by what they cost.
    order = (lambda g: g.key) if group_by is GroupBy.DAY else (lambda g: (-g.total_usd, g.key))
    return CostReport(
        total_usd=round(sum(spend.cost_usd for spend in spends), 4),
        saved_usd=round(sum(spend.saved_usd for spend in spends), 4),
        group_by=group_by,
        groups=sorted(groups, key=order),
    )


def _ids(spends: Sequence[NodeSpend]) -> list[str]:
    return sorted({spend.execution_id for spend in spends})


def _usd(value: float) -> str:
    return f"${round(value, 4):g}"


def _identical_recomputes(paid: Sequence[NodeSpend]) -> Suggestion | None:
    """Paid nodes computed again with `cache: false` that made a video identical to one the tenant had."""
    first: dict[tuple[str, str], NodeSpend] = {}
    again: list[NodeSpend] = []
    for spend in sorted(paid, key=lambda s: (s.execution_id, s.node_id)):  # ids sort in creation order
        key = (spend.tenant, spend.sha256)
        if key in first and not spend.cached:
            again.append(spend)
        first.setdefault(key, spend)
    if not again:
        return None
    saving = round(sum(spend.cost_usd for spend in again), 4)
    return Suggestion(
        "identicalRecompute",
        f"{len(again)} paid node(s) ran again with cache: false and made exactly the video (same sha256) of an "
        f"earlier one, for {_usd(saving)}; leave cache on for them (the default) to reuse that video for nothing",
        saving,
        _ids(again),
    )


def _paid_failures(paid: Sequence[NodeSpend]) -> Suggestion | None:
    """Failed executions whose paid nodes completed: a retry reuses those; a new submission pays them again."""
    kept = [spend for spend in paid if spend.failed_execution]
    if not kept:
        return None
    saving = round(sum(spend.cost_usd for spend in kept), 4)
    executions = _ids(kept)
    return Suggestion(
        "paidFailures",
        f"{len(executions)} failed execution(s) hold {_usd(saving)} of completed paid nodes; retry them "
        "(POST /api/executions/retry, or `video-pipelines retry`) rather than submitting again: "
        "a retry reuses those videos, a new submission pays for them again",
        saving,
        executions,
    )


def _cheaper_providers(paid: Sequence[NodeSpend]) -> list[Suggestion]:
    """Per operation, a provider that made the same kind of node for less per second of video than another."""
    by_operation: dict[str, dict[str, list[NodeSpend]]] = defaultdict(lambda: defaultdict(list))
    for spend in paid:
        if spend.duration > 0:
            by_operation[spend.operation][spend.provider].append(spend)
    suggestions = []
    for operation, providers in sorted(by_operation.items()):
        if len(providers) < 2:
            continue
        rates = {
            name: sum(s.cost_usd for s in made) / sum(s.duration for s in made) for name, made in providers.items()
        }
        cheapest = min(rates, key=lambda name: (rates[name], name))
        for name, made in sorted(providers.items()):
            saving = round(sum(s.cost_usd - s.duration * rates[cheapest] for s in made), 4)
            if name == cheapest or saving <= 0:
                continue
            suggestions.append(
                Suggestion(
                    "cheaperProvider",
                    f"{operation} on {name} cost {_usd(rates[name])}/s of video, on {cheapest} "
                    f"{_usd(rates[cheapest])}/s: the {len(made)} {operation} node(s) made on {name} would have "
                    f"cost {_usd(saving)} less on {cheapest}",
                    saving,
                    _ids(made),
                )
            )
    return suggestions


def _fallbacks_taken(made: Sequence[NodeSpend]) -> list[Suggestion]:
    """Per provider that nodes moved on from (paid or not: a fallback costs its wait too): how often, to whom,
    and what its failed attempts were billed."""
    left: dict[str, list[NodeSpend]] = defaultdict(list)
    for spend in made:
        if spend.fallback_from:
            left[spend.fallback_from[0]].append(spend)
    found = []
    for provider, moved in sorted(left.items()):
        makers = ", ".join(f"{name}: {count}" for name, count in sorted(Counter(s.provider for s in moved).items()))
        billed = round(sum(spend.billed_failures_usd for spend in moved), 4)
        found.append(
            Suggestion(
                "fallbacksTaken",
                f"{len(moved)} node(s) moved on from {provider} to a fallback ({makers}); {provider}'s failed "
                f"attempts were billed {_usd(billed)} and cost their wait: while {provider} keeps failing, name "
                "the provider that made them first",
                billed,
                _ids(moved),
            )
        )
    return found


@dataclass(frozen=True)
class FetchRecords:
    """What the deployment recorded of video downloads, as the "never fetched" suggestion reads it."""

    since: datetime | None  # when fetches began to be recorded; None: they are not
    first_fetched: Mapping[str, datetime]  # sha256 -> its first recorded fetch (of the videos asked about)
    served: tuple[str, ...]  # result URLs that start with one of these pass through the API's /artifacts
    bases: frozenset[str]  # executions that a variant names as its base
    now: datetime
    grace_seconds: float
    taken_later: frozenset[str] = frozenset()  # videos reused by executions after the window read

    def passes_through(self, url: str) -> bool:
        return any(url.startswith(prefix) for prefix in self.served)

    def settled(self, completed_at: float) -> bool:
        """Whether an execution that completed then has had its grace period, all of it while fetches were recorded."""
        ended = datetime.fromtimestamp(completed_at, UTC)
        return self.since is not None and self.since <= ended <= self.now - timedelta(seconds=self.grace_seconds)


def read_fetches(
    store: SubmissionStore,
    spends: Sequence[NodeSpend],
    *,
    served: Sequence[str],
    grace_seconds: float = DEFAULT_UNFETCHED_GRACE_SECONDS,
    later: Sequence[NodeSpend] = (),
    now: datetime | None = None,
) -> FetchRecords:
    """The fetch records of the spends' final videos, and which of their executions are a variant's base;
    `later`: the spends of executions after the window, which may have reused its videos."""
    fetches = VideoFetches(store)
    finals = {spend.sha256 for spend in spends if spend.final}
    completed = {spend.execution_id for spend in spends if spend.completed_at is not None}
    return FetchRecords(
        since=fetches.recording_since(),
        first_fetched={sha256: fetch.first_fetched_at for sha256, fetch in fetches.of(finals).items()},
        served=tuple(served),
        bases=frozenset(fetches.bases_among(completed)),
        now=now or datetime.now(UTC),
        grace_seconds=grace_seconds,
        taken_later=frozenset(spend.sha256 for spend in later if spend.state is NodeState.REUSED),
    )


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _never_fetched(spends: Sequence[NodeSpend], fetches: FetchRecords) -> list[Suggestion]:
    """Per tenant, completed executions whose final videos nobody fetched through the API since their grace
    period, and the paid work that went into only those videos."""
    by_execution: dict[str, list[NodeSpend]] = defaultdict(list)
    reused_by: dict[str, set[str]] = defaultdict(set)  # sha256 -> the executions that took it as a reused node
    for spend in spends:
        by_execution[spend.execution_id].append(spend)
        if spend.state is NodeState.REUSED:
            reused_by[spend.sha256].add(spend.execution_id)

    def taken(node: NodeSpend) -> bool:
        """Whether another execution went on from the node's video (reused it): it was used, fetched or not."""
        return bool(reused_by.get(node.sha256, set()) - {node.execution_id}) or node.sha256 in fetches.taken_later

    found: dict[str, list[tuple[str, float, int]]] = defaultdict(list)
    for execution_id, nodes in sorted(by_execution.items()):
        completed_at = nodes[0].completed_at
        if execution_id in fetches.bases or completed_at is None or not fetches.settled(completed_at):
            continue
        finals = [node for node in nodes if node.final]
        # A final video whose fetches would not be seen (a CDN's URL, a presigned one) leaves the whole
        # execution out: which of its work was wasted cannot be told.
        if not finals or not all(fetches.passes_through(node.url) for node in finals):
            continue
        unfetched = {node.node_id for node in finals if node.sha256 not in fetches.first_fetched and not taken(node)}
        wasted = [
            node
            for node in nodes
            if node.state is NodeState.COMPLETED
            and node.cost_usd > 0
            and node.sinks
            and set(node.sinks) <= unfetched
            and not taken(node)
        ]
        saving = round(sum(node.cost_usd for node in wasted), 4)
        if saving > 0:
            found[nodes[0].tenant].append((execution_id, saving, len(unfetched)))
    suggested = []
    for tenant, executions in sorted(found.items()):
        saving = round(sum(each[1] for each in executions), 4)
        videos = sum(each[2] for each in executions)
        suggested.append(
            Suggestion(
                "neverFetched",
                f"{len(executions)} completed execution(s) of {tenant} made {videos} final video(s) that nobody has "
                f"downloaded, {_span(fetches.grace_seconds)} or more after they completed: {_usd(saving)} of paid "
                "work went into them alone. If nobody needs these videos, stop submitting such plans; if a client "
                "should download them (a webhook receiver, an SDK), check that it does",
                saving,
                [each[0] for each in executions],
            )
        )
    return suggested


def suggestions(spends: Sequence[NodeSpend], fetches: FetchRecords | None = None) -> list[Suggestion]:
    """What the spends show could be saved, biggest saving first. "Videos never fetched" only with `fetches`, and
    only for videos whose fetches are recorded (see the module docstring)."""
    paid = [spend for spend in spends if spend.state is NodeState.COMPLETED and spend.cost_usd > 0]
    found = [
        *(s for s in (_identical_recomputes(paid), _paid_failures(paid)) if s is not None),
        *_cheaper_providers(paid),
        *_fallbacks_taken([spend for spend in spends if spend.state is NodeState.COMPLETED]),
        *(_never_fetched(spends, fetches) if fetches is not None else ()),
    ]
    return sorted(found, key=lambda s: (-s.estimated_saving_usd, s.kind))


def suggestions_for(
    caller: Caller,
    records: RunRecords,
    store: SubmissionStore,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    served: Sequence[str] = (),
    grace_seconds: float = DEFAULT_UNFETCHED_GRACE_SECONDS,
) -> list[Suggestion]:
    """The caller's suggestions for executions submitted in the window; `served`: where result URLs whose fetches
    this deployment records begin (its API's `/artifacts/`), the only videos "never fetched" may name."""
    spends = list(node_spends(caller, records, store, start=start, end=end))
    later = list(node_spends(caller, records, store, start=end)) if end is not None else []
    return suggestions(spends, read_fetches(store, spends, served=served, grace_seconds=grace_seconds, later=later))

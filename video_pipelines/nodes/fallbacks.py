"""A node's providers in order (its own, then its `fallbacks`), which one it is on, and the circuits it calls through.

Each entry remembers its own provider job (`<index> <provider> <job id>` in the node's ledger): a fallback never
resumes the job of the entry before it, and a continuation resumes the entry whose job it finds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from video_pipelines.nodes.runner import NodeRun
from video_pipelines.plan.params import AddSubtitlesParams, AnyParams, GenerateVideoParams, LipSyncParams
from video_pipelines.providers import JobLedger
from video_pipelines.providers.context import Admission, CircuitGate
from video_pipelines.providers.pricing import DEFAULT_MODELS, PricingTable


@dataclass(frozen=True)
class ProviderChoice:
    """Entry `index` of a node's providers: (provider, model), the node's own first."""

    operation: str
    entries: tuple[tuple[str, str | None], ...]
    index: int = 0

    @classmethod
    def of(cls, params: AnyParams, recalled: str | None = None) -> ProviderChoice | None:
        """The node's first choice (None: it has no fallbacks); with `recalled`, its ledger's value, the entry
        whose provider job an earlier run of the node started."""
        if not isinstance(params, GenerateVideoParams | LipSyncParams | AddSubtitlesParams) or not params.fallbacks:
            return None
        operation = (
            "generateVideo"
            if isinstance(params, GenerateVideoParams)
            else ("lipSync" if isinstance(params, LipSyncParams) else "addSubtitles")
        )
        entries = ((params.provider, params.model), *((entry.provider, entry.model) for entry in params.fallbacks))
        choice = cls(operation, entries)
        index = _entry_of(recalled)
        return choice if index is None or not 0 <= index < len(entries) else cls(operation, entries, index)

    @property
    def provider(self) -> str:
        return self.entries[self.index][0]

    @property
    def model(self) -> str | None:
        return self.entries[self.index][1]

    @property
    def next(self) -> ProviderChoice | None:
        following = self.index + 1
        return ProviderChoice(self.operation, self.entries, following) if following < len(self.entries) else None

    @property
    def fallback_from(self) -> tuple[str, ...]:
        """The providers the node moved on from to get here, in order."""
        return tuple(provider for provider, _model in self.entries[: self.index])

    def applied(self, params: AnyParams) -> AnyParams:
        """`params` calling this entry's provider and model."""
        return params.model_copy(update={"provider": self.provider, "model": self.model})

    def made(self, run: NodeRun) -> NodeRun:
        """`run`'s video saying who made it and whom the node moved on from (a reuse of it says so too)."""
        return replace(run, result=replace(run.result, provider=run.provider, fallback_from=self.fallback_from))

    def ledger(self, node_ledger: JobLedger) -> JobLedger:
        return _EntryLedger(node_ledger, self)

    def billed_failure(self, node_ledger: JobLedger, pricing: PricingTable) -> float:
        """What this entry's failed attempts cost: a job it started was run, and billed, by the provider; with no
        output to bill by the second, its price per call. Nothing when no job was started (refused, circuit open)."""
        if self.ledger(node_ledger).recall() is None:
            return 0.0
        model = self.model or DEFAULT_MODELS.get((self.operation, self.provider))
        price = pricing.price(self.provider, model)
        return price.usd(0.0) if price is not None else 0.0


def _entry_of(recalled: str | None) -> int | None:
    index, _, _rest = (recalled or "").partition(" ")
    return int(index) if index.isdigit() else None


class _EntryLedger:
    def __init__(self, inner: JobLedger, choice: ProviderChoice) -> None:
        self._inner = inner
        self._prefix = f"{choice.index} {choice.provider} "

    def recall(self) -> str | None:
        value = self._inner.recall()
        return value.removeprefix(self._prefix) if value is not None and value.startswith(self._prefix) else None

    def remember(self, job_id: str) -> None:
        self._inner.remember(self._prefix + job_id)


class LoggedCircuits:
    """A `CircuitGate` that says once per provider, in the node's log, that an open circuit holds its calls back."""

    def __init__(self, gate: CircuitGate, log: Callable[[str], None], *, may_skip: bool) -> None:
        self._gate = gate
        self._log = log
        self._may_skip = may_skip
        self._told: set[str] = set()

    def admit(self, provider: str) -> Admission:
        admission = self._gate.admit(provider)
        if not admission.allowed and provider not in self._told:
            self._told.add(provider)
            then = "moving on to its fallback" if self._may_skip else "waiting for it (the node has no fallback)"
            self._log(f"{provider}'s circuit is open after transient failures across the deployment: {then}")
        elif admission.probe:
            self._log(f"{provider}'s circuit is half-open: this call is its probe")
        return admission

    def succeeded(self, provider: str) -> None:
        self._gate.succeeded(provider)

    def failed(self, provider: str) -> None:
        self._gate.failed(provider)

    def is_open(self, provider: str) -> bool:
        return self._gate.is_open(provider)

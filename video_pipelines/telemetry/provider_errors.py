"""Where a provider's error answers are reported: a sink the running node sets, the HTTP stack reports to.

The provider HTTP stack (`providers/http.py`) sees every answer but knows nothing of metrics
or databases; the `execute_plan` op knows the database but not the adapters' calls. A
`contextvars.ContextVar` joins them without threading a parameter through every adapter:
the op sets a sink around the node (`reporting_provider_errors`) and the stack reports each
non-2xx answer to the sink of the current context (`report_provider_error`). A context
variable rather than a module global, so nodes running at once in threads or tasks never
report into each other's sink; outside a node (a test, the CLI) nothing is reported.

No import beyond the standard library: the HTTP stack imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# (provider name, HTTP status) of one answer that was not 2xx.
ProviderErrorSink = Callable[[str, int], None]

_sink: ContextVar[ProviderErrorSink | None] = ContextVar("video_pipelines_provider_error_sink", default=None)


@contextmanager
def reporting_provider_errors(sink: ProviderErrorSink) -> Iterator[None]:
    """Report the provider error answers seen in this context, until the block ends, to `sink`."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


def report_provider_error(provider: str, status: int) -> None:
    """Tell the current context's sink (if any) that `provider` answered HTTP `status` (not 2xx)."""
    sink = _sink.get()
    if sink is not None:
        sink(provider, status)

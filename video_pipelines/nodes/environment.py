"""What a node needs from the deployment, and its access to stored videos."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from video_pipelines.errors import StorageError
from video_pipelines.net import AllowedHosts, fetch_to_file
from video_pipelines.plan.results import VideoResult
from video_pipelines.providers import RemoteFactory
from video_pipelines.providers.pricing import PricingTable
from video_pipelines.storage import ArtifactStore


@dataclass(frozen=True)
class NodeEnvironment:
    store: ArtifactStore
    allowed_hosts: AllowedHosts = field(default_factory=AllowedHosts.from_env)
    timeout: float | None = 1800.0
    workdir: Path | None = None
    pricing: PricingTable = field(default_factory=PricingTable.from_env)
    # Configured remote providers by name (the Dagster resources); others come from the environment.
    remote: Mapping[str, RemoteFactory] = field(default_factory=dict)


def local_copy(result: VideoResult, dest: Path, env: NodeEnvironment) -> Path:
    stored = from_store(env.store, env.store.key_for(result.sha256), dest)
    if stored is not None:
        return stored
    fetch_to_file(result.url, dest, allowed=env.allowed_hosts)
    return dest


def still_stored(store: ArtifactStore, warn: Callable[[str], None]) -> Callable[[VideoResult], bool]:
    """Whether `store` still holds an earlier video; when storage cannot say, taken as held (an outage must not
    make work, or a provider's bill, again: the taker fetches with retries and fails if it is gone).
    """

    def stored(result: VideoResult) -> bool:
        try:
            return store.exists(store.key_for(result.sha256))
        except StorageError as exc:
            warn(f"could not check that {result.url} is still stored ({exc}); taken as stored")
            return True

    return stored


def from_store(store: ArtifactStore, key: str, dest: Path) -> Path | None:
    """The store's own local file for `key`, else `dest` downloaded; None: not stored."""
    local = store.local_path(key)
    if local is not None and local.exists():
        return local
    if store.exists(key):
        return store.fetch_to(key, dest)
    return None

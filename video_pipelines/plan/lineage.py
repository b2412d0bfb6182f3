"""Lineage hashes: a node's operation, normalised params and inputs' lineage as one hash (equal = same video)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from video_pipelines.plan.model import Plan, execution_order, normalised_node_params

LINEAGE_VERSION = 1


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def lineage_hashes(
    plan: Plan, *, external: Mapping[str, str] | None = None, base_final: str | None = None
) -> dict[str, str]:
    """Each node's lineage hash; `external`: of the base's nodes, `base_final`: of its final output."""
    external = external or {}
    hashes: dict[str, str] = {}
    for node in execution_order(plan):
        inputs = [hashes[dep] if dep in hashes else external.get(dep, f"missing:{dep}") for dep in node.depends_on]
        if node.consumes_inputs and not node.depends_on and base_final is not None:
            inputs = [base_final]
        payload = {
            "v": LINEAGE_VERSION,
            "operation": node.operation.value,
            "params": normalised_node_params(node),
            "inputs": inputs,
        }
        hashes[node.id] = hashlib.sha256(canonical_json(payload).encode()).hexdigest()
    return hashes

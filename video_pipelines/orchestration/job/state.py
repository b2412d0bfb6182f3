"""Dagster's names for the steps of execute_plan: a node's mapping key and step key."""

from __future__ import annotations

import hashlib
import re

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_]")
NODE_OP = "node"  # the name of the op that runs each node: its steps are `node[<mapping key>]`


def mapping_key(node_id: str) -> str:
    """A safe Dagster mapping key for a node id: '-' is refused; the hash keeps `a-b` and `a_b` apart."""
    if not _UNSAFE_KEY_CHARS.search(node_id):
        return node_id
    digest = hashlib.sha256(node_id.encode()).hexdigest()[:6]
    return f"{_UNSAFE_KEY_CHARS.sub('_', node_id)}_{digest}"


def step_key(node_id: str) -> str:
    return f"{NODE_OP}[{mapping_key(node_id)}]"

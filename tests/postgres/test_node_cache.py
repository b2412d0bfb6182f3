"""unit/test_node_cache.py's tests on a database, on PostgreSQL."""

from ..unit.test_node_cache import *  # noqa: F403

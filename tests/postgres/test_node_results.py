"""unit/test_node_results.py's tests on a database, on PostgreSQL."""

from ..unit.test_node_results import *  # noqa: F403

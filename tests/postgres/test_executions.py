"""unit/test_executions.py's tests on a database, on PostgreSQL."""

from ..unit.test_executions import *  # noqa: F403

"""unit/test_attempts.py's tests on a database, on PostgreSQL."""

from ..unit.test_attempts import *  # noqa: F403

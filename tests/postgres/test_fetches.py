"""unit/test_fetches.py's tests on a database, on PostgreSQL."""

from ..unit.test_fetches import *  # noqa: F403

"""unit/test_breakers.py's tests on a database, on PostgreSQL."""

from ..unit.test_breakers import *  # noqa: F403

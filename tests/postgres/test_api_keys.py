"""unit/test_api_keys.py's tests on a database, on PostgreSQL."""

from ..unit.test_api_keys import *  # noqa: F403

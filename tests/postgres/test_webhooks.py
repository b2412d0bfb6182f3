"""unit/test_webhooks.py's tests on a database, on PostgreSQL."""

from ..unit.test_webhooks import *  # noqa: F403

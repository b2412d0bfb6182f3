"""unit/test_worker_beats.py's tests on a database, on PostgreSQL."""

from ..unit.test_worker_beats import *  # noqa: F403

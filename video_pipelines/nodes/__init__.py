"""A plan node's life in one place: its inputs resolved, its operation run, head starts, media checks, retries,
its result.
"""

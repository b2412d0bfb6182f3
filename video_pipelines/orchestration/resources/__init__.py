"""Dagster resources: artifact storage, media policy, the submission store and the remote providers."""

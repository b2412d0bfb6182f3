"""The errors of the submission store.

VideoPipelineError
└── SubmissionStoreError     a refused input (bad priority, a secret without a URL, a plan
    │                        that is not JSON) or a database the store cannot open
    └── SecretKeyError       the webhook-secret key is missing, malformed, or not the key
                             the secret was encrypted with
"""

from __future__ import annotations

from video_pipelines.errors import VideoPipelineError


class SubmissionStoreError(VideoPipelineError):
    """The submission store refused an input or cannot use its database."""


class SecretKeyError(SubmissionStoreError):
    """The key that encrypts webhook secrets is missing, malformed or not the one a secret was encrypted with."""

"""The asset catalog: one asset per operation kind, previews, media checks and retention."""

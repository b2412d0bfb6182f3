"""Example execution plans in the SDK wire format (the same as shared/plans)."""

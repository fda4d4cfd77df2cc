"""Shared code of the clickstream services (importable library, no entry points)."""

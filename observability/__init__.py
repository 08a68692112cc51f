"""Observability: what the processes tell about themselves besides their logs."""

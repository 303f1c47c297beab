"""Offline eval suites: quality on datasets and written cases, separate from tests; CI gates on thresholds."""

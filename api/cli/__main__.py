"""`python -m api.cli` (how `revloop up` starts the API and the worker)."""

from api.cli import main

main()

"""HTTP API (FastAPI), auth, and the `revloop` command line."""

"""Pages of the Streamlit review app; each renders with a RevloopClient (the API is the only backend)."""

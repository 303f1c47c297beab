"""Review queue: closers' decisions, their execution, and the Streamlit review app."""

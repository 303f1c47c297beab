"""Pages of the Streamlit review app; each renders with a RevloopClient (the API is the only backend).

pages.py lists them (title, URL, file, roles); app.py hands a role's list to st.navigation.
"""

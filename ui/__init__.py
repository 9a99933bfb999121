"""Streamlit helpers shared by the pages: session state, the job handle, run pickers. UI only."""

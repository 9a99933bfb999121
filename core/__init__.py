"""The training engine of the CNN dashboard. Nothing below here imports Streamlit."""

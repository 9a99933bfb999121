"""CNN training dashboard: `streamlit run dashboard.py`."""

import streamlit as st

from ui.app import app_pages, run_page
from ui.common import presentation_switch, sidebar_status

st.set_page_config(page_title="CNN training dashboard", page_icon="🧠", layout="wide")

page = st.navigation(app_pages())

sidebar_status(live=page.title != "Train")  # the Train page shows the job live itself
presentation_switch()

run_page(page)

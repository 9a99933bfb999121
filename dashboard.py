"""CNN training dashboard: `streamlit run dashboard.py`."""

import streamlit as st

from ui.common import sidebar_status

st.set_page_config(page_title="CNN training dashboard", page_icon="🧠", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/train.py", title="Train", icon="🏋️"),
    st.Page("pages/results.py", title="Results", icon="🎯"),
    st.Page("pages/network.py", title="Network", icon="🧩"),
    st.Page("pages/data.py", title="Data", icon="🖼️"),
    st.Page("pages/speed.py", title="Speed", icon="⚡"),
]
page = st.navigation(pages)

sidebar_status(live=page.title != "Train")  # the Train page shows the job live itself

page.run()

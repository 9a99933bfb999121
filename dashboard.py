"""CNN training dashboard: `streamlit run dashboard.py`.

This file is both the app's server and its page script. `streamlit run` finds `app` (an `st.App`) and
serves it: Streamlit's own server with the live view's routes added (ui/live.py). Streamlit then runs
this file as `__main__` for every page view, which draws the app's pages.
"""

import streamlit as st

if __name__ == "__main__":  # a page view
    from ui import garbage
    from ui.app import app_pages, run_page
    from ui.classroom import read_teacher_key, teacher_notice
    from ui.common import presentation_switch
    from ui.job_status import sidebar_status

    garbage.collect()  # what earlier page runs left (their tensors, images): at most every 2 s, milliseconds

    st.set_page_config(page_title="CNN training dashboard", page_icon=":material/neurology:", layout="wide")
    read_teacher_key()  # ?teacher=KEY: this session is the teacher's (and the key leaves the URL)
    page = st.navigation(app_pages())
    sidebar_status(live=page.title != "Train")  # the Train page shows the job live itself
    presentation_switch()
    teacher_notice()  # a wrong key: one line, on whichever page it was given to
    run_page(page)
else:  # the server, as `streamlit run dashboard.py` (or `uvicorn dashboard:app`) starts it
    from starlette.middleware import Middleware

    from core.classroom import announce_teacher_key
    from ui import garbage
    from ui.board_live import ROUTES as BOARD_ROUTES
    from ui.classroom import OwnerCookie
    from ui.live import ROUTES
    from ui.own_view import ROUTES as OWN_ROUTES
    from ui.run_downloads import ROUTES as RUN_ROUTES
    from ui.step_view import warm_up_in_background

    app = st.App("dashboard.py", routes=[*ROUTES, *BOARD_ROUTES, *OWN_ROUTES, *RUN_ROUTES],
                 middleware=[Middleware(OwnerCookie)])
    announce_teacher_key(f"http://localhost:{st.get_option('server.port')}")
    warm_up_in_background().add_done_callback(lambda _: garbage.freeze_imports())

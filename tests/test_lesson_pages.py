"""A lesson on the Train page and after it (AppTest): Leave the lesson gives the teacher's own settings back, the
menu's Train is no lesson, the folded settings name the run shown, a second tab offers the browser's own job."""

from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, wait_for
from tests.test_pages import page


def lesson_link(at: AppTest, **params) -> AppTest:
    for name, value in params.items():
        at.query_params[name] = value
    return at.run()


def test_leave_the_lesson_unlocks_and_gives_back_the_settings_from_before_it(app_env):
    at = page("train").run()
    at.selectbox(key="train_dataset").set_value("shapes").run()
    at.select_slider(key="train_lr").set_value(0.01).run()
    at.slider(key="train_epochs").set_value(5).run()
    lesson_link(at, dataset="shapes", lr="0.1", epochs="1", lock="lr,epochs", lesson="5")
    assert at.select_slider(key="train_lr").value == 0.1 and at.select_slider(key="train_lr").disabled
    assert at.slider(key="train_epochs").value == 1 and at.slider(key="train_epochs").disabled
    next(b for b in at.button if b.label == "Leave the lesson").click().run()
    assert at.select_slider(key="train_lr").value == 0.01 and not at.select_slider(key="train_lr").disabled
    assert at.slider(key="train_epochs").value == 5 and not at.slider(key="train_epochs").disabled
    assert not any(b.label == "Leave the lesson" for b in at.button)
    assert "lock" not in at.query_params and "lesson" not in at.query_params
    assert not at.exception


def test_the_train_page_opened_from_the_menu_is_no_lesson(app_env):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run()
    at.switch_page("pages/lessons.py").run()
    at.switch_page("pages/train.py")
    lesson_link(at, dataset="shapes", lr="0.1", lock="lr", lesson="5")
    assert at.select_slider(key="train_lr").disabled
    at.switch_page("pages/home.py").run()
    at.query_params.clear()
    at.switch_page("pages/train.py").run()  # from the menu: no link
    assert not at.select_slider(key="train_lr").disabled and not any(b.label == "Leave the lesson" for b in at.button)


def test_the_folded_settings_name_the_run_shown_and_say_what_the_controls_changed(app_env):
    at = page("train").run()
    at.selectbox(key="train_dataset").set_value("shapes").run()
    at.slider(key="train_epochs").set_value(30).run()
    next(b for b in at.button if b.label == "Train").click().run()
    (job,) = app_env.jobs()
    label = at.expander[0].label
    assert "lr 0.001" in label and "30 epochs" in label
    at.select_slider(key="train_lr").set_value(0.002).run()
    assert at.expander[0].label == label  # still the run's, not the controls'
    assert any("differ from the run shown" in i.value and "learning rate 0.002" in i.value for i in at.info)
    job.stop()


def test_a_second_tab_of_the_same_browser_offers_its_job(app_env):
    first = page("train").run()
    first.selectbox(key="train_dataset").set_value("shapes").run()
    first.slider(key="train_epochs").set_value(30).run()
    next(b for b in first.button if b.label == "Train").click().run()
    (job,) = app_env.jobs()
    wait_for(lambda: job.snapshot().active)
    second = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    second.session_state["_owner"] = first.session_state["_owner"]  # the same browser's cookie
    second.run()
    sidebar = " ".join(m.value for m in second.sidebar.markdown)
    assert "in another tab" in sidebar
    stranger = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run()
    assert not any("in another tab" in m.value for m in stranger.sidebar.markdown)
    job.stop()

"""Each page run as Streamlit runs it (AppTest): no exception, and the widgets drive the real engine."""

import time

import pytest
from streamlit.testing.v1 import AppTest

import core.jobs
from core.data import load_dataset
from tests.conftest import ROOT


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    """A fresh job manager (thread workers, so no 5 s torch import per test) and a cached Shapes set."""
    monkeypatch.setenv("CNN_DASHBOARD_DATA", str(tmp_path / "data"))
    load_dataset("shapes", tmp_path / "data")
    manager = core.jobs.JobManager(max_running=1, runs_root=str(tmp_path / "runs"), worker="thread")
    monkeypatch.setattr(core.jobs, "_manager", manager)
    yield manager
    manager.shutdown()


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=60)


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def command(at: AppTest) -> str:
    return at.code[0].value


@pytest.mark.parametrize("name", ["home", "train", "results", "network", "data", "speed"])
def test_every_page_runs_without_a_run_or_a_job(app_env, name):
    at = page(name).run()
    assert not at.exception, at.exception


def test_dashboard_entry_point_runs(app_env):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run()
    assert not at.exception and at.title[0].value.startswith("Train a CNN live")


def test_presets_and_knobs_change_the_config(app_env):
    at = page("train").run()
    assert "--dataset cifar10" in command(at) and "--lr" not in command(at)  # the tutorial's defaults
    at.radio(key="train_preset").set_value("Fast").run()
    assert "--batch-size 128" in command(at) and "--schedule one-cycle" in command(at)
    at.select_slider(key="train_lr").set_value(0.01).run()
    assert "--lr 0.01" in command(at) and at.radio(key="train_preset").value == "Custom"
    at.selectbox(key="train_dataset").set_value("Shapes (offline)").run()
    at.slider(key="train_conv_width").set_value(12).run()
    assert "--dataset shapes" in command(at) and "--width 12" in command(at)
    assert not at.exception


def test_bad_folder_is_one_clear_message_and_starts_nothing(app_env, tmp_path):
    at = page("train").run()
    at.selectbox(key="train_dataset").set_value("Image folder").run()
    at.text_input(key="train_folder").input(str(tmp_path / "nowhere")).run()
    at.button[0].click().run()
    assert any("does not exist" in e.value for e in at.error)
    assert app_env.jobs() == [] and not at.exception


def test_train_button_runs_a_job_and_shows_its_accuracy(app_env):
    at = page("train").run()
    at.selectbox(key="train_dataset").set_value("Shapes (offline)").run()
    at.slider(key="train_epochs").set_value(1).run()
    at.select_slider(key="train_batch_size").set_value(64).run()
    at.select_slider(key="train_lr").set_value(0.01).run()
    at.button[0].click().run()
    (job,) = app_env.jobs()
    assert job.config.dataset == "shapes" and job.config.batch_size == 64 and job.config.epochs == 1
    wait_for(lambda: job.status == "finished")
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"].endswith("%") and float(metrics["Images/s"].replace(",", "")) > 0
    assert any("finished" in m.value for m in at.markdown)
    assert not at.exception


def test_second_train_asks_before_starting_another(app_env):
    at = page("train").run()
    at.selectbox(key="train_dataset").set_value("Shapes (offline)").run()
    at.slider(key="train_epochs").set_value(30).run()
    at.button[0].click().run()
    wait_for(lambda: app_env.jobs()[0].status == "running")
    at.button[0].click().run()
    assert any("still running" in w.value for w in at.warning)
    assert len(app_env.jobs()) == 1
    next(b for b in at.button if b.label == "Keep the running job").click().run()
    assert len(app_env.jobs()) == 1 and app_env.jobs()[0].status == "running"
    app_env.jobs()[0].stop()

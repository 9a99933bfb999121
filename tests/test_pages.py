"""Each page run as Streamlit runs it (AppTest): no exception, and the widgets drive the real engine."""

import json
import os

import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.config import PRESETS, TrainConfig
from tests.conftest import ROOT, wait_for


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=60)


def command(at: AppTest) -> str:
    return at.code[0].value


@pytest.mark.parametrize("name", ["home", "lessons", "train", "step", "board", "results", "network", "data", "own",
                                  "speed", "runs"])
def test_every_page_runs_without_a_run_or_a_job(app_env, name):
    """Each page as the app runs it: through dashboard.py's navigation (the Lessons page's links need it)."""
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run()
    at.switch_page(f"pages/{name}.py").run()
    assert not at.exception, at.exception
    assert not at.error  # nothing said wrong; drawn, with its title (the Step page's is its step line)
    assert (at.title and at.title[0].value) or any(m.value.startswith("**Step 1**") for m in at.markdown)


def test_an_own_dataset_is_chosen_by_name_trained_from_its_link_and_said_when_it_cannot_train(app_env, tmp_path):
    from core.datasets import add_pictures, create_own
    from tests.test_datasets import picture

    def train_page(**query) -> AppTest:  # through dashboard.py, as the app runs it: the page links need it
        at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
        for name, value in query.items():
            at.query_params[name] = value
        return at.run().switch_page("pages/train.py").run()

    data_dir = tmp_path / "data"
    at = train_page()
    at.selectbox(key="train_dataset").set_value("own").run()
    assert [e.value for e in at.error] == [  # said once, and where to make one
        "No own datasets on this server yet: make one from your pictures on the Own pictures page."]
    create_own(data_dir, "fruit", ["apple", "banana"])
    create_own(data_dir, "pets", ["cat", "dog"])
    for cls, colour in (("apple", (200, 0, 0)), ("banana", (220, 220, 0))):
        add_pictures(data_dir, "fruit", cls, [(f"{i}.png", picture(colour, i)) for i in range(10)])
    at.run()
    assert at.selectbox(key="train_own").options == ["fruit", "pets"]
    at.selectbox(key="train_own").set_value("pets").run()
    assert "--dataset own:pets" in command(at) and at.query_params["own"] in ("pets", ["pets"])
    next(b for b in at.button if b.label == "Train").click().run()
    assert any("cannot train yet. Still missing: 10 pictures of cat, 10 pictures of dog" in e.value
               for e in at.error), [e.value for e in at.error]
    assert not at.exception

    link = train_page(dataset="own", own="fruit", epochs="20", batch_size="8", lr="0.01")  # the Own pictures link
    assert "--dataset own:fruit" in command(link) and "--epochs 20" in command(link)
    assert not link.exception and not link.warning


def test_the_own_pictures_page_says_when_a_linked_dataset_is_not_on_this_server(app_env):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    at.query_params["own"] = "fruit"
    at.run().switch_page("pages/own.py").run()
    assert [w.value for w in at.warning] == ["There is no own dataset fruit on this server (deleted, or made on "
                                             "another): choose one here, or make it."]
    assert at.selectbox(key="own_dataset").value == "" and not at.exception  # a new dataset, then


def test_dashboard_entry_point_runs(app_env):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run()
    assert not at.exception and at.title[0].value.startswith("Train a CNN live")


def test_presets_and_knobs_change_the_config(app_env):
    at = page("train").run()
    assert "--dataset shapes" in command(at) and "--lr" not in command(at)  # the tutorial's, offline: Shapes
    assert any("cannot be downloaded" in i.value for i in at.info)  # and it says why
    at.radio(key="train_preset").set_value("fast").run()
    assert f"--batch-size {PRESETS['fast']['batch_size']}" in command(at) and "--schedule one-cycle" in command(at)
    at.select_slider(key="train_lr").set_value(0.01).run()
    assert "--lr 0.01" in command(at) and at.radio(key="train_preset").value == "custom"
    at.slider(key="train_conv_width").set_value(12).run()
    assert "--width 12" in command(at)
    assert not at.exception


def through_the_app(name: str, title: str) -> AppTest:
    """One page run as dashboard.py runs it on every page view (through ui.app.run_page), here the default page:
    AppTest's switch_page runs the page script itself after the first run."""
    def app(name, title):
        import streamlit as st

        from ui.app import ROOT, run_page

        run_page(st.navigation([st.Page(ROOT / "pages" / f"{name}.py", title=title, default=True)]))

    return AppTest.from_function(app, args=(name, title), default_timeout=60)


@pytest.mark.parametrize("name, title, control, param, moved, stale", [
    ("train", "Train", "train_lr", "lr", 0.01, "0.002"),
    ("network", "Network", "network_conv_width", "conv_width", 12, "30")])
def test_a_rerun_with_an_older_url_keeps_what_the_control_was_moved_to(app_env, name, title, control, param, moved,
                                                                       stale):
    """ui/url_state.py's one exception to Streamlit's bind="query-params": on a rerun (a control moved) the browser
    can still send the URL the run before wrote; read as a link, it would move the control back while it is
    dragged. A new session opened with that URL (a link) takes it."""
    widget = lambda at: at.select_slider(key=control) if name == "train" else at.slider(key=control)
    at = through_the_app(name, title).run()
    widget(at).set_value(moved).run()
    assert at.query_params[param] in (str(moved), [str(moved)])
    at.query_params[param] = stale  # what the browser still had
    at.run()
    assert widget(at).value == moved and not at.exception
    linked = through_the_app(name, title)
    linked.query_params[param] = stale
    assert str(widget(linked.run()).value) == stale and not linked.exception


@pytest.mark.parametrize("preset", ["tutorial", "fast"])
def test_a_preset_chosen_on_the_page_trains_exactly_what_the_cli_builds_from_it(app_env, preset):
    """Field by field: the Fast preset once trained at learning rate 0.0001 from the page (its 0.15 was not
    one of the slider's options) while this test's predecessor checked only its batch size and schedule."""
    from core.device import resolve_device
    from core.train import build_parser, config_from_args

    at = page("train").run()
    at.select_slider(key="train_lr").set_value(0.05).run()  # away from both presets first
    at.radio(key="train_preset").set_value(preset).run()
    next(b for b in at.button if b.label == "Train").click().run()
    (job,) = app_env.jobs()
    job.stop()
    cli = config_from_args(build_parser().parse_args(["--preset", preset, "--dataset", "shapes",
                                                      "--data-dir", os.environ["CNN_DASHBOARD_DATA"]]))
    page_config, cli_config = job.config.to_dict(), cli.to_dict()
    assert page_config.pop("device") == str(resolve_device(cli_config.pop("device")))  # auto: the best one here
    assert page_config == cli_config


def test_a_lesson_link_sets_the_controls_drops_what_it_cannot_use_and_locks(app_env):
    at = page("train")
    for name, value in dict(dataset="shapes", lr="0.01", momentum="0.5", batch_size="16", conv_width="12",
                            epochs="1", seed="banana", colour="red", lock="lr,momentum").items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, at.exception
    assert at.select_slider(key="train_lr").value == 0.01 and at.slider(key="train_momentum").value == 0.5
    assert at.select_slider(key="train_batch_size").value == 16 and at.slider(key="train_conv_width").value == 12
    assert at.slider(key="train_epochs").value == 1 and at.radio(key="train_preset").value == "custom"
    assert at.number_input(key="train_seed").value == 0  # dropped, with a line saying so
    warnings = [w.value for w in at.warning]
    assert any("seed=banana was ignored" in w for w in warnings) and any("colour" in w for w in warnings)
    assert at.select_slider(key="train_lr").disabled and at.slider(key="train_momentum").disabled
    assert not at.slider(key="train_epochs").disabled and not at.select_slider(key="train_batch_size").disabled
    assert any("set by the lesson" in c.value for c in at.caption)
    query = {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert query["lr"] == "0.01" and query["lock"] == "lr,momentum" and "colour" not in query


def test_bad_folder_is_one_clear_message_and_starts_nothing(app_env, tmp_path):
    at = page("train").run()
    at.selectbox(key="train_dataset").set_value("folder").run()
    at.text_input(key="train_folder").input(str(tmp_path / "nowhere")).run()
    next(b for b in at.button if b.label == "Train").click().run()
    assert any("there is no folder" in e.value for e in at.error)
    assert app_env.jobs() == [] and not at.exception


def test_train_button_runs_a_job_and_shows_its_accuracy(app_env):
    at = page("train").run()
    at.selectbox(key="train_dataset").set_value("shapes").run()
    at.slider(key="train_epochs").set_value(1).run()
    at.select_slider(key="train_batch_size").set_value(64).run()
    at.select_slider(key="train_lr").set_value(0.01).run()
    next(b for b in at.button if b.label == "Train").click().run()
    (job,) = app_env.jobs()
    assert job.config.dataset == "shapes" and job.config.batch_size == 64 and job.config.epochs == 1
    wait_for(lambda: job.status == "finished")
    at.run()
    metrics = shown_metrics(at)
    rate = metrics["Images/s (whole run)"]  # the run's, as in its summary: not the last interval's
    assert metrics["Test accuracy (epoch 1)"].endswith("%")
    assert rate == f"{job.snapshot().end['images_per_second']:,.0f}"
    assert status_shown(at) == "finished"
    assert not at.exception


def test_a_reloaded_page_follows_its_job_through_the_url(app_env):
    at = page("train").run()
    at.selectbox(key="train_dataset").set_value("shapes").run()
    at.slider(key="train_epochs").set_value(3).run()
    next(b for b in at.button if b.label == "Train").click().run()
    (job,) = app_env.jobs()
    token = at.query_params.get("job")
    token = token[0] if isinstance(token, list) else token
    assert token == job.token and len(token) >= 16  # unguessable: not the job's number
    other = page("train")  # another browser, given the URL: it follows the job and cannot stop it
    other.query_params["job"] = token
    other.run()
    assert status_shown(other) in ("starting", "running") and not other.exception
    assert not any(b.label in ("Stop", "Pause") for b in other.button)
    assert job.snapshot().active
    reloaded = page("train")  # the same browser reloaded: a new session with the browser's owner cookie
    reloaded.session_state["_owner"] = at.session_state["_owner"]
    reloaded.query_params["job"] = token
    reloaded.run()
    assert status_shown(reloaded) in ("starting", "running") and not reloaded.exception
    assert any(b.label == "Stop" and not b.disabled for b in reloaded.button)  # its controls work here too
    next(b for b in reloaded.button if b.label == "Stop").click().run()
    wait_for(lambda: job.status == "stopped")
    stranger = page("train")
    stranger.query_params["job"] = "not-a-job"
    stranger.run()
    assert status_shown(stranger) is None and not stranger.exception
    assert "job" not in stranger.query_params


def sidebar_app(live: bool) -> AppTest:
    def app(live):
        import streamlit as st

        from ui.job_status import sidebar_status

        st.session_state.job_id = 1
        sidebar_status(live=live)

    return AppTest.from_function(app, args=(live,), default_timeout=60)


def test_the_sidebar_follows_the_job_except_where_the_train_page_does(app_env):
    job = app_env.start(TrainConfig(dataset="shapes", data_dir=os.environ["CNN_DASHBOARD_DATA"], epochs=30,
                                    batch_size=4))
    assert job.id == 1
    wait_for(lambda: job.snapshot().losses)
    elsewhere, train_page = sidebar_app(live=True).run(), sidebar_app(live=False).run()
    assert any("epoch 1 of 30" in m.value for m in elsewhere.sidebar.markdown)
    assert len(elsewhere.sidebar.get("progress")) == 1
    # the Train page's own status view redraws every 2 s; the sidebar there does not repeat it
    assert any("on this page" in c.value for c in train_page.sidebar.caption)
    assert not train_page.sidebar.get("progress")
    job.stop()
    wait_for(lambda: job.status == "stopped")
    for at in (elsewhere.run(), train_page.run()):
        assert any("stopped" in m.value for m in at.sidebar.markdown) and not at.exception


def live_elements(at: AppTest) -> dict[str, dict]:
    """The page's live elements (custom components) by key, with the data each was drawn with."""
    return {e.proto.id.rsplit("-", 1)[-1]: json.loads(e.proto.json) for e in at.get("bidi_component")}


def status_shown(at: AppTest) -> str | None:
    """The job's status word on the Train page, as its live element was drawn with it."""
    live = live_elements(at).get("live_numbers")
    return live["state"]["status_line"]["word"] if live else None


def shown_metrics(at: AppTest) -> dict[str, str]:
    """The metrics (label: value) the Train page's live element was drawn with."""
    return {m["label"]: m["value"] for m in live_elements(at)["live_numbers"]["state"]["metrics"]}


def start_long_job(at: AppTest, app_env):
    at.selectbox(key="train_dataset").set_value("shapes").run()
    at.slider(key="train_epochs").set_value(30).run()
    next(b for b in at.button if b.label == "Train").click().run()
    (job,) = app_env.jobs()
    wait_for(lambda: len(job.snapshot().losses) > 0)
    return job


def test_while_a_job_trains_the_browser_follows_its_route_and_then_the_page_shows_the_end(app_env):
    at = page("train").run()
    job = start_long_job(at, app_env)
    at.run()
    live = live_elements(at)
    url = f"api/live/{job.token}"  # the app's own route, from the job in memory (ui/live.py)
    assert live["live_numbers"]["feed"] == url and live["live_numbers"]["state"]["status"] == "running"
    assert live["running_loss_chart"]["feed"] == url and live["test_accuracy_chart"]["series"] == "test_accuracy"
    assert not at.metric  # one way to draw the numbers: the live element
    assert live["live_numbers"]["state"]["status_line"]["word"] == "running"  # so is the status line
    assert live["live_numbers"]["state"]["phase"] == "running" and not any("Status:" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Stop").click().run()
    wait_for(lambda: job.status == "stopped")
    at.run()  # as the live element asks when the status it follows changes
    live = live_elements(at)
    assert live["live_numbers"]["feed"] is None and live["running_loss_chart"]["feed"] is None  # nothing to follow
    metrics = shown_metrics(at)
    assert set(metrics) == {"Images/s (whole run)", "Running loss", "Test accuracy"}
    assert metrics["Test accuracy"] == "–"  # stopped before epoch 1 ended: no "after epoch 1" promise
    assert status_shown(at) == "stopped" and live["live_numbers"]["state"]["progress"] is None
    assert any("Stopped: the history so far is kept" in i.value for i in at.info) and not at.exception


def test_second_train_asks_before_starting_another(app_env):
    at = page("train").run()
    at.selectbox(key="train_dataset").set_value("shapes").run()
    at.slider(key="train_epochs").set_value(30).run()
    next(b for b in at.button if b.label == "Train").click().run()
    wait_for(lambda: app_env.jobs()[0].status == "running")
    next(b for b in at.button if b.label == "Train").click().run()
    assert any("still running" in w.value for w in at.warning)
    assert len(app_env.jobs()) == 1
    next(b for b in at.button if b.label == "Keep the running job").click().run()
    assert len(app_env.jobs()) == 1 and app_env.jobs()[0].status == "running"
    app_env.jobs()[0].stop()


# -- pages that show finished work ------------------------------------------------------------------

@pytest.fixture
def finished_run(app_env, tmp_path, small_shapes):
    """One finished Shapes run on disk, trained by the real engine; the cache holds the same small set."""
    from core.config import TrainConfig
    from core.data import _write_cache, shapes_cache
    from core.loop import run_training

    small_shapes.name = "shapes"
    _write_cache(shapes_cache(tmp_path / "data"), small_shapes)
    config = TrainConfig(dataset="shapes", data_dir=str(tmp_path / "data"), epochs=2, batch_size=16, lr=0.02)
    events = list(run_training(config, runs_root=app_env.runs_root, dataset=small_shapes))
    return events[-1]["run_dir"]


def plotly_specs(at: AppTest) -> list[dict]:
    import json

    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def test_results_page_shows_the_grid_per_class_and_confusion(finished_run):
    at = page("results").run()
    assert not at.exception, at.exception
    assert len(at.get("image")) >= 2  # prediction grid and top losses
    specs = {s["layout"]["title"]["text"]: s for s in plotly_specs(at)}
    bars = specs["Per-class accuracy"]["data"]
    assert all(b["type"] == "bar" for b in bars) and sum(len(b["x"]) for b in bars) == 10
    assert specs["Confusion matrix"]["data"][0]["type"] == "heatmap"
    at.checkbox[0].check().run()  # Only mistakes
    assert not at.exception
    last = {s["layout"]["title"]["text"]: s for s in plotly_specs(at)}["Per-class accuracy"]["data"]
    at.slider(key="results_epoch").set_value(1).run()  # replay the first epoch
    first = {s["layout"]["title"]["text"]: s for s in plotly_specs(at)}["Per-class accuracy"]["data"]
    assert not at.exception and first != last


def test_results_page_reports_a_damaged_run(app_env, finished_run):
    import os

    damaged = os.path.join(app_env.runs_root, "99999999-999999-shapes-dead")
    os.makedirs(damaged)
    open(os.path.join(damaged, "config.json"), "w").write("{broken")
    at = page("results").run()
    at.selectbox(key="results_run").set_value("99999999-999999-shapes-dead").run()
    assert not at.exception and any("cannot be shown" in e.value for e in at.error)


def test_network_page_follows_the_conv_width(finished_run):
    at = page("network").run()
    assert not at.exception, at.exception
    table = at.table[0].value
    assert table.loc["conv1", "Output shape"] == "6x28x28" and table.loc["flatten", "Output shape"] == "400"
    assert any("62,006 parameters" in m.value for m in at.markdown)
    at.slider(key="network_conv_width").set_value(12).run()
    table = at.table[0].value
    assert table.loc["conv1", "Output shape"] == "12x28x28" and table.loc["pool1", "Output shape"] == "12x14x14"
    assert len(at.get("image")) >= 2  # filters and feature maps of the finished run


def test_data_page_shows_images_counts_and_normalization(app_env):
    at = page("data").run()
    assert not at.exception, at.exception
    titles = [s["layout"]["title"]["text"] for s in plotly_specs(at)]
    assert "Images per class" in titles and "Pixel values before and after normalization" in titles
    assert len(at.get("image")) == 1


def test_speed_page_runs_a_sweep(app_env):
    at = page("speed").run()
    at.multiselect(key="speed_widths").set_value([6, 16]).run()
    at.multiselect(key="speed_batches").set_value([4]).run()
    at.slider(key="speed_steps").set_value(3).run()
    next(b for b in at.button if b.label == "Run sweep").click().run()
    (job,) = app_env.jobs()
    wait_for(lambda: job.status == "finished")
    at.run()
    assert not at.exception, at.exception
    chart = next(s for s in plotly_specs(at) if s["layout"]["title"]["text"] == "Training speed")
    assert all(list(t["x"]) == [6, 16] for t in chart["data"])


def test_speed_page_warns_of_a_busy_machine_under_a_scaling_measurement(app_env):
    from core.speed import keep_result
    from ui.common import runs_root

    row = dict(device="cpu", width=6, processes=1, threads=1, batch_size=64, global_batch_size=64,
               images_per_second=900.0, efficiency=1.0)
    keep_result(runs_root(), "scaling", {"rows": [{**row, "cpu_share": 0.99, "busy": False}]})
    at = page("speed").run()
    assert not at.exception and not [w for w in at.warning if "busy" in w.value]
    keep_result(runs_root(), "scaling", {"rows": [{**row, "cpu_share": 0.39, "busy": True},
                                                  {**row, "processes": 2, "cpu_share": 0.8, "busy": False}]})
    at = page("speed").run()
    (warning,) = [w.value for w in at.warning if "busy" in w.value]
    assert "1 of these bars" in warning and "39%" in warning


def test_knobs_survive_a_visit_to_another_page(app_env):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run()
    at.switch_page("pages/train.py").run()
    at.slider(key="train_conv_width").set_value(12).run()
    at.selectbox(key="train_dataset").set_value("shapes").run()
    at.switch_page("pages/network.py").run()
    assert at.slider(key="network_conv_width").value == 12  # the Network page starts from the Train width
    at.switch_page("pages/train.py").run()
    assert at.slider(key="train_conv_width").value == 12
    assert at.selectbox(key="train_dataset").value == "shapes" and not at.exception


@pytest.mark.parametrize("name", ["train", "data"])
def test_a_folder_path_survives_visits_to_another_page(app_env, tmp_path, name):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run()

    def visit_home_and_come_back():
        at.switch_page("pages/home.py").run()
        at.switch_page(f"pages/{name}.py").run()
        assert not at.exception, at.exception

    at.switch_page(f"pages/{name}.py").run()
    at.selectbox(key=f"{name}_dataset").set_value("folder" if name == "train" else "Image folder").run()
    at.text_input(key=f"{name}_folder").input(str(tmp_path / "first")).run()
    visit_home_and_come_back()
    assert at.text_input(key=f"{name}_folder").value == str(tmp_path / "first")
    at.selectbox(key=f"{name}_dataset").set_value("shapes" if name == "train" else "Shapes (offline)").run()
    at.run()  # the page runs again without the folder box
    at.selectbox(key=f"{name}_dataset").set_value("folder" if name == "train" else "Image folder").run()
    assert at.text_input(key=f"{name}_folder").value == str(tmp_path / "first")
    at.text_input(key=f"{name}_folder").input(str(tmp_path / "second")).run()
    visit_home_and_come_back()
    assert at.text_input(key=f"{name}_folder").value == str(tmp_path / "second")  # the last path, not an older one
    if name == "train":
        assert any(f"--dataset folder:{tmp_path / 'second'}" in c.value for c in at.code)


@pytest.mark.parametrize("gpu", [None, "cuda", "mps"])
def test_pages_offer_and_explain_a_gpu_only_where_there_is_one(app_env, monkeypatch, gpu):
    import core.device
    import ui.train_form

    # what the pages see on a machine with a GPU (CI has none; the real CUDA paths ran on a lent H100)
    for module in (core.device, ui.train_form):
        monkeypatch.setattr(module, "available_devices", lambda: ["cpu", gpu] if gpu else ["cpu"])
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2 if gpu == "cuda" else 0)  # a machine with 2 GPUs
    speed = page("speed").run()
    assert not speed.exception, speed.exception
    notes = " ".join(i.value for i in speed.info)
    assert ("has no GPU" in notes) == (gpu is None) and ("What a GPU changes" in notes) == (gpu is not None)
    assert ("CUDA graph" in notes) == (gpu == "cuda")  # only CUDA steps are recorded as graphs
    label = {"cuda": "CUDA GPU", "mps": "Apple GPU (MPS)"}.get(gpu)
    racers = next(s for s in speed.selectbox if s.label == "Racer A").options
    assert (label in racers) if label else all(r.startswith("CPU") for r in racers)
    train = page("train").run()
    assert not train.exception, train.exception
    options = [str(o) for o in train.selectbox(key="train_device").options]
    assert options == ["CPU", *([label] if label else [])]
    # data parallelism: 2 CPU processes everywhere, and every GPU where there are 2 or more
    processes = lambda: [str(o) for o in train.selectbox(key="train_nproc").options]
    assert train.selectbox(key="train_device").value == (gpu or "cpu")  # a GPU, where there is one
    assert processes() == {"cuda": ["1", "2 GPUs (DDP)"], "mps": ["1"]}.get(gpu, ["1", "2 (DDP, gloo)"])
    if gpu == "cuda":  # the GPUs' processes, then the CPU: 2 processes still, now the CPU's
        train.selectbox(key="train_nproc").set_value(2).run()
        train.selectbox(key="train_device").set_value("cpu").run()
        assert processes() == ["1", "2 (DDP, gloo)"] and not train.exception
        assert "--device cpu --nproc 2 --threads 1" in command(train)
    scaling = next(s for s in speed.selectbox if s.label == "Scaling device").options
    cpu = f"CPU, {os.cpu_count()} cores"
    assert scaling == ([cpu, "2 GPU(s), nccl"] if gpu == "cuda" else [cpu])


def test_the_epoch_estimate_counts_the_train_pages_dataset(app_env):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run()
    at.switch_page("pages/speed.py").run()  # offline, never on the Train page: the default, Shapes
    assert any("10,000 training images" in m.value for m in at.markdown), [m.value for m in at.markdown]
    at.switch_page("pages/train.py").run()
    at.selectbox(key="train_dataset").set_value("mnist").run()
    at.switch_page("pages/speed.py").run()
    assert any("60,000 training images" in m.value for m in at.markdown) and not at.exception


def test_choosing_adam_on_the_train_page_trains_adam_and_holds_momentum_still(app_env):
    at = page("train").run()
    at.selectbox(key="train_optimizer").set_value("adam").run()
    assert "--optimizer adam" in command(at) and at.radio(key="train_preset").value == "custom"
    assert at.slider(key="train_momentum").disabled and at.checkbox(key="train_nesterov").disabled
    assert at.query_params["optimizer"] == ["adam"] or at.query_params["optimizer"] == "adam"
    next(b for b in at.button if b.label == "Train").click().run()
    (job,) = app_env.jobs()
    job.stop()
    assert job.config.optimizer == "adam" and not job.config.nesterov
    # the Fast preset's Nesterov is SGD's: choosing Adam after it turns Nesterov off, so the settings can train
    at.radio(key="train_preset").set_value("fast").run()
    assert at.checkbox(key="train_nesterov").value and at.selectbox(key="train_optimizer").value == "sgd"
    at.selectbox(key="train_optimizer").set_value("rmsprop").run()
    assert not at.checkbox(key="train_nesterov").value and "--optimizer rmsprop" in command(at)
    assert not at.error and not at.exception


def test_the_race_trains_with_the_optimizer_chosen_for_it(app_env):
    at = page("speed").run()
    next(s for s in at.selectbox if s.label == "Race optimizer").set_value("adam").run()
    assert any("learning rate 0.001, Adam" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Start the race").click().run()
    jobs = app_env.jobs()
    for job in jobs:
        job.stop()
    assert jobs and all(j.config.optimizer == "adam" and j.config.lr == 0.001 for j in jobs)


def step_page(query: dict) -> AppTest:
    at = page("step")
    for name, value in query.items():
        at.query_params[name] = value
    return at.run()


def step_number(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Step "))


def test_the_step_page_takes_a_step_on_the_links_settings_and_again_on_a_click(app_env):
    at = step_page(dict(dataset="shapes", lr="0.02", momentum="0.5", batch_size="8", seed="3", lock="lr"))
    assert not at.exception, at.exception
    assert step_number(at).startswith("**Step 1** on batch 1")
    assert at.select_slider(key="step_lr").value == 0.02 and at.select_slider(key="step_lr").disabled
    assert at.slider(key="step_momentum").value == 0.5 and not at.slider(key="step_momentum").disabled
    assert any("largest difference" in m.value and "62,006 parameters" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Take the step").click().run()
    assert step_number(at).startswith("**Step 2** on batch 1")
    next(b for b in at.button if b.label == "Next batch").click().run()
    assert step_number(at).startswith("**Step 3** on batch 2")
    at.slider(key="step_conv_width").set_value(12).run()  # new settings: a new network, and its first step
    assert step_number(at).startswith("**Step 1** on batch 1") and at.query_params["conv_width"] in ("12", ["12"])
    stepper = at.session_state["step_stepper"]
    assert stepper.model.conv1.out_channels == 12 and stepper.rule.lr == 0.02 and stepper.batch_size == 8
    at.selectbox(key="step_optimizer").set_value("adam").run()
    assert at.slider(key="step_momentum").disabled and at.session_state["step_stepper"].rule.optimizer == "adam"
    assert not at.exception


def test_the_step_page_drops_what_it_cannot_use_with_a_line_each(app_env):
    at = step_page(dict(dataset="shapes", optimizer="bogus", momentum="0.995", batch_size="1024", run="nope",
                        loss="hinge", conv_width="[x](http://evil.example)", colour="red", epochs="3"))
    assert not at.exception, at.exception
    warnings = " ".join(w.value for w in at.warning)
    for line in ("optimizer=bogus was ignored: choose one of sgd, adam, rmsprop",
                 "momentum=0.995 was ignored: this page takes momentum up to 0.99",
                 "batch_size=1024 was ignored: this page takes up to 128", "run=nope was ignored",
                 "loss=hinge was ignored", "colour is not a setting of this page"):
        assert line in warnings.replace("\\", ""), line
    assert "](http" not in warnings  # the link's text is escaped: never a link on the page
    assert "epochs" not in warnings  # a Train link's own settings are passed over quietly
    stepper = at.session_state["step_stepper"]
    assert stepper.rule == stepper.rule.__class__("sgd", 0.01, 0.9)  # the page's defaults instead
    assert stepper.batch_size == 4 and step_number(at).startswith("**Step 1**")


def test_the_step_page_takes_a_runs_checkpoint_and_refuses_a_width_it_does_not_have(app_env):
    from core.loop import run_training

    config = TrainConfig(dataset="shapes", data_dir=os.environ["CNN_DASHBOARD_DATA"], epochs=1, batch_size=64,
                         lr=0.05, conv_width=8)
    run_dir = [e for e in run_training(config, runs_root=app_env.runs_root)][-1]["run_dir"]
    name = os.path.basename(run_dir)
    at = step_page(dict(run=name, lr="0.01"))
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    stepper = at.session_state["step_stepper"]
    trained = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True)["state_dict"]
    assert torch.equal(stepper.last.before["conv1.weight"], trained["conv1.weight"])  # step 1 starts from it
    assert stepper.model.conv1.out_channels == 8
    # the cached checkpoint is not the one stepped on: another session starts from the trained weights again
    again = step_page(dict(run=name, lr="0.01"))
    assert torch.equal(again.session_state["step_stepper"].last.before["conv1.weight"], trained["conv1.weight"])
    wrong = step_page(dict(run=name, conv_width="12"))
    assert any("has widths 8/16, not conv_width=12: the fresh network is used" in w.value.replace("\\", "")
               for w in wrong.warning)
    assert wrong.session_state["step_stepper"].model.conv1.out_channels == 12
    # a damaged checkpoint: one line, then the fresh network
    with open(os.path.join(run_dir, "checkpoint.pt"), "wb") as f:
        f.write(b"not a checkpoint")
    damaged = step_page(dict(run=name))
    assert not damaged.exception and any("damaged" in w.value for w in damaged.warning)
    assert damaged.session_state["step_stepper"].model.conv1.out_channels == 6


@pytest.mark.fault
@pytest.mark.parametrize("name, param", [("train", "lr"), ("network", "conv_width"), ("data", "dataset")])
def test_a_links_values_are_shown_as_text_never_as_a_link_or_an_image(app_env, name, param):
    at = page(name)
    at.query_params[param] = "[x](http://evil.example) ![](http://x/y.png)"
    at.run()
    shown = [w.value for w in at.warning if "From the link" in w.value]
    assert shown and not at.exception
    # every bracket escaped, the addresses broken by a zero-width space: markdown makes neither a link nor an image
    assert all("\\[x\\]\\(http:\u200b//evil\\.example\\)" in w and "!\\[" in w for w in shown), shown


@pytest.mark.fault
def test_a_link_value_beyond_a_control_is_dropped_with_a_line_not_a_broken_page(app_env):
    at = page("train")
    at.query_params["momentum"] = "0.995"  # a valid momentum, above the slider's 0.99
    at.query_params["lr"] = "0.02"
    at.run()
    assert not at.exception and not [e.value for e in at.error if "could not be drawn" in e.value]
    assert any("momentum=0.995 was ignored" in w.value.replace("\\", "") for w in at.warning)  # (escaped: text)
    assert at.slider(key="train_momentum").value == 0.9 and at.select_slider(key="train_lr").value == 0.02


@pytest.mark.fault
def test_a_second_click_on_stop_and_train_after_the_first_answered_starts_nothing_more(app_env):
    """Two quick clicks on "Stop it and train the new settings": the second comes after the first has started the
    new job and cleared the question (it raised AttributeError in the server's log)."""
    at = page("train").run()
    job = start_long_job(at, app_env)
    next(b for b in at.button if b.label == "Train").click().run()  # a second job: the page asks first
    confirm = next(b for b in at.button if b.label == "Stop it and train the new settings")
    confirm.click().run()
    assert len(app_env.jobs()) == 2 and "confirm_config" not in at.session_state
    confirm.click().run()  # the same button, clicked again before the page was drawn anew
    assert not at.exception and len(app_env.jobs()) == 2
    for j in app_env.jobs():
        j.stop()
    wait_for(lambda: not job.snapshot().active)


def test_the_step_pages_history_keeps_the_weight_from_the_first_step_and_buf_builds_up(app_env):
    at = step_page(dict(dataset="shapes", lr="0.01", momentum="0.9", stage="History"))
    for _ in range(2):
        next(b for b in at.button if b.label == "Take the step").click().run()
    rows = at.dataframe[0].value
    assert list(rows.index) == [1, 2, 3] and set(rows["weight"]) == {"conv1.weight[0,0,2,2]"}
    buf, g, w, w_new = ([float(v) for v in rows[c]] for c in ("buf", "g", "w", "w_new"))
    assert buf[0] == pytest.approx(g[0], rel=1e-5)
    for t in (1, 2):  # buf = μ·buf + g, and each step starts where the last one ended
        assert buf[t] == pytest.approx(0.9 * buf[t - 1] + g[t], rel=1e-4, abs=1e-9)
        assert w[t] == w_new[t - 1]
    assert list(rows["loss before"])[1:] == list(rows["loss after"])[:-1]  # the same batch, step after step
    assert not at.exception


@pytest.mark.fault
def test_a_race_that_cannot_be_kept_says_so_in_one_line_once(app_env):
    """A runs folder that cannot be written (read-only, full; here its .speed is a file) once took the race view
    to a traceback with the server's paths, drawn again every 0.5 s. The race is shown, with one line why it
    is not kept, and the write is not tried again at every redraw."""
    from pathlib import Path

    Path(app_env.runs_root).mkdir(parents=True, exist_ok=True)
    (Path(app_env.runs_root) / ".speed").write_text("not a folder")
    at = page("speed").run()
    next(b for b in at.button if b.label == "Start the race").click().run()
    jobs = app_env.jobs()
    wait_for(lambda: all(not j.snapshot().active for j in jobs), timeout=120)
    for _ in range(3):
        at.run()
        assert not at.exception, at.exception
    said = [w.value for w in at.warning if "could not be kept" in w.value]
    assert said == [f"The race could not be kept in {app_env.runs_root}/.speed (File exists); it is shown until you "
                    "leave the page."]
    assert all(j.snapshot().status == "finished" for j in jobs) and at.get("plotly_chart")

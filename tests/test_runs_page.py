"""The Runs page as Streamlit runs it (AppTest): the table, a run zip uploaded from elsewhere, title and note,
delete behind a confirmation (never a run that still trains), and the comparison of two runs."""

import io
import shutil
import zipfile
from pathlib import Path

import pytest

from core.config import TrainConfig
from core.runs import list_runs, load_run
from core.runs.archive import export_bytes
from tests.test_pages import page, plotly_specs, start_long_job, wait_for


def train(app_env, tmp_path, small_shapes, lr: float) -> Path:
    from core.data import _write_cache, shapes_cache
    from core.loop import run_training

    small_shapes.name = "shapes"
    _write_cache(shapes_cache(tmp_path / "data"), small_shapes)
    config = TrainConfig(dataset="shapes", data_dir=str(tmp_path / "data"), epochs=2, batch_size=16, lr=lr)
    return Path(list(run_training(config, runs_root=app_env.runs_root, dataset=small_shapes))[-1]["run_dir"])


def folders(at) -> list[str]:
    return list(at.dataframe[0].value["Folder"])


def test_a_run_zip_from_elsewhere_is_listed_and_results_shows_it_with_the_same_accuracy(app_env, tmp_path,
                                                                                          small_shapes):
    made = train(app_env, tmp_path, small_shapes, 0.02)
    data, accuracy = export_bytes(made), load_run(made).accuracy
    shutil.rmtree(made)  # an empty runs folder, as on the machine the zip is carried to
    at = page("runs").run()
    assert not at.exception and any("No run yet" in i.value for i in at.info)
    at.file_uploader[0].set_value(("run.zip", data, "application/zip")).run()
    assert any("is now run" in s.value for s in at.success), [e.value for e in at.error]
    (run,) = list_runs(app_env.runs_root)
    assert folders(at) == [run.name] and run.accuracy == accuracy
    results = page("results").run()
    assert not results.exception
    assert any(f"**{accuracy:.1%}**" in m.value for m in results.markdown)  # the run's own measured accuracy


def test_a_hostile_upload_is_one_line_and_nothing_is_kept(app_env, tmp_path, small_shapes):
    made = train(app_env, tmp_path, small_shapes, 0.02)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("config.json", (made / "config.json").read_text())
        zf.writestr("../evil.py", "print('hi')")
    at = page("runs").run()
    at.file_uploader[0].set_value(("evil.zip", zipped.getvalue(), "application/zip")).run()
    (error,) = [e.value for e in at.error]
    assert error.startswith("evil.zip was not taken in: '../evil.py' is a name that would land outside")
    assert not at.exception
    assert [r.name for r in list_runs(app_env.runs_root)] == [made.name] and not (tmp_path / "evil.py").exists()


def test_title_note_and_delete_behind_a_confirmation(app_env, tmp_path, small_shapes):
    made = train(app_env, tmp_path, small_shapes, 0.02)
    at = page("runs").run()
    at.text_input[0].input("Learning rate 0.02")
    at.text_area[0].input("It learns within an epoch.")
    at.button[0].click().run()  # the form's Save (the only button before the download buttons)
    assert load_run(made).meta == {"title": "Learning rate 0.02", "note": "It learns within an epoch."}
    assert at.dataframe[0].value["Run"][0] == "Learning rate 0.02"
    delete = next(b for b in at.button if b.label == "Delete the run")
    assert delete.disabled  # first the box that says what goes
    at.checkbox(key=f"runs_sure_{made.name}").check().run()
    next(b for b in at.button if b.label == "Delete the run").click().run()
    assert not made.exists() and any("was deleted" in s.value for s in at.success)


def test_a_run_that_still_trains_cannot_be_deleted(app_env, tmp_path):
    trainer = page("train").run()
    job = start_long_job(trainer, app_env)
    wait_for(lambda: job.run_dir is not None)
    name = Path(job.run_dir).name
    at = page("runs")
    at.session_state["_owner"] = trainer.session_state["_owner"]  # the same browser: its Delete
    at.run()
    at.selectbox(key="runs_one").set_value(name).run()
    at.checkbox(key=f"runs_sure_{name}").check().run()
    next(b for b in at.button if b.label == "Delete the run").click().run()
    assert any("still training" in e.value for e in at.error) and Path(job.run_dir).exists()
    job.stop()


@pytest.mark.parametrize("x", ["images_seen", "train_seconds"])
def test_two_runs_that_differ_in_learning_rate_compare_by_it(app_env, tmp_path, small_shapes, x):
    slow, fast = train(app_env, tmp_path, small_shapes, 0.001), train(app_env, tmp_path, small_shapes, 0.02)
    at = page("runs").run()
    at.multiselect(key="runs_compare").select(slow.name).select(fast.name).run()
    at.radio(key="runs_x").set_value(x).run()
    specs = {s["layout"]["title"]["text"]: s for s in plotly_specs(at)}
    shown = [t for t in specs["Running loss"]["data"] if t.get("showlegend", True)]
    assert sorted(t["name"] for t in shown) == ["lr 0.001", "lr 0.02"]  # named by the setting that differs
    assert all(t["x"] and max(t["x"]) > (1000 if x == "images_seen" else 0) for t in shown)
    faint = [t for t in specs["Running loss"]["data"] if t.get("showlegend") is False]
    assert len(faint) == 2 and all(t["opacity"] < 0.5 for t in faint)  # the raw lines behind the smoothed ones
    colours = {t["name"]: t["line"]["color"] for t in shown}
    accuracy = {t["name"]: t["line"]["color"] for t in specs["Test accuracy (dotted: train accuracy)"]["data"]
                if t.get("showlegend", True)}
    assert accuracy == colours  # a run keeps its colour in every chart
    bars = specs["Per-class accuracy (last epoch)"]["data"]
    assert {b["name"] for b in bars} == {"lr 0.001", "lr 0.02"} and all(len(b["x"]) == 10 for b in bars)
    table = at.table[0].value
    assert list(table.columns) == ["Learning rate", "best test accuracy", "reached after"]  # nothing they share
    assert sorted(table["Learning rate"]) == ["0.001", "0.02"]


def test_a_diverged_run_goes_off_a_linear_axis_marked_and_the_others_keep_their_height(app_env, tmp_path,
                                                                                       small_shapes):
    calm, wild = train(app_env, tmp_path, small_shapes, 0.02), train(app_env, tmp_path, small_shapes, 10.0)
    assert load_run(wild).status == "diverged"
    at = page("runs").run()
    at.multiselect(key="runs_compare").select(calm.name).select(wild.name).run()
    loss = {s["layout"]["title"]["text"]: s for s in plotly_specs(at)}["Running loss"]
    axis = loss["layout"]["yaxis"]
    assert axis.get("type") != "log" and 2.5 <= axis["range"][1] < 10  # sized to the calm run
    assert any("lr 10 diverged" in c.value for c in at.caption)
    assert [a["text"] for a in loss["layout"]["annotations"]] == ["lr 10 diverged ↑"]
    spike = next(t for t in loss["data"] if t["name"] == "lr 10" and t.get("showlegend", True))
    assert "markers" in spike["mode"] and max(spike["y"]) > 1000  # drawn even if it is a single point
    at.toggle[0].set_value(True).run()  # the teacher wants the spike itself
    loss = {s["layout"]["title"]["text"]: s for s in plotly_specs(at)}["Running loss"]
    assert loss["layout"]["yaxis"]["type"] == "log" and not at.exception


def test_speed_results_are_kept_and_listed_like_runs(app_env):
    from core.speed import keep_result, speed_results

    rows = [{"device": "cpu", "width": w, "batch_size": 64, "threads": 2, "images_per_second": 1000.0 * w}
            for w in (6, 12)]
    keep_result(app_env.runs_root, "sweep", {"rows": rows})
    keep_result(app_env.runs_root, "race", {"curves": {"CPU, 1 thread": [{"seconds": 1.0, "running_loss": 2.0}]},
                                          "notes": ["**CPU, 1 thread**: finished"]})
    assert [r["kind"] for r in speed_results(app_env.runs_root)] in (["race", "sweep"], ["sweep", "race"])
    at = page("runs").run()
    labels = [e.label for e in at.expander]
    assert any(label.startswith("Sweep, ") and "fastest 12,000 images/s (cpu, width 12, batch 64)" in label
               for label in labels), labels
    assert any(label.startswith("Race, ") and "CPU, 1 thread: finished" in label for label in labels), labels
    assert not at.exception


@pytest.mark.fault
@pytest.mark.parametrize("status", [5, ["x"], None])
def test_a_summary_with_a_bad_status_is_damaged_and_the_run_can_still_be_deleted(app_env, tmp_path, small_shapes,
                                                                                 status):
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    bad = train(app_env, tmp_path, small_shapes, 0.01)
    good = app_env.runs_root + "/" + bad.name + "-copy"
    shutil.copytree(bad, good)
    summary = json.loads((bad / "summary.json").read_text())
    (bad / "summary.json").write_text(json.dumps({**summary, "status": status}))
    assert load_run(bad).status == "damaged" and load_run(good).status == "finished"
    at = page("runs").run()
    assert not at.exception and not [e.value for e in at.error if "could not be drawn" in e.value]
    assert dict(zip(at.dataframe[0].value["Folder"], at.dataframe[0].value["Status"]))[bad.name] == "damaged"
    at.selectbox(key="runs_one").set_value(bad.name).run()
    at.checkbox(key=f"runs_sure_{bad.name}").check().run()
    next(b for b in at.button if b.label == "Delete the run").click().run()
    assert not bad.exists() and Path(good).exists()
    listed = subprocess.run([sys.executable, "-m", "core.runs", "--runs-dir", app_env.runs_root, "list"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr


@pytest.mark.fault
def test_a_summary_with_a_number_that_is_not_one_is_damaged(tmp_path, app_env, small_shapes):
    import json

    made = train(app_env, tmp_path, small_shapes, 0.02)
    summary = json.loads((made / "summary.json").read_text())
    (made / "summary.json").write_text(json.dumps({**summary, "train_seconds": "soon"}))
    assert load_run(made).status == "damaged" and "train_seconds is not a number" in load_run(made).error


@pytest.mark.fault
@pytest.mark.parametrize("name", ["results", "network"])
def test_a_runs_config_never_chooses_where_the_server_writes(app_env, tmp_path, small_shapes, name):
    import json

    made = train(app_env, tmp_path, small_shapes, 0.02)
    config = json.loads((made / "config.json").read_text())
    elsewhere = tmp_path / "somewhere" / "else"
    (made / "config.json").write_text(json.dumps({**config, "data_dir": str(elsewhere)}))  # as an upload might say
    at = page(name).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not (tmp_path / "somewhere").exists()  # the server's own data folder was used


def test_a_run_downloads_for_tensorboard_and_onnx_or_says_the_pip_command(app_env, tmp_path, small_shapes,
                                                                          monkeypatch):
    made = train(app_env, tmp_path, small_shapes, 0.02)
    at = page("runs").run()
    shown = " ".join(h.proto.body for h in at.get("html"))
    assert f"api/run?run={made.name}&amp;as=tensorboard" in shown and "Download the network (.onnx)" in shown
    monkeypatch.setitem(__import__("sys").modules, "tensorboard", None)  # as on a machine without it
    at = page("runs").run()
    shown = " ".join(h.proto.body for h in at.get("html"))
    assert "as=tensorboard" not in shown and "Download for TensorBoard (.zip) needs" in shown
    assert "pip install tensorboard" in shown and "as=onnx" in shown  # the other downloads stay

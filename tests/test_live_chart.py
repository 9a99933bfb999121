"""The live chart component: what it sends the browser, and where it gets Plotly.js."""

import streamlit as st

import ui.live_chart as live
from core.figures import running_loss_figure


def test_the_figure_goes_to_plotly_js_without_plotly_py_s_template():
    fig = running_loss_figure([{"images_seen": i * 64, "running_loss": 2.3 - i / 100} for i in range(100)])
    spec = live.figure_data(fig)
    assert "template" not in spec["layout"] and spec["layout"]["title"]["text"] == "Running loss"
    assert spec["layout"]["xaxis"]["title"]["text"] == "images seen" and spec["layout"]["xaxis"]["automargin"]
    (trace,) = spec["data"]
    assert list(trace["x"])[-1] == 99 * 64 and trace["mode"] == "lines"


def test_plotly_js_is_copied_into_the_static_folder_once(tmp_path, monkeypatch):
    monkeypatch.setattr(live, "STATIC", tmp_path / "static")
    monkeypatch.setattr(st, "get_option", lambda name: True)
    assert live._static_ready()
    copied = tmp_path / "static" / "plotly.min.js"
    assert copied.stat().st_size == live.PLOTLY_JS.stat().st_size
    before = copied.stat().st_mtime_ns
    assert live._static_ready() and copied.stat().st_mtime_ns == before  # not copied again


def test_without_static_serving_or_a_writable_folder_it_falls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(st, "get_option", lambda name: False)
    assert not live._static_ready()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(live, "STATIC", blocker / "static")  # cannot be created
    monkeypatch.setattr(st, "get_option", lambda name: True)
    assert not live._static_ready()

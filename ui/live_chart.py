"""A Plotly chart that a live view can redraw twice a second without rebuilding it.

`st.plotly_chart` gives a chart a new identity whenever its figure changes, so the browser throws
the chart away and builds it again from scratch on every update: about 150 ms of a slow CPU, twice a
second, taken from training on a small machine. This component keeps one chart in the page and hands
Plotly.js each new figure: new points on the same traces are appended (Plotly.extendTraces), anything
else is redrawn in place (Plotly.react). Measured in headless Chromium on 2 cores, a growing line
redrawn twice a second: 17% of a core against 33% for `st.plotly_chart`.

Plotly.js is the copy that ships with the plotly Python package, served from the app's static folder.
Where that is not possible (static serving off, a read-only app folder) the chart falls back to
`st.plotly_chart`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import plotly
import plotly.graph_objects as go
import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "static"  # served at app/static/ when server.enableStaticServing is on
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
SCRIPT_URL = "app/static/plotly.min.js"
# Close to Streamlit's own chart theme, which st.plotly_chart applies and Plotly.js alone does not.
STYLE = dict(paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
             font=dict(family='"Source Sans", "Source Sans Pro", sans-serif', color="#1a1a1a"),
             colorway=["#1565c0", "#ef6c00", "#2e7d32", "#c62828", "#6a1b9a"])
AXIS = dict(gridcolor="#e6eaf1", zerolinecolor="#d5dae3", linecolor="#d5dae3", automargin=True)

JS = """
function loadPlotly(src) {
  if (!window.__cnnPlotly) {
    window.__cnnPlotly = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = () => reject(new Error("could not load " + src));
      document.head.appendChild(script);
    });
  }
  return window.__cnnPlotly;
}

function extends_(old, fresh) {  // every new trace continues the old one with the same first points
  if (!old || old.length !== fresh.length) return false;
  return fresh.every((t, i) => {
    const o = old[i], n = o.x ? o.x.length : 0;
    return n > 0 && t.x.length >= n && t.mode === o.mode && t.x[n - 1] === o.x[n - 1] && t.y[n - 1] === o.y[n - 1];
  });
}

export default function ({ parentElement, data }) {
  let div = parentElement.querySelector(".cnn-live-chart");
  if (!div) {
    div = document.createElement("div");
    div.className = "cnn-live-chart";
    div.style.height = data.height + "px";
    parentElement.appendChild(div);
  }
  const draw = () => {
    const fig = data.figure;
    if (div.data && div.cnnLayout === data.layout_key && extends_(div.data, fig.data)) {
      const counts = div.data.map(t => t.x.length);
      if (fig.data.some((t, i) => t.x.length > counts[i])) {
        window.Plotly.extendTraces(div, {x: fig.data.map((t, i) => t.x.slice(counts[i])),
                                         y: fig.data.map((t, i) => t.y.slice(counts[i]))},
                                   fig.data.map((t, i) => i));
      }
    } else {
      window.Plotly.react(div, fig.data, fig.layout, {displaylogo: false, responsive: true});
      div.cnnLayout = data.layout_key;
    }
  };
  if (window.Plotly) {
    draw();
  } else {
    loadPlotly(data.src).then(draw, err => { div.textContent = "The chart cannot be drawn: " + err.message; });
  }
}
"""

_component = st.components.v2.component("cnn_live_plotly_chart", js=JS, isolate_styles=False)


def _static_ready() -> bool:
    """Plotly.js is in the app's static folder (copied there once from the plotly package)."""
    if not st.get_option("server.enableStaticServing"):
        return False
    target = STATIC / PLOTLY_JS.name
    try:
        if not target.exists() or target.stat().st_size != PLOTLY_JS.stat().st_size:
            STATIC.mkdir(exist_ok=True)
            partial = target.with_suffix(".part")
            shutil.copyfile(PLOTLY_JS, partial)
            partial.replace(target)
        return True
    except OSError:
        return False


def figure_data(fig: go.Figure) -> dict:
    """The figure as Plotly.js takes it, styled like Streamlit's charts, without plotly.py's template."""
    spec = fig.to_plotly_json()
    layout = {**STYLE, **{k: v for k, v in spec["layout"].items() if k != "template"}}
    for axis in ("xaxis", "yaxis"):
        layout[axis] = {**AXIS, **layout.get(axis, {})}
    return {"data": spec["data"], "layout": layout}


def live_plotly_chart(fig: go.Figure, key: str, height: int = 450) -> None:
    """Draw `fig`; drawn again under the same key, the browser updates the chart it already has."""
    if not _static_ready():
        st.plotly_chart(fig, key=key)
        return
    spec = figure_data(fig)
    layout_key = hashlib.sha1(json.dumps(spec["layout"], sort_keys=True).encode()).hexdigest()[:16]
    _component(data={"figure": spec, "layout_key": layout_key, "src": SCRIPT_URL, "height": height}, key=key)

"""A Plotly chart that a live view can redraw twice a second without rebuilding it.

`st.plotly_chart` gives a chart a new identity whenever its figure changes, so the browser throws
the chart away and builds it again from scratch on every update: about 150 ms of a slow CPU, twice a
second, taken from training on a small machine. This component keeps one chart in the page and hands
Plotly.js each new figure: new points on the same traces are appended (Plotly.extendTraces), anything
else is redrawn in place (Plotly.react). Measured in headless Chromium on 2 cores, a growing line
redrawn twice a second: 17% of a core against 33% for `st.plotly_chart`. With fixed axes (the live
loss chart) a growing line skips Plotly altogether: the component rewrites the line's SVG path and
places its markers, which halved the browser's CPU again (docs/benchmarks.md).

Plotly.js is the copy that ships with the plotly Python package, served from the app's static folder.
Where that is not possible (static serving off, a read-only app folder) the chart falls back to
`st.plotly_chart`.

Given a feed (ui/live_feed.py: a JSON file the server rewrites while a job trains), the chart fetches
its own new points from it twice a second, with no Streamlit rerun at all.
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

# One poller per feed URL in the page, shared by every element that shows that feed: each listener
# gets (state, 0) after a fetch, or (null, failures so far) when the feed cannot be read.
SUBSCRIBE_JS = """
const POLL_MS = 500;
function subscribe(url, listener) {
  const feeds = window.__cnnFeeds || (window.__cnnFeeds = new Map());
  let feed = feeds.get(url);
  if (!feed) {
    feed = {listeners: new Set(), failures: 0};
    feeds.set(url, feed);
    const tick = async () => {
      if (!feed.listeners.size) { feeds.delete(url); return; }
      const began = Date.now();
      if (!document.hidden) {  // a tab in the background costs nothing
        try {
          const response = await fetch(url + "?t=" + began, {cache: "no-store"});
          if (!response.ok) throw new Error("HTTP " + response.status);
          const state = await response.json();
          feed.failures = 0;
          feed.listeners.forEach(listener => listener(state, 0));
        } catch (err) {
          feed.failures += 1;
          feed.listeners.forEach(listener => listener(null, feed.failures));
        }
      }
      setTimeout(tick, Math.max(50, POLL_MS - (Date.now() - began)));
    };
    setTimeout(tick, POLL_MS);
  }
  feed.listeners.add(listener);
  return () => feed.listeners.delete(listener);
}
"""

JS = SUBSCRIBE_JS + """
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

function same_(old, fresh) {  // nothing new: the same traces with the same points
  if (!old || old.length !== fresh.length) return false;
  return fresh.every((t, i) => {
    const o = old[i], n = o.x ? o.x.length : 0;
    return t.x.length === n && t.mode === o.mode &&
           (n === 0 || (t.x[n - 1] === o.x[n - 1] && t.y[n - 1] === o.y[n - 1]));
  });
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
  if (div.cnnUnsubscribe) div.cnnUnsubscribe();
  div.cnnUnsubscribe = null;
  if (div.cnnFeed !== data.feed) { div.cnnFeed = data.feed; div.cnnSeq = -1; }
  // With fixed axes, a line that grows is one SVG path to rewrite (and, while it has few points, a marker
  // to place per point): a fraction of a millisecond, where Plotly.animate takes milliseconds and a second
  // frame of its own (requestAnimationFrame) after the one that shows the page's new numbers. Plotly's hover
  // data are then behind, so while the pointer is over the chart Plotly.animate does the update instead.
  const redrawLines = fig => {
    const full = div._fullLayout, xa = full && full.xaxis, ya = full && full.yaxis;
    const groups = [...div.querySelectorAll(".scatterlayer .trace")];
    if (!xa || !ya || typeof xa.l2p !== "function" || groups.length !== fig.data.length) return false;
    const parts = groups.map((g, i) => ({
      line: g.querySelector("path.js-line"),
      marks: fig.data[i].mode === "lines+markers" ? g.querySelector("g.points") : null,
    }));
    const drawable = fig.data.every((t, i) => parts[i].line &&
      (t.mode === "lines" || (parts[i].marks && parts[i].marks.querySelector("path.point"))));
    if (!drawable) return false;  // e.g. a lone first point has no line yet: Plotly draws it
    fig.data.forEach((t, i) => {
      const xy = t.x.map((x, j) => xa.l2p(x).toFixed(1) + "," + ya.l2p(t.y[j]).toFixed(1));
      parts[i].line.setAttribute("d", "M" + xy.join("L"));
      const marks = parts[i].marks;
      if (marks) {
        const points = [...marks.querySelectorAll("path.point")];
        while (points.length < xy.length) points.push(marks.appendChild(points[0].cloneNode(true)));
        points.slice(xy.length).forEach(m => m.remove());
        points.slice(0, xy.length).forEach((m, j) => m.setAttribute("transform", `translate(${xy[j]})`));
      }
      div.data[i].x = t.x;
      div.data[i].y = t.y;
    });
    return true;
  };
  const draw = (fig, key, fixedAxes) => {
    if (div.data && div.cnnLayout === key && same_(div.data, fig.data)) return;
    if (div.data && div.cnnLayout === key && extends_(div.data, fig.data)) {
      const counts = div.data.map(t => t.x.length);
      if (fixedAxes) {
        // Axes that do not move: only the lines are redrawn, by the component itself where it can; else by
        // Plotly.animate, which still skips the axes (half the browser's work of extendTraces, measured in
        // headless Chromium for a 180-point line).
        if (div.matches(":hover") || !redrawLines(fig)) {
          window.Plotly.animate(div, {data: fig.data.map(t => ({x: t.x, y: t.y})), traces: fig.data.map((t, i) => i)},
                                {transition: {duration: 0}, frame: {duration: 0, redraw: false}, mode: "immediate"});
        }
      } else if (fig.data.some((t, i) => t.x.length > counts[i])) {
        window.Plotly.extendTraces(div, {x: fig.data.map((t, i) => t.x.slice(counts[i])),
                                         y: fig.data.map((t, i) => t.y.slice(counts[i]))},
                                   fig.data.map((t, i) => i));
      }
    } else {
      window.Plotly.react(div, fig.data, fig.layout, {displaylogo: false, responsive: true});
      div.cnnLayout = key;
    }
  };
  // A state is drawn only if it is newer than what the chart shows. Ranges (fixed axes, which the feed
  // moves when the data outgrow them) replace the figure's.
  const show = (traces, seq, ranges) => {
    if (seq < div.cnnSeq) return;
    div.cnnSeq = seq;
    // A copy each time: Plotly keeps the layout it is given and writes into it (autorange: true, for a
    // chart drawn without ranges), which would then override the ranges of every later state.
    const base = structuredClone(data.figure.layout);
    const layout = ranges ? {...base, xaxis: {...base.xaxis, range: ranges.x, autorange: false},
                             yaxis: {...base.yaxis, range: ranges.y, autorange: false}}
                          : base;
    draw({data: traces, layout}, data.layout_key + JSON.stringify(ranges || null), Boolean(ranges));
  };
  const start = () => {
    show(data.figure.data, data.seq, data.ranges);
    if (data.feed) {
      div.cnnUnsubscribe = subscribe(data.feed, state => {
        if (state) show(state.traces[data.series], state.seq, (state.ranges || {})[data.series]);
      });
    }
  };
  if (window.Plotly) {
    start();
  } else {
    loadPlotly(data.src).then(start, err => { div.textContent = "The chart cannot be drawn: " + err.message; });
  }
  return () => { if (div.cnnUnsubscribe) div.cnnUnsubscribe(); div.cnnUnsubscribe = null; };
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


def live_plotly_chart(fig: go.Figure, key: str, height: int = 450, feed: str | None = None,
                      series: str = "", seq: int = 0, ranges: dict | None = None) -> None:
    """Draw `fig`; drawn again under the same key, the browser updates the chart it already has.

    With `feed` (a URL from ui/live_feed.py) the browser then follows the traces `series` of that feed by
    itself; `seq` is the feed's sequence number of the state `fig` shows, and `ranges` ({"x": [lo, hi],
    "y": [lo, hi]}) the fixed axes it has, which the feed may move.
    """
    if not _static_ready():
        st.plotly_chart(fig, key=key)
        return
    spec = figure_data(fig)
    layout_key = hashlib.sha1(json.dumps(spec["layout"], sort_keys=True).encode()).hexdigest()[:16]
    _component(data={"figure": spec, "layout_key": layout_key, "src": SCRIPT_URL, "height": height,
                     "feed": feed, "series": series, "seq": seq, "ranges": ranges}, key=key)

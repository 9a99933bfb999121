"""Plotly figures and composed images from plain data: pure functions, tested without a browser."""

from __future__ import annotations

import functools
import math
from typing import Sequence

import plotly.graph_objects as go
import torch
from PIL import Image, ImageDraw, ImageFont

FEW_POINTS = 60  # up to this many, a line chart also marks each point
MAX_POINTS = 3000  # per trace: a browser redraws this many points smoothly several times a second
RIGHT, WRONG = "#2e7d32", "#c62828"
# No template: Streamlit applies its own theme, and resolving a Plotly template costs milliseconds a figure,
# which a chart redrawn at every page run pays every time. Figures are built from plain dicts for the
# same reason (one validation pass), and reference lines are layout shapes rather than add_hline calls.
LAYOUT = dict(font=dict(size=16), margin=dict(l=60, r=20, t=60, b=50),
              uirevision="keep")  # uirevision: live redraws keep the user's zoom
INK = "#1a1a1a"
# Streamlit's chart theme draws tick labels small and grey; on a projector they must be read from the back
# of the room. Set on every axis of every figure (the theme keeps what a figure sets itself).
READABLE_AXIS = {"tickfont": {"size": 16, "color": INK}, "title": {"font": {"size": 17, "color": INK}}}
TITLE_FONT, LEGEND_FONT = {"size": 19, "color": INK}, {"size": 15, "color": INK}


def _readable(axis: dict | None) -> dict:
    axis = dict(axis or {})
    title = axis.get("title", {})
    title = {"text": title} if isinstance(title, str) else dict(title)
    axis["title"] = {**title, "font": {**READABLE_AXIS["title"]["font"], **title.get("font", {})}}
    axis["tickfont"] = {**READABLE_AXIS["tickfont"], **axis.get("tickfont", {})}
    return axis


def readable(fig: go.Figure) -> go.Figure:
    """Large dark tick labels and axis titles on every axis (for figures built with the convenience calls)."""
    fig.update_xaxes(tickfont=READABLE_AXIS["tickfont"], title_font=READABLE_AXIS["title"]["font"])
    fig.update_yaxes(tickfont=READABLE_AXIS["tickfont"], title_font=READABLE_AXIS["title"]["font"])
    fig.update_layout(title_font=TITLE_FONT, legend_font=LEGEND_FONT)
    return fig


def _figure(data: list[dict], shapes: list[tuple] = (), **layout) -> go.Figure:
    """A figure from plain trace dicts; shapes are (axis, value, text, colour, dash, text position)."""
    lines, notes = [], []
    for axis, value, text, colour, dash, position in shapes:
        other = "x" if axis == "y" else "y"
        lines.append({"type": "line", f"{other}ref": "paper", f"{other}0": 0, f"{other}1": 1, f"{axis}ref": axis,
                      f"{axis}0": value, f"{axis}1": value, "line": {"color": colour, "dash": dash}})
        right = "right" in position
        notes.append({"text": text, "showarrow": False, f"{other}ref": "paper", f"{axis}ref": axis, axis: value,
                      other: 1 if right else 0, "xanchor": "right" if right else "left",
                      "yanchor": "top" if "bottom" in position else "bottom"})
    layout = {**LAYOUT, **layout, "xaxis": _readable(layout.get("xaxis")), "yaxis": _readable(layout.get("yaxis")),
              "title": {**layout.get("title", {}), "font": TITLE_FONT},
              "legend": {"font": LEGEND_FONT, **layout.get("legend", {})}}
    return go.Figure({"data": data, "layout": {**layout, "shapes": lines,
                                               "annotations": notes + list(layout.get("annotations", []))}})


def downsample(points: Sequence, max_points: int = MAX_POINTS) -> list:
    """Every k-th point so at most max_points remain; the newest point is always kept."""
    points = list(points)
    if len(points) <= max_points:
        return points
    step = -(-len(points) // max_points)
    kept = points[::step]
    if kept[-1] is not points[-1]:
        kept.append(points[-1])
    return kept


# -- training ----------------------------------------------------------------------------

def running_loss_trace(losses: Sequence[dict], x: str = "images_seen", name: str = "running loss") -> dict:
    """The running-loss line as a Plotly.js trace (a plain dict): what the live chart redraws."""
    pts = downsample(losses)
    # A marker per point only while there are few: a lone first point needs one to be seen, and a
    # marker is an SVG element of its own, which the browser redraws every time the live chart grows
    # (lines alone halved the browser's work for a chart of 1,000 points, measured in headless Chromium).
    mode = "lines+markers" if len(pts) <= FEW_POINTS else "lines"
    return dict(type="scatter", x=[p[x] for p in pts], y=[p["running_loss"] for p in pts], mode=mode,
                name=name, marker=dict(size=4), line=dict(width=2))


def loss_ranges(losses: Sequence[dict], total_images: int) -> dict:
    """Fixed axes for a live loss chart: x is the whole run; y runs from 0 to the first half (0.5, 1.0, ...) above
    the highest loss plus 10%.

    The axes then keep their tick labels from one redraw to the next, and Plotly.js measures each label
    once: with axes that grew with the data, each redraw of the live chart forced about 20 layouts of the
    page in the browser (measured in headless Chromium), CPU taken from training on a small machine.
    """
    highest = max((p["running_loss"] for p in losses if math.isfinite(p["running_loss"])), default=2.3)
    return {"x": [0, total_images], "y": [0, math.ceil(highest * 1.1 * 2) / 2]}


def running_loss_figure(losses: Sequence[dict], x: str = "images_seen", title: str = "Running loss",
                        name: str = "running loss", total_images: int | None = None) -> go.Figure:
    """The running loss against images seen; with total_images, on the fixed axes of `loss_ranges`."""
    x_title = {"images_seen": "images seen", "step": "step", "train_seconds": "seconds"}.get(x, x)
    xaxis, yaxis = {"title": {"text": x_title}}, {"title": {"text": "cross-entropy"}}
    if total_images:
        ranges = loss_ranges(losses, total_images)
        xaxis["range"], yaxis["range"] = ranges["x"], ranges["y"]
    return _figure([running_loss_trace(losses, x, name)], title={"text": title}, xaxis=xaxis, yaxis=yaxis)


def accuracy_trace(epochs: Sequence[dict]) -> dict:
    """Test accuracy, a point per epoch, as a Plotly.js trace (a plain dict)."""
    return dict(type="scatter", x=[e["epoch"] for e in epochs], y=[e["test_accuracy"] for e in epochs],
                mode="lines+markers", name="test", marker=dict(size=10), line=dict(width=3))


def train_accuracy_trace(epochs: Sequence[dict]) -> dict:
    """Accuracy on a fixed sample of training images, a point per epoch (runs from before it was measured
    have none): above the test line and climbing while test accuracy stalls is overfitting."""
    points = [e for e in epochs if isinstance(e.get("train_accuracy"), (int, float))]
    return dict(type="scatter", x=[e["epoch"] for e in points], y=[e["train_accuracy"] for e in points],
                mode="lines+markers", name="train", marker=dict(size=8, symbol="square"),
                line=dict(width=2, dash="dot", color="#6a1b9a"))


def accuracy_traces(epochs: Sequence[dict]) -> list[dict]:
    return [accuracy_trace(epochs), train_accuracy_trace(epochs)]


def accuracy_figure(epochs: Sequence[dict], num_classes: int = 10, tutorial: float | None = 0.54,
                    planned: int | None = None) -> go.Figure:
    """Test (and train) accuracy by epoch, with chance and the tutorial's figure as lines. The legend sits above
    the plot, under the title, where no point and no line's label can be under it; `planned` epochs: the x axis
    runs from 0 to the last of them from the start (before the first point Plotly's own axis ran 0-6 for any
    run), with a tick per epoch up to 12 and Plotly's own spacing beyond (30 ticks crowd a projector's chart)."""
    shapes = [("y", 1 / num_classes, f"chance ({1 / num_classes:.0%})", "gray", "dot", "bottom right")]
    if tutorial is not None:
        shapes.append(("y", tutorial, f"tutorial after 2 epochs ({tutorial:.0%})", "#ef6c00", "dash", "top left"))
    last = max([planned or 0, len(epochs), *(e.get("epoch", 0) for e in epochs)])
    few = last <= 12
    # the last epoch's marker whole inside the plot: a quarter of an epoch to spare, or 3% of a long run
    span = {"range": [0, last + (0.25 if few else 0.03 * last)], "autorange": False} if planned else {}
    return _figure(accuracy_traces(epochs), shapes, title={"text": "Test accuracy"},
                   # the title in the top margin's upper half, the legend in its lower half: apart at any width
                   margin={**LAYOUT["margin"], "t": 85},
                   legend={"orientation": "h", "x": 0.5, "xanchor": "center", "y": 1.0, "yanchor": "bottom"},
                   xaxis={"title": {"text": "epoch"}, "rangemode": "tozero", **({"dtick": 1} if few else {}), **span},
                   yaxis={"title": {"text": "accuracy"}, "range": [0, 1], "tickformat": ".0%"})


# -- comparing runs -------------------------------------------------------------------------

COLOURS = ("#1565c0", "#ef6c00", "#2e7d32", "#c62828", "#6a1b9a", "#00838f", "#5d4037", "#ad1457")  # 8 runs


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """An exponential moving average, debiased at the start (as TensorBoard smooths): weight 0 is the raw line."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i) if weight else value)
    return out


def compare_loss_figure(runs: Sequence[tuple[str, Sequence[dict]]], x: str = "images_seen",
                        smoothing: float = 0.0, log_y: bool = False, diverged: Sequence[str] = ()) -> go.Figure:
    """The running loss of several runs, one colour each: the smoothed line, the raw one faint behind it. A run
    that diverged (named in `diverged`) goes off the top of a linear axis sized to the others, marked where it
    leaves ("diverged ↑"), so it does not flatten the useful curves; log_y shows the whole of it instead."""
    data, marks = [], []
    calm = [p["running_loss"] for name, losses in runs if name not in diverged for p in losses
            if isinstance(p.get("running_loss"), (int, float)) and math.isfinite(p["running_loss"])]
    top = max([2.5, *calm]) * 1.1 if diverged and not log_y else None
    for i, (name, losses) in enumerate(runs):
        pts = downsample(losses)
        xs, ys = [p.get(x, 0) for p in pts], [p["running_loss"] for p in pts]
        colour = COLOURS[i % len(COLOURS)]
        if smoothing:
            data.append(dict(type="scatter", x=xs, y=ys, mode="lines", name=name, legendgroup=name, showlegend=False,
                             opacity=0.25, line=dict(color=colour, width=1), hoverinfo="skip"))
        # a marker per point while there are few, as on the live chart: a run that diverged at once has a single
        # point, which a line alone does not draw
        data.append(dict(type="scatter", x=xs, y=smooth(ys, smoothing), name=name, legendgroup=name,
                         mode="lines+markers" if len(pts) <= FEW_POINTS else "lines", marker=dict(size=6),
                         line=dict(color=colour, width=2.5)))
        if top is not None and name in diverged:
            out = next((px for px, py in zip(xs, ys) if not (isinstance(py, (int, float)) and py <= top)),
                       xs[-1] if xs else 0)
            marks.append(dict(x=out, y=top, yref="y", text=f"{name} diverged ↑", showarrow=False, yanchor="top",
                              font=dict(color=colour, size=14), bgcolor="rgba(255,255,255,0.8)"))
    x_title = {"images_seen": "images seen", "train_seconds": "seconds of training"}.get(x, x)
    if log_y:
        yaxis = {"title": {"text": "cross-entropy (log scale)"}, "type": "log"}
    else:
        yaxis = {"title": {"text": "cross-entropy"}, **({"range": [0, top]} if top else {"rangemode": "tozero"})}
    return _figure(data, title={"text": "Running loss"}, xaxis={"title": {"text": x_title}, "rangemode": "tozero"},
                   yaxis=yaxis, annotations=marks)


def compare_accuracy_figure(runs: Sequence[tuple[str, Sequence[dict]]]) -> go.Figure:
    """Test accuracy per epoch of several runs (solid), and train accuracy where a run has it (dotted)."""
    data = []
    for i, (name, epochs) in enumerate(runs):
        colour = COLOURS[i % len(COLOURS)]
        data.append(dict(type="scatter", x=[e["epoch"] for e in epochs], y=[e["test_accuracy"] for e in epochs],
                         mode="lines+markers", name=name, legendgroup=name, line=dict(color=colour, width=2.5)))
        train = [e for e in epochs if isinstance(e.get("train_accuracy"), (int, float))]
        if train:
            data.append(dict(type="scatter", x=[e["epoch"] for e in train], y=[e["train_accuracy"] for e in train],
                             mode="lines", name=f"{name} (train)", legendgroup=name, showlegend=False,
                             line=dict(color=colour, width=1.5, dash="dot")))
    return _figure(data, title={"text": "Test accuracy (dotted: train accuracy)"},
                   xaxis={"title": {"text": "epoch"}, "dtick": 1, "rangemode": "tozero"},
                   yaxis={"title": {"text": "accuracy"}, "range": [0, 1], "tickformat": ".0%"})


def compare_per_class_figure(classes: Sequence[str], runs: Sequence[tuple[str, Sequence[float]]]) -> go.Figure:
    """Per-class test accuracy of several runs side by side: a group of bars per class, a colour per run."""
    data = [dict(type="bar", x=list(classes), y=list(accuracy), name=name, marker=dict(color=COLOURS[i % 8]))
            for i, (name, accuracy) in enumerate(runs)]
    return _figure(data, title={"text": "Per-class accuracy (last epoch)"}, barmode="group",
                   xaxis={"title": {"text": "class"}},
                   yaxis={"title": {"text": "accuracy"}, "range": [0, 1], "tickformat": ".0%"})


# -- results -------------------------------------------------------------------------------

def per_class_figure(classes: Sequence[str], correct: Sequence[int], total: Sequence[int],
                     sort: bool = False, title: str = "Per-class accuracy") -> go.Figure:
    acc = [c / t if t else 0.0 for c, t in zip(correct, total)]
    order = sorted(range(len(classes)), key=lambda i: -acc[i]) if sort else list(range(len(classes)))
    overall = sum(correct) / max(1, sum(total))
    above = [i for i in order if acc[i] >= overall]
    below = [i for i in order if acc[i] < overall]

    def bars(indices: list[int], name: str, colour: str) -> dict:
        return dict(type="bar", x=[classes[i] for i in indices], y=[acc[i] for i in indices], name=name,
                    customdata=[[correct[i], total[i]] for i in indices], marker={"color": colour},
                    hovertemplate="%{x}: %{y:.1%} (%{customdata[0]} of %{customdata[1]} right)<extra></extra>")

    shapes = [("y", overall, f"overall {overall:.1%}", "#ef6c00", "dash", "top right"),
              ("y", 1 / len(classes), f"chance {1 / len(classes):.0%}", "gray", "dot", "bottom right")]
    return _figure([bars(above, "at or above overall", RIGHT), bars(below, "below overall", "#1565c0")], shapes,
                   title={"text": title}, barmode="overlay", legend={"orientation": "h", "y": 1.12, "x": 0},
                   xaxis={"categoryorder": "array", "categoryarray": [classes[i] for i in order],
                          "tickfont": {"size": 17, "color": INK}},
                   yaxis={"title": {"text": "accuracy"}, "range": [0, 1], "tickformat": ".0%"})


def confusion_figure(matrix: Sequence[Sequence[int]], classes: Sequence[str], normalize: bool = False) -> go.Figure:
    """The confusion matrix as a heatmap, with an invisible marker on every cell: Plotly reports a click on a
    marker as a selected point (a click on a heatmap selects nothing), so a click on a cell selects it."""
    counts = torch.tensor(matrix, dtype=torch.float64)
    values = counts / counts.sum(1, keepdim=True).clamp(min=1) if normalize else counts
    text = [[f"{v:.0%}" if normalize else f"{int(v)}" for v in row] for row in values.tolist()]
    n = len(classes)
    cells = go.Scatter(x=[classes[j] for i in range(n) for j in range(n)],
                       y=[classes[i] for i in range(n) for j in range(n)],
                       customdata=[text[i][j] for i in range(n) for j in range(n)],
                       mode="markers", marker=dict(symbol="square", size=44, color="rgba(0,0,0,0)"),
                       hovertemplate="true %{y}, predicted %{x}: %{customdata}<extra>click to see them</extra>",
                       showlegend=False)
    fig = go.Figure([go.Heatmap(z=values.tolist(), x=list(classes), y=list(classes), text=text,
                                texttemplate="%{text}", colorscale="Blues", showscale=False, hoverinfo="skip"),
                     cells])
    fig.update_layout(title="Confusion matrix", xaxis_title="predicted class", yaxis_title="true class",
                      xaxis=dict(range=[-0.5, n - 0.5]), yaxis=dict(range=[n - 0.5, -0.5]), height=560,
                      clickmode="event+select", dragmode=False, **LAYOUT)
    return readable(fig)


def probability_figure(classes: Sequence[str], probs: Sequence[float]) -> go.Figure:
    best = max(range(len(probs)), key=lambda i: probs[i])
    fig = go.Figure(go.Bar(x=list(probs), y=list(classes), orientation="h",
                           marker_color=[RIGHT if i == best else "#90a4ae" for i in range(len(probs))],
                           hovertemplate="%{y}: %{x:.1%}<extra></extra>"))
    fig.update_layout(title="Class probabilities (softmax of the network's outputs)",
                      xaxis=dict(range=[0, 1], tickformat=".0%"), yaxis=dict(autorange="reversed"), **LAYOUT)
    return readable(fig)


def pixel_histogram_figure(raw: torch.Tensor, normalized: torch.Tensor) -> go.Figure:
    """Pixel values before (0..1 after ToTensor) and after Normalize((0.5,...), (0.5,...)): [-1, 1]."""
    fig = go.Figure()
    fig.add_trace(go.Histogram(x=raw.flatten().tolist(), name="after ToTensor: 0 to 1", opacity=0.6, nbinsx=50))
    fig.add_trace(go.Histogram(x=normalized.flatten().tolist(), name="after Normalize: -1 to 1", opacity=0.6,
                               nbinsx=50))
    fig.update_layout(title="Pixel values before and after normalization", barmode="overlay",
                      xaxis_title="pixel value", yaxis_title="number of pixels", **LAYOUT)
    return readable(fig)


def class_count_figure(classes: Sequence[str], train_counts: Sequence[int], test_counts: Sequence[int]) -> go.Figure:
    fig = go.Figure([go.Bar(x=list(classes), y=list(train_counts), name="train"),
                     go.Bar(x=list(classes), y=list(test_counts), name="test")])
    fig.update_layout(title="Images per class", barmode="group", yaxis_title="images", **LAYOUT)
    return readable(fig)


# -- speed lab -------------------------------------------------------------------------------

def throughput_figure(rows: Sequence[dict]) -> go.Figure:
    """Training images/s against conv width, one line per device (and batch size, thread count)."""
    fig = go.Figure()
    for label in dict.fromkeys(_series(r) for r in rows):
        pts = sorted((r for r in rows if _series(r) == label), key=lambda r: r["width"])
        fig.add_trace(go.Scatter(x=[r["width"] for r in pts], y=[r["images_per_second"] for r in pts],
                                 mode="lines+markers", name=label, marker=dict(size=9)))
    widths = sorted({r["width"] for r in rows})
    # log axes labelled at the measured widths and at powers of ten (Plotly's own log ticks read
    # "5, 2, 1000, 5, 2, 100" from a distance)
    fig.update_layout(title="Training speed", xaxis_title="conv width", yaxis_title="images / second",
                      xaxis=dict(type="log", tickvals=widths, ticktext=[str(w) for w in widths]),
                      yaxis=dict(type="log", dtick=1, tickformat="~s"), **LAYOUT)
    return readable(fig)


def _series(row: dict) -> str:
    threads = f", {row['threads']} thread{'s' if row['threads'] != 1 else ''}" if row["device"] == "cpu" else ""
    return f"{row['device']}{threads}, batch {row['batch_size']}"


def speedup_figure(rows: Sequence[dict], fast: str = "cuda", slow: str = "cpu") -> go.Figure:
    """fast/slow images/s per width and batch size; the crossover (first width where fast wins) is marked."""
    fig = go.Figure()
    for batch in sorted({r["batch_size"] for r in rows}):
        best = {}
        for r in rows:
            if r["batch_size"] == batch:
                key = (r["device"], r["width"])
                best[key] = max(best.get(key, 0.0), r["images_per_second"])
        widths = sorted({w for d, w in best if (fast, w) in best and (slow, w) in best})
        ratio = [best[(fast, w)] / best[(slow, w)] for w in widths]
        fig.add_trace(go.Scatter(x=widths, y=ratio, mode="lines+markers", name=f"batch {batch}"))
        cross = next((w for w, q in zip(widths, ratio) if q > 1), None)
        if cross is not None:
            fig.add_vline(x=cross, line_dash="dot", line_color="#ef6c00",
                          annotation_text=f"{fast} wins from width {cross} (batch {batch})")
    fig.add_hline(y=1, line_color="gray", line_dash="dash", annotation_text="same speed")
    widths = sorted({r["width"] for r in rows})
    fig.update_layout(title=f"Speedup of {fast} over {slow}", xaxis_title="conv width",
                      yaxis_title=f"{fast} images/s ÷ {slow} images/s",
                      xaxis=dict(type="log", tickvals=widths, ticktext=[str(w) for w in widths]), **LAYOUT)
    return readable(fig)  # drawn once per sweep, not live: the convenience calls are fine here


def race_figure(curves: dict[str, Sequence[dict]]) -> go.Figure:
    """Running loss against wall-clock seconds, one curve per device."""
    fig = go.Figure()
    for name, pts in curves.items():
        pts = downsample(pts)
        fig.add_trace(go.Scatter(x=[p["seconds"] for p in pts], y=[p["running_loss"] for p in pts],
                                 mode="lines", name=name, line=dict(width=3)))
    top = max([p["running_loss"] for pts in curves.values() for p in pts] + [2.5])
    # fixed from 0: an axis zoomed onto the noise of a flat loss makes small wiggles look like big swings
    fig.update_layout(title="Running loss", xaxis_title="wall-clock seconds", yaxis_title="running loss",
                      yaxis=dict(range=[0, top * 1.05]), xaxis=dict(rangemode="tozero"), **LAYOUT)
    return readable(fig)


def scaling_label(row: dict) -> str:
    """'2 processes (DDP)' / '1 process' / '1 process, 2 threads' (a CPU's cores in one process, no DDP)."""
    if row["processes"] > 1:
        unit = "GPUs" if row["device"] == "cuda" else "processes"
        return f"{row['processes']} {unit} (DDP)"
    return "1 GPU" if row["device"] == "cuda" else f"1 process, {row['threads']} thread{'s' * (row['threads'] > 1)}"


def scaling_figure(rows: Sequence[dict]) -> go.Figure:
    """Images/s by number of processes (or GPUs), a bar group per conv width; each data-parallel bar says its
    efficiency: images/s over processes x one process's (100% = every process as fast as one alone)."""
    fig = go.Figure()
    labels = list(dict.fromkeys(scaling_label(r) for r in rows))
    for i, width in enumerate(dict.fromkeys(r["width"] for r in rows)):
        pts = {scaling_label(r): r for r in rows if r["width"] == width}
        shown = [pts[x] for x in labels if x in pts]
        fig.add_trace(go.Bar(x=[scaling_label(r) for r in shown], y=[r["images_per_second"] for r in shown],
                             name=f"conv width {width}", marker_color=COLOURS[i % len(COLOURS)],
                             text=[f"{r['efficiency']:.0%} efficient" if r["processes"] > 1 and r.get("efficiency")
                                   else "" for r in shown],
                             textposition="outside", textfont=dict(size=18, color=INK)))
    top = max([r["images_per_second"] for r in rows] + [1])
    fig.update_layout(title="Scaling out: training images/s", barmode="group", yaxis_title="images / second",
                      yaxis=dict(range=[0, top * 1.2], tickformat="~s"), **LAYOUT)
    return readable(fig)


# -- images ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def image_grid(images: torch.Tensor, captions: Sequence[str] = (), frames: Sequence[bool | None] = (),
               columns: int = 8, scale: int = 4, caption_lines: int = 2) -> Image.Image:
    """One picture of many images: uint8 (N, C, H, W) enlarged `scale` times (nearest, so pixels stay visible),
    each with an optional caption and a green (True) or red (False) frame."""
    n = len(images)
    if n == 0:
        return Image.new("RGB", (1, 1), "white")
    _, c, h, w = images.shape
    tile_w, tile_h = w * scale, h * scale
    pad, text_h = 6, (LINE * caption_lines + 4) if captions else 0
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    sheet = Image.new("RGB", (columns * (tile_w + 2 * pad), rows * (tile_h + 2 * pad + text_h)), "white")
    draw = ImageDraw.Draw(sheet)
    pixels = images if c == 3 else images.expand(-1, 3, -1, -1)
    for i in range(n):
        x0 = (i % columns) * (tile_w + 2 * pad)
        y0 = (i // columns) * (tile_h + 2 * pad + text_h)
        tile = Image.fromarray(pixels[i].permute(1, 2, 0).contiguous().numpy()).resize((tile_w, tile_h),
                                                                                         Image.NEAREST)
        frame = frames[i] if i < len(frames) else None
        if frame is not None:
            draw.rectangle([x0 + 1, y0 + 1, x0 + tile_w + 2 * pad - 2, y0 + tile_h + 2 * pad - 2],
                           fill=RIGHT if frame else WRONG)  # a white line between neighbouring frames
        sheet.paste(tile, (x0 + pad, y0 + pad))
        if i < len(captions):
            for k, line in enumerate(str(captions[i]).split("\n")[:caption_lines]):
                text, size = _fit(draw, line, tile_w + 2 * pad - 4)
                draw.text((x0 + 2, y0 + tile_h + 2 * pad + 2 + LINE * k), text, fill="black", font=_font(size))
    return sheet


LINE = 21  # a caption line's height in an image grid, for its largest font


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, sizes: Sequence[int] = (18, 16, 14, 12)) -> tuple[str, int]:
    """The caption as it fits under its image: a smaller font first, then cut with an ellipsis, so that
    neighbouring captions never run into each other."""
    for size in sizes:
        if draw.textlength(text, font=_font(size)) <= width:
            return text, size
    size = sizes[-1]
    while len(text) > 1 and draw.textlength(text + "…", font=_font(size)) > width:
        text = text[:-1]
    return text + "…", size


def filter_images(weight: torch.Tensor) -> torch.Tensor:
    """conv1 weights (out, in, k, k) as uint8 images, each filter stretched to the full 0..255 range."""
    w = weight.detach().float().cpu()
    lo = w.amin(dim=(1, 2, 3), keepdim=True)
    hi = w.amax(dim=(1, 2, 3), keepdim=True)
    return ((w - lo) / (hi - lo).clamp(min=1e-8) * 255).round().to(torch.uint8)


def feature_map_images(maps: torch.Tensor) -> torch.Tensor:
    """One image's activations (channels, H, W) as grey uint8 images (channels, 1, H, W), each scaled to 0..255."""
    m = maps.detach().float().cpu()
    hi = m.amax(dim=(1, 2), keepdim=True).clamp(min=1e-8)
    return (m / hi * 255).round().to(torch.uint8).unsqueeze(1)


# -- inside one step (the Step page) ---------------------------------------------------------------

def scores_figure(classes: Sequence[str], scores: Sequence[float], probs: Sequence[float], true: int) -> go.Figure:
    """One image's 10 scores (logits) and their softmax probabilities side by side, the true class in green."""
    colours = [RIGHT if i == true else "#90a4ae" for i in range(len(classes))]
    labels = [f"<b>{c}</b>" if i == true else c for i, c in enumerate(classes)]
    bar = dict(type="bar", y=labels, orientation="h", marker={"color": colours}, showlegend=False)
    fig = go.Figure([{**bar, "x": list(scores), "xaxis": "x", "texttemplate": "%{x:.2f}", "textposition": "auto",
                      "hovertemplate": "%{y}: score %{x:.4f}<extra></extra>"},
                     {**bar, "x": list(probs), "xaxis": "x2", "texttemplate": "%{x:.1%}", "textposition": "auto",
                      "hovertemplate": "%{y}: p = %{x:.4f}<extra></extra>"}])
    fig.update_layout(title="Scores (logits) and probabilities (softmax)", **LAYOUT, height=430,
                      xaxis=dict(domain=[0, 0.47], title="score (logit)", zeroline=True),
                      xaxis2=dict(domain=[0.53, 1], title="probability", range=[0, 1], tickformat=".0%"),
                      yaxis=dict(autorange="reversed"))
    return readable(fig)


def layer_norms_figure(norms: dict[str, float]) -> go.Figure:
    """Each layer's gradient size (the norm of its weights' and bias's gradients)."""
    return _figure([dict(type="bar", x=list(norms), y=list(norms.values()), marker={"color": "#1565c0"},
                         texttemplate="%{y:.3g}", textposition="outside",
                         hovertemplate="%{x}: ‖g‖ = %{y:.4g}<extra></extra>")],
                   title={"text": "Gradient size per layer, ‖g‖"}, height=380,
                   yaxis={"title": {"text": "norm of the gradient"}, "rangemode": "tozero"})


def score_gradients_figure(classes: Sequence[str], gradients: dict[str, Sequence[float]], true: int) -> go.Figure:
    """d loss / d score for each class, one bar group per loss function: how hard each pushes each score."""
    labels = [f"<b>{c}</b>" if i == true else c for i, c in enumerate(classes)]
    colours = {"cross-entropy": "#1565c0", "mse": "#ef6c00"}
    data = [dict(type="bar", x=labels, y=list(values), name=name, marker={"color": colours.get(name)},
                 hovertemplate="%{x}: %{y:.4f}<extra>" + name + "</extra>") for name, values in gradients.items()]
    return _figure(data, title={"text": "Gradient on each score: − pushes the score up, + pushes it down"},
                   barmode="group", height=400, legend={"orientation": "h", "y": 1.12, "x": 0},
                   yaxis={"title": {"text": "d loss / d score"}})


def step_curve_figure(etas: Sequence[float], losses: Sequence[float], lr: float, before: float) -> go.Figure:
    """The batch's loss at w − η·d for η on a log axis, the chosen learning rate marked: a small step barely moves
    the loss, a large one overshoots. Points that blew up (inf or NaN) are left out and said in the title."""
    finite = [(e, v) for e, v in zip(etas, losses) if math.isfinite(v)]
    lost = len(etas) - len(finite)
    title = "The batch's loss along this step, loss(w − η·d)" + (f" ({lost} η blew up: not drawn)" if lost else "")
    shapes = [("y", before, f"before the step {before:.4g}", "gray", "dot", "bottom left")]
    fig = _figure([dict(type="scatter", x=[e for e, _ in finite], y=[v for _, v in finite], mode="lines+markers",
                        name="loss", marker={"size": 8}, line={"width": 3},
                        hovertemplate="η = %{x:.3g}: loss %{y:.4f}<extra></extra>")], shapes,
                  title={"text": title}, height=420, showlegend=False,
                  xaxis={"title": {"text": "η, the step size (the learning rate is marked)"}, "type": "log",
                         "exponentformat": "power"},
                  yaxis={"title": {"text": "batch loss"}})
    at = next((v for e, v in finite if abs(e - lr) <= 1e-9 * lr), None)
    fig.add_vline(x=lr, line={"color": "#c62828", "width": 2, "dash": "dash"})
    fig.add_annotation(x=math.log10(lr), y=1, yref="paper", text=f"lr = {lr:g}" + (f": {at:.4g}" if at else ""),
                       showarrow=False, yanchor="bottom", font={"color": "#c62828", "size": 16})
    return fig


def signed_images(weights: torch.Tensor, largest: float | None = None) -> tuple[torch.Tensor, float]:
    """Filters (out, in, k, k) as uint8 images on one colour scale shared by all of them: 0 is mid grey, ±largest
    the brightest and darkest (each colour channel its own sign). Returns the images and the scale's ±value."""
    w = weights.detach().float().cpu()
    finite = w[torch.isfinite(w)]
    top = largest if largest is not None else (float(finite.abs().max()) if finite.numel() else 1.0)
    top = top if top > 0 else 1.0
    pixels = (128 + 127 * (w.nan_to_num(0.0) / top).clamp(-1, 1)).round().to(torch.uint8)
    return pixels, top

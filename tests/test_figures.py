"""The figures draw what they are given: trace types, bar counts, labels and values."""

import torch

from core.figures import (
    accuracy_figure,
    class_count_figure,
    confusion_figure,
    downsample,
    feature_map_images,
    filter_images,
    image_grid,
    loss_ranges,
    per_class_figure,
    pixel_histogram_figure,
    probability_figure,
    race_figure,
    running_loss_figure,
    speedup_figure,
    throughput_figure,
)

CLASSES = ["plane", "car", "bird"]


def test_running_loss_is_downsampled_but_keeps_the_newest_point():
    losses = [{"images_seen": i * 4, "step": i, "running_loss": 2.3 - i * 1e-4} for i in range(10001)]
    fig = running_loss_figure(losses)
    (trace,) = fig.data
    assert trace.type == "scatter" and len(trace.x) <= 3001
    assert trace.x[-1] == 40000 and trace.y[-1] == losses[-1]["running_loss"]
    assert fig.layout.title.text == "Running loss" and fig.layout.xaxis.title.text == "images seen"
    assert downsample([1, 2, 3], 5) == [1, 2, 3] and downsample(list(range(10)), 3)[-1] == 9


def test_a_live_loss_chart_has_fixed_axes_that_grow_only_past_a_new_top():
    losses = [{"images_seen": 1000 * (i + 1), "running_loss": 2.2 - 0.1 * i} for i in range(5)]
    fig = running_loss_figure(losses, total_images=50_000)
    assert list(fig.layout.xaxis.range) == [0, 50_000] and list(fig.layout.yaxis.range) == [0, 2.5]
    assert loss_ranges(losses + [{"images_seen": 6000, "running_loss": 2.4}], 50_000)["y"] == [0, 3.0]
    assert loss_ranges([], 100) == {"x": [0, 100], "y": [0, 3.0]}  # before the first point: ln(10) fits
    assert running_loss_figure(losses).layout.yaxis.range is None  # a finished run elsewhere: Plotly's autorange


def test_running_loss_marks_points_only_while_there_are_few():
    # the first point alone must be visible (a line needs two points); a long live line is drawn without
    # a marker per point, which the browser would otherwise redraw on every update
    first = running_loss_figure([{"images_seen": 40, "running_loss": 2.3}])
    assert "markers" in first.data[0].mode and list(first.data[0].y) == [2.3]
    many = running_loss_figure([{"images_seen": i, "running_loss": 2.0} for i in range(500)])
    assert many.data[0].mode == "lines" and len(many.data[0].x) == 500


def test_accuracy_chart_has_a_point_per_epoch_and_reference_lines():
    fig = accuracy_figure([{"epoch": 1, "test_accuracy": 0.4, "train_accuracy": 0.45},
                           {"epoch": 2, "test_accuracy": 0.55, "train_accuracy": 0.7}], 10, 0.54)
    assert list(fig.data[0].y) == [0.4, 0.55] and fig.layout.title.text == "Test accuracy"
    assert fig.data[1].name == "train" and list(fig.data[1].y) == [0.45, 0.7]  # beside it: overfitting shows
    # a run recorded before train accuracy was measured draws an empty train line, not an error
    assert list(accuracy_figure([{"epoch": 1, "test_accuracy": 0.4}]).data[1].y) == []
    lines = sorted(s.y0 for s in fig.layout.shapes)
    assert lines == [0.1, 0.54]


def test_accuracy_chart_spans_the_planned_epochs_from_the_start():
    # before epoch 1 ends, a 3-epoch job's axis runs 0-3 (Plotly's own empty axis ran 0-6), a tick an epoch, the
    # last marker whole inside; it does not move as the points come
    empty, one, done = (accuracy_figure([{"epoch": e, "test_accuracy": 0.3} for e in range(1, n + 1)], planned=3)
                        for n in (0, 1, 3))
    assert empty.layout.xaxis.range == (0, 3.25) and empty.layout.xaxis.autorange is False
    assert empty.layout.xaxis.dtick == 1 and one.layout.xaxis.range == done.layout.xaxis.range == (0, 3.25)
    long = accuracy_figure([], planned=30).layout.xaxis
    assert long.range == (0, 30.9) and long.dtick is None  # Plotly spaces 30 epochs' ticks itself
    assert accuracy_figure([{"epoch": 1, "test_accuracy": 0.4}]).layout.xaxis.range is None  # no plan: autorange


def test_per_class_accuracy_bars_a_legend_for_their_colours_and_hover():
    fig = per_class_figure(CLASSES, [50, 90, 20], [100, 100, 100], sort=True)
    above, below = fig.data  # overall is 53.3%: one colour at or above it, one below, each named in the legend
    assert above.type == "bar" and list(above.x) == ["car"] and list(above.y) == [0.9]
    assert list(below.x) == ["plane", "bird"] and list(below.y) == [0.5, 0.2]
    assert above.name == "at or above overall" and below.name == "below overall"
    assert above.marker.color != below.marker.color
    assert list(fig.layout.xaxis.categoryarray) == ["car", "plane", "bird"]  # sorted, across both traces
    assert [list(c) for c in below.customdata] == [[50, 100], [20, 100]]
    assert fig.layout.title.text == "Per-class accuracy"
    assert sorted(round(s.y0, 4) for s in fig.layout.shapes) == [round(1 / 3, 4), round(160 / 300, 4)]
    assert list(per_class_figure(CLASSES, [50, 90, 20], [100, 100, 100]).layout.xaxis.categoryarray) == CLASSES


def test_confusion_matrix_counts_and_row_normalized():
    matrix = [[8, 2, 0], [1, 9, 0], [0, 5, 5]]
    counts = confusion_figure(matrix, CLASSES)
    assert counts.data[0].type == "heatmap" and counts.data[0].z[2][1] == 5 and counts.data[0].text[0][0] == "8"
    share = confusion_figure(matrix, CLASSES, normalize=True)
    assert share.data[0].z[2][1] == 0.5 and share.data[0].text[2][1] == "50%"
    assert counts.layout.title.text == "Confusion matrix" and list(counts.data[0].x) == CLASSES
    cells = counts.data[1]  # a click on a cell selects the marker on it: (predicted, true) of that cell
    assert len(cells.x) == 9 and (cells.x[7], cells.y[7], cells.customdata[7]) == ("car", "bird", "5")


def test_probabilities_histograms_and_counts():
    fig = probability_figure(CLASSES, [0.1, 0.7, 0.2])
    assert fig.data[0].orientation == "h" and list(fig.data[0].x) == [0.1, 0.7, 0.2]
    hist = pixel_histogram_figure(torch.tensor([0.0, 0.5, 1.0]), torch.tensor([-1.0, 0.0, 1.0]))
    assert [t.type for t in hist.data] == ["histogram", "histogram"] and list(hist.data[1].x) == [-1.0, 0.0, 1.0]
    counts = class_count_figure(CLASSES, [5, 5, 5], [1, 1, 1])
    assert [t.name for t in counts.data] == ["train", "test"] and list(counts.data[0].y) == [5, 5, 5]


def test_speed_figures_mark_the_crossover():
    rows = [dict(device=d, threads=2 if d == "cpu" else None, batch_size=64, width=w, images_per_second=v)
            for d, w, v in [("cpu", 6, 8000), ("cpu", 128, 500), ("cuda", 6, 4000), ("cuda", 128, 20000)]]
    fig = throughput_figure(rows)
    assert [t.name for t in fig.data] == ["cpu, 2 threads, batch 64", "cuda, batch 64"]
    assert list(fig.data[0].x) == [6, 128]
    speed = speedup_figure(rows)
    assert list(speed.data[0].y) == [0.5, 40.0]
    crossover = [s for s in speed.layout.shapes if s.type == "line" and s.x0 == s.x1]
    assert crossover and crossover[0].x0 == 128
    race = race_figure({"cpu": [{"seconds": 1.0, "running_loss": 2.0}],
                        "cuda": [{"seconds": 0.5, "running_loss": 2.1}]})
    assert [t.name for t in race.data] == ["cpu", "cuda"] and race.layout.title.text == "Running loss"


def test_image_grid_enlarges_and_frames():
    images = torch.zeros(3, 3, 4, 4, dtype=torch.uint8)
    images[1] = 255
    sheet = image_grid(images, ["a", "b", "c"], [True, False, None], columns=3, scale=5)
    tile, pad = 20, 6
    assert sheet.width == 3 * (tile + 2 * pad)
    assert sheet.getpixel((2, 2)) == (46, 125, 50)  # green frame
    assert sheet.getpixel((0, 0)) == (255, 255, 255)  # with a gap to its neighbour
    assert sheet.getpixel((tile + 2 * pad + 2, 2)) == (198, 40, 40)  # red frame
    assert sheet.getpixel((tile + 2 * pad + pad + 3, pad + 3)) == (255, 255, 255)  # the white image, enlarged
    gray = image_grid(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), scale=2)
    assert gray.mode == "RGB"


def test_filters_and_feature_maps_are_stretched_to_full_range():
    weights = torch.randn(6, 3, 5, 5)
    images = filter_images(weights)
    assert images.shape == (6, 3, 5, 5) and images.dtype == torch.uint8
    assert images.amax(dim=(1, 2, 3)).tolist() == [255] * 6 and images.amin(dim=(1, 2, 3)).tolist() == [0] * 6
    maps = feature_map_images(torch.rand(4, 10, 10))
    assert maps.shape == (4, 1, 10, 10) and maps.amax().item() == 255

"""Results: the tutorial's step 5, testing the network on the test data, and more."""

import streamlit as st

from core.data import Normalizer
from core.evaluate import UploadError, caption, predict, prepare_upload, select_examples, top_losses
from core.figures import confusion_figure, image_grid, per_class_figure, probability_figure
from ui.app import require_app
from ui.common import held
from ui.run_files import dataset_for, follow_running, model_for, no_runs_yet, pick_run, predictions_for

require_app()  # first: a page run without dashboard.py is run again through it

st.title("Results: what did the network learn?")
st.caption("The tutorial's step 5: show test images the network has never seen, with its guesses.")

run = pick_run("results_run")
if run is None:
    no_runs_yet()
    st.stop()
follow_running(run)
data = dataset_for(run.config.dataset)  # the server's own data folder, never one a run names
pred = predictions_for(run)
if data is None or pred is None:
    if data is not None:
        st.info("This run has no predictions yet: they are saved at the end of each epoch.")
    st.stop()
probs, labels, classes = pred["probs"], data.test_labels, data.classes
if probs.shape != (len(labels), len(classes)):
    st.error(f"This run's predictions ({probs.shape[0]:,} images x {probs.shape[1]} classes) do not match the "
             f"dataset on disk ({len(labels):,} x {len(classes)}): was the image folder changed?")
    st.stop()
predicted = probs.argmax(1)
# the accuracy the run measured itself (its chart and the run list say the same); the stored probabilities
# are half precision, which can move a near tie
measured = next((e.get("test_accuracy") for e in reversed(run.history.epochs) if e.get("epoch") == pred["epoch"]), None)
accuracy = measured if isinstance(measured, (int, float)) else float((predicted == labels).float().mean())
st.markdown(f"Predictions after epoch **{pred['epoch']}**: **{accuracy:.1%}** of "
            f"{len(labels):,} test images right.")

# -- ground truth vs prediction -------------------------------------------------------------------
st.header("Ground truth vs prediction")
# 6 pictures a row: each shows about as large as it is drawn in the page's column at 1280x720, so its two caption
# lines stay readable on a projector (8 a row shrank them to about 9 px)
GRID_COLUMNS = 6
c1, c2, c3, c4 = st.columns([2, 1.5, 2, 1.4])
count = c1.slider("Number of images", 4, 64, 16, step=4)
only_mistakes = c2.checkbox("Only mistakes")
class_name = c3.selectbox("Class", ["All classes", *classes])
if c4.button("New sample", help="Show other images that match the filters."):
    st.session_state.results_seed = st.session_state.get("results_seed", 0) + 1
seed = st.session_state.get("results_seed", 0)
chosen = select_examples(labels, predicted, count, seed, only_mistakes,
                         classes.index(class_name) if class_name in classes else None)
if len(chosen) == 0:
    st.info("No test image matches these filters.")
else:
    st.image(image_grid(data.test_images[chosen], [caption(classes, int(labels[i]), probs[i]) for i in chosen],
                        [bool(predicted[i] == labels[i]) for i in chosen], columns=GRID_COLUMNS),
             caption=f"Sample {seed}: a green frame is a right guess, a red one a wrong guess.")

# -- per-class accuracy --------------------------------------------------------------------------------
st.header("Per-class accuracy")
epochs = [e for e in run.history.epochs
          if len(e.get("per_class_correct", [])) == len(e.get("confusion", [])) == len(classes)]
if epochs:
    e1, e2 = st.columns([3, 1])
    epoch = (e1.slider("Epoch", 1, len(epochs), len(epochs), key="results_epoch",
                        help="Replay how each class improved.")
             if len(epochs) > 1 else 1)
    sort = e2.toggle("Sort by accuracy")
    row = epochs[epoch - 1]
    st.plotly_chart(per_class_figure(classes, row["per_class_correct"], row["per_class_total"], sort,
                                     title="Per-class accuracy"), key="per_class_chart")

    # -- confusion matrix ------------------------------------------------------------------------------
    st.header("Confusion matrix")
    st.caption("Row: the true class; column: the network's guess. The diagonal holds the right answers. "
               "Click a cell, or choose it below, to see its images.")
    normalize = st.toggle("Row-normalized (fractions of each true class)")

    def select_cell() -> None:
        """A click on a cell chooses its true and predicted class below."""
        points = st.session_state.confusion_chart.get("selection", {}).get("points", [])
        if points and points[0].get("y") in classes and points[0].get("x") in classes:
            st.session_state.results_true, st.session_state.results_pred = points[0]["y"], points[0]["x"]

    st.session_state.setdefault("results_true", classes[0])
    st.session_state.setdefault("results_pred", classes[1])
    for name in ("results_true", "results_pred"):  # another run's classes: start again from the first cell
        if st.session_state[name] not in classes:
            st.session_state.results_true, st.session_state.results_pred = classes[0], classes[1]
    st.plotly_chart(confusion_figure(row["confusion"], classes, normalize), key="confusion_chart",
                    on_select=select_cell, selection_mode="points")
    t1, t2 = st.columns(2)
    true_name = t1.selectbox("True class", classes, key="results_true", **held("results_true", classes))
    pred_name = t2.selectbox("Predicted class", classes, key="results_pred", **held("results_pred", classes))
    cell = select_examples(labels, predicted, 24, seed, true_class=classes.index(true_name),
                           predicted_class=classes.index(pred_name))
    if len(cell):
        st.image(image_grid(data.test_images[cell], [caption(classes, int(labels[i]), probs[i]) for i in cell],
                            [bool(predicted[i] == labels[i]) for i in cell], columns=GRID_COLUMNS, scale=4),
                 caption=f"{len(cell)} of the test images that are {true_name} and were taken for {pred_name}")
    else:
        st.caption(f"No {true_name} was taken for {pred_name}.")

# -- top losses ----------------------------------------------------------------------------------------------
st.header("Top losses")
st.caption("The mistakes the network was most sure about: often odd pictures, sometimes wrong labels.")
worst = top_losses(probs, labels, 16)
if len(worst):
    st.image(image_grid(data.test_images[worst], [caption(classes, int(labels[i]), probs[i]) for i in worst],
                        [False] * len(worst), columns=GRID_COLUMNS))

# -- try your own image ----------------------------------------------------------------------------------------
st.header("Try your own image")
upload = st.file_uploader("Upload a photo (PNG or JPEG)", type=["png", "jpg", "jpeg"])
if upload is not None:
    model = model_for(run)
    try:
        image = prepare_upload(upload.getvalue(), data.image_size, data.channels)
    except UploadError as exc:
        st.error(f"That file cannot be used: {exc}.")
    else:
        if model is not None:
            p = predict(model, image, Normalizer(data.mean, data.std))[0]
            left, right = st.columns([1, 2])
            left.image(image_grid(image, scale=8), caption=f"As the network sees it: {data.image_size}x"
                                                            f"{data.image_size} pixels")
            right.plotly_chart(probability_figure(classes, p.tolist()), key="upload_probs")
            st.markdown(f"The network says **{classes[int(p.argmax())]}** ({float(p.max()):.0%} sure). "
                        f"It only knows these {len(classes)} classes, so it picks one of them even for a photo "
                        "of something else.")
else:
    st.caption("Not a class it knows? It will still choose one of its classes: that is all it can do.")

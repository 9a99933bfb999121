"""Train: the tutorial's steps 3 and 4 (define a loss and optimizer, train the network), live."""

import streamlit as st

import ui.live_feed as live
from core.config import PRESETS, ConfigError, TrainConfig, command_line
from core.data import DATASET_NAMES, DatasetError, check_folder
from core.figures import accuracy_figure, loss_ranges, running_loss_figure
from core.jobs import get_manager
from core.train import TUTORIAL_ACCURACY, available_devices
from ui.common import current_job, data_dir, describe, job_active, remember, save_widgets
from ui.live_chart import live_plotly_chart

DATASETS = {**DATASET_NAMES, "Image folder": "folder"}
LEARNING_RATES = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
PRESET_LABELS = {"Tutorial": "tutorial", "Fast": "fast"}
DEVICE_LABELS = {"cpu": "CPU", "cuda": "CUDA GPU", "mps": "Apple GPU (MPS)"}
SCHEDULES = {"Constant (the tutorial)": "constant", "One-cycle (warm up, then anneal)": "one-cycle"}
WIDGETS = dict(preset="Tutorial", dataset="CIFAR-10", folder="", epochs=2, lr=0.001, momentum=0.9, batch_size=4,
               conv_width=6, conv2_width=16, nesterov=False, schedule="Constant (the tutorial)", device=None, seed=0)


def set_preset() -> None:
    """Choosing a preset moves the knobs to its values."""
    name = PRESET_LABELS.get(st.session_state.train_preset)
    if name:
        values = PRESETS[name]
        for key in ("epochs", "lr", "momentum", "batch_size", "conv_width", "conv2_width"):
            st.session_state[f"train_{key}"] = values[key]
        st.session_state.train_nesterov = values.get("nesterov", False)
        st.session_state.train_schedule = next(k for k, v in SCHEDULES.items()
                                               if v == values.get("schedule", "constant"))


def to_custom() -> None:
    """Moving a knob by hand makes the settings Custom."""
    st.session_state.train_preset = "Custom"


def use_shapes() -> None:
    st.session_state.train_dataset = "Shapes (offline)"


def controls() -> TrainConfig | None:
    """The knobs; returns the config they describe, or None (with the reason shown) when it is not valid."""
    # widgets drawn on every run of this page, with their defaults
    drawn = {f"train_{k}": v for k, v in WIDGETS.items() if k != "folder"}
    remember(list(drawn))
    for key, value in drawn.items():
        st.session_state.setdefault(key, value)
    devices = available_devices()
    if st.session_state.train_device not in devices:
        st.session_state.train_device = devices[1] if len(devices) > 1 else "cpu"

    st.radio("Preset", ["Tutorial", "Fast", "Custom"], key="train_preset", horizontal=True, on_change=set_preset,
             help="Tutorial: exactly the tutorial's settings. Fast: reaches the tutorial's accuracy in seconds.")
    left, right = st.columns(2)
    with left:
        dataset = st.selectbox("Dataset", list(DATASETS), key="train_dataset")
        folder = ""
        if DATASETS[dataset] == "folder":
            # kept and restored only in runs that draw it: a value set while its widget is not drawn
            # would come back, stale, the next time the widget leaves the page
            remember(["train_folder"])
            folder = st.text_input("Folder path", key="train_folder",
                                   help="A folder with train/ and test/, one sub-folder per class inside each.")
            save_widgets(["train_folder"])
        st.slider("Epochs", 1, 30, key="train_epochs", on_change=to_custom,
                  help="How many times the network sees every training image.")
        st.select_slider("Learning rate", LEARNING_RATES, key="train_lr", on_change=to_custom,
                         help="How big a step the optimizer takes; too big and the loss explodes (diverges).")
        st.slider("Momentum", 0.0, 0.99, step=0.01, key="train_momentum", on_change=to_custom,
                  help="How much of the previous step SGD keeps: smooths the path downhill.")
    with right:
        st.select_slider("Batch size", BATCH_SIZES, key="train_batch_size", on_change=to_custom,
                         help="Images per optimizer step. The tutorial uses 4.")
        st.slider("Conv width", 1, 256, key="train_conv_width", on_change=to_custom,
                  help="Output channels of conv1 (= input channels of conv2). The tutorial uses 6.")
        device = st.selectbox("Device", devices, key="train_device", format_func=DEVICE_LABELS.get)
        if len(devices) == 1:
            st.caption("No GPU on this machine, so only the CPU is offered. See the Speed page for what a GPU "
                       "would change.")
        st.number_input("Seed", 0, 2**31 - 1, step=1, key="train_seed",
                        help="The same seed and settings give the same run.")
    with st.expander("More settings"):
        st.slider("Conv2 width", 1, 256, key="train_conv2_width", on_change=to_custom,
                  help="Output channels of conv2. The tutorial uses 16.")
        schedule = st.selectbox("Learning-rate schedule", list(SCHEDULES), key="train_schedule", on_change=to_custom)
        st.checkbox("Nesterov momentum", key="train_nesterov", on_change=to_custom,
                    help="Take the gradient a little ahead, where momentum is carrying the weights.")

    save_widgets(list(drawn))
    name = DATASETS[dataset] if DATASETS[dataset] != "folder" else f"folder:{folder.strip()}"
    try:
        return TrainConfig(dataset=name, data_dir=data_dir(), epochs=st.session_state.train_epochs,
                           lr=float(st.session_state.train_lr), momentum=float(st.session_state.train_momentum),
                           nesterov=bool(st.session_state.train_nesterov),
                           schedule=SCHEDULES[schedule], batch_size=st.session_state.train_batch_size,
                           conv_width=st.session_state.train_conv_width,
                           conv2_width=st.session_state.train_conv2_width, device=device,
                           seed=int(st.session_state.train_seed))
    except ConfigError as exc:
        st.error(f"These settings cannot train: {exc}.")
        return None


def start(config: TrainConfig) -> bool:
    """Start a job for `config`; False (with the reason shown) when its folder is not usable."""
    if config.dataset.startswith("folder:"):
        try:
            check_folder(config.dataset[len("folder:"):])
        except DatasetError as exc:
            st.error(str(exc))
            return False
    job = get_manager().start(config)
    st.session_state.job_id = job.id
    st.session_state.pop("confirm_config", None)
    return True


def train_button(config: TrainConfig | None) -> None:
    job = current_job()
    if st.button("Train", type="primary", disabled=config is None):
        if job_active(job):
            st.session_state.confirm_config = config  # ask before starting a second job
        elif start(config):
            st.rerun()  # from the top, so the sidebar (drawn before this button) follows the new job too
    pending = st.session_state.get("confirm_config")
    if pending is not None and job_active(job):
        st.warning("Your last training job is still running. Stop it and start the new one?")
        yes, no = st.columns(2)
        if yes.button("Stop it and train the new settings"):
            job.stop()
            if start(pending):
                st.rerun()
        if no.button("Keep the running job"):
            st.session_state.pop("confirm_config")
            st.rerun()


def notices(snap) -> None:
    if snap.status == "failed":
        st.error(f"Training failed: {snap.message}")
        if "shapes" in snap.message:
            st.button("Use Shapes (offline) instead", on_click=use_shapes)
    elif snap.status == "diverged":
        st.error(f"The loss diverged: {snap.message}")
    elif snap.status == "stopped":
        st.info(f"Stopped: the history so far is kept ({snap.run_dir or 'no run directory'}).")
    elif snap.status == "finished" and snap.message:  # e.g. it learned nothing, and what to change
        if snap.end.get("learned_nothing"):
            st.warning(f"Finished, but {snap.message}")
        else:
            st.info(f"Finished: {snap.message}.")


def controls_row(job, snap) -> None:
    """Pause/Resume and Stop, and what went wrong if it did."""
    pause_col, stop_col, _ = st.columns([1, 1, 4])
    if snap.status == "paused":
        if pause_col.button("Resume"):
            job.resume()
            st.rerun()
    elif pause_col.button("Pause", disabled=snap.status not in ("running", "starting")):
        job.pause()
        st.rerun()
    if stop_col.button("Stop", disabled=not snap.active):
        job.stop()
        st.rerun()
    with st.container():  # messages come and go inside it; the elements below keep their places
        notices(snap)


def numbers(snap) -> None:
    """The status in words, the progress bar and the metrics, drawn by Streamlit (a job that has ended, or
    no live feed); the live element draws the same while the job trains."""
    st.markdown(f"Status: {describe(snap)}")
    bar = live.progress(snap)
    if bar:
        st.progress(bar[0], text=bar[1])
    values = live.metrics(snap)
    if values:
        for column, (label, value, delta) in zip(st.columns(3), values):
            column.metric(label, value, delta=delta, delta_color="inverse")


def accuracy_figure_of(snap):
    if snap is None or not snap.start:
        return accuracy_figure([], 10, None)
    cifar = "cifar" in snap.config.dataset.lower()
    return accuracy_figure(snap.epochs, len(snap.start["classes"]), TUTORIAL_ACCURACY if cifar else None)


def charts(snap, feed: str | None = None, seq: int = 0) -> None:
    left, right = st.columns([3, 2])
    with left:
        losses, total = (snap.losses, live.total_images(snap)) if snap else ([], None)
        ranges = loss_ranges(losses, total) if total else None
        live_plotly_chart(running_loss_figure(losses, total_images=total), key="running_loss_chart",
                          feed=feed, series="running_loss", seq=seq, ranges=ranges)
    with right:
        live_plotly_chart(accuracy_figure_of(snap), key="test_accuracy_chart", feed=feed, series="test_accuracy",
                          seq=seq)


# Fallback, where no live feed can be written (static serving off, a read-only app folder): three
# fragments, each redrawn on its own timer only while the job is active. The running loss redraws
# twice a second; status, progress and metrics once a second; the accuracy chart every two seconds.
LOSS_EVERY, STATUS_EVERY, ACCURACY_EVERY = 0.5, 1.0, 2.0


def status_fragment(job, was_active: bool) -> None:
    snap = job.snapshot()
    numbers(snap)
    controls_row(job, snap)
    if was_active and not snap.active:
        st.rerun()  # once, so the whole page sees the job has ended and the timers stop


def loss_fragment(job) -> None:
    snap = job.snapshot()
    live_plotly_chart(running_loss_figure(snap.losses, total_images=live.total_images(snap)),
                      key="running_loss_chart")


def accuracy_fragment(job) -> None:
    live_plotly_chart(accuracy_figure_of(job.snapshot()), key="test_accuracy_chart")


def live_view(job) -> None:
    """What the job is doing. Training never waits for any of it."""
    if job is None:
        st.info("Choose the settings above and click **Train**. The running loss will appear here as it falls.")
        # The charts are drawn (empty) before Train is clicked: the browser loads its charting code
        # then (seconds on a slow machine), so the first loss point shows at once.
        charts(None)
        return
    snap = job.snapshot()
    feed = live.live_feed() if snap.active else None
    state = feed.follow(job) if feed else None
    # Both ways have the same layout, so the charts stay the same elements in the browser when the job
    # ends (and go on from the points they have).
    if state is not None:  # while it trains, the browser fetches its state itself: no reruns
        with st.container():
            live.live_numbers(feed.url(job), state, key="live_numbers")
        controls_row(job, snap)
        charts(snap, feed.url(job), state["seq"])
    elif not snap.active:
        with st.container():
            numbers(snap)
        controls_row(job, snap)
        charts(snap)
    else:
        st.fragment(status_fragment, run_every=STATUS_EVERY)(job, True)
        left, right = st.columns([3, 2])
        with left:
            st.fragment(loss_fragment, run_every=LOSS_EVERY)(job)
        with right:
            st.fragment(accuracy_fragment, run_every=ACCURACY_EVERY)(job)


st.title("Train the network")
st.caption("The tutorial's steps 3 and 4: a classification cross-entropy loss, SGD with momentum, "
           "and a loop over the data. Set the knobs, click Train, and watch the loss fall.")
config = controls()
if config is not None:
    st.caption("The same run from a terminal:")
    st.code(command_line(config), language="bash")
train_button(config)
live_view(current_job())

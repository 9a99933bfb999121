"""Speed lab: the tutorial's last exercise, widen the network until the GPU pulls ahead."""

import os

import pandas as pd
import streamlit as st

from core.config import ConfigError, TrainConfig
from core.data import DATASET_NAMES
from core.figures import race_figure, speedup_figure, throughput_figure
from core.jobs import get_manager
from core.speed import SpeedError, SweepSpec
from core.train import available_devices
from ui.app import require_app

require_app()  # first: a page run without dashboard.py is run again through it

WIDTHS = [6, 16, 32, 64, 128, 256]
BATCHES = [4, 16, 64, 256]
TRAIN_SIZES = {"cifar10": 50000, "mnist": 60000, "fashion-mnist": 60000, "shapes": 10000}
CORES = os.cpu_count() or 1

st.title("Speed lab: CPU against GPU")
st.markdown("> *Why don't I notice a MASSIVE speedup compared to CPU? Because your network is really small.* "
            "— the tutorial, which then asks you to widen the network. Do it here and watch.")
devices = available_devices()
if devices == ["cpu"]:
    st.info(
        "**This machine has no GPU**, so the lab measures the CPU only, with 1 thread against all "
        f"{CORES} threads. What a GPU would change: each layer becomes one kernel launch costing a few "
        "microseconds however little work it holds. The tutorial's network at batch 4 gives each launch "
        "almost nothing to do, so a GPU barely beats a CPU; widen the convolutions or grow the batch and "
        "each launch carries thousands of times more arithmetic, which a GPU does in parallel. "
        "Tiny batches also run faster on **one** CPU thread: splitting a tiny job costs more than it saves.")
else:
    graphs = ("This app records each training step once as a **CUDA graph** and replays it: the GPU gets the "
              "whole step (forward, loss, backward, update) in one launch. ") if "cuda" in devices else ""
    st.info(
        "**What a GPU changes:** each layer becomes a kernel launch costing a few microseconds however little "
        "work it holds. The tutorial's network at batch 4 gives each launch almost nothing to do, so launched "
        f"one by one (the tutorial's way, the *naive* column below) a GPU barely beats a CPU. {graphs}"
        "Widen the convolutions or grow the batch and each launch carries thousands of times more arithmetic, "
        "which a GPU does in parallel.")


def session_job(key: str):
    return get_manager().get(st.session_state.get(key))


# -- the sweep ----------------------------------------------------------------------------------
st.header("Sweep: images per second by width")
c1, c2 = st.columns(2)
widths = c1.multiselect("Conv widths", WIDTHS, default=WIDTHS, key="speed_widths")
batches = c2.multiselect("Batch sizes", BATCHES, default=[4, 64], key="speed_batches")
c3, c4, c5 = st.columns(3)
chosen_devices = c3.multiselect("Devices", devices, default=devices, key="speed_devices")
thread_options = {"1 thread": 1, f"all {CORES} threads": CORES} if CORES > 1 else {"1 thread": 1}
threads = c4.multiselect("CPU threads", list(thread_options), default=list(thread_options), key="speed_threads")
steps = c5.slider("Timed steps per point", 3, 100, 10, key="speed_steps",
                  help="Each point also runs 3 untimed warm-up steps first.")
if st.button("Run sweep", type="primary"):
    try:
        spec = SweepSpec(devices=tuple(chosen_devices), widths=tuple(sorted(widths)),
                         batch_sizes=tuple(sorted(batches)), threads=tuple(thread_options[t] for t in threads) or (0,),
                         steps=steps, warmup=3)
    except SpeedError as exc:
        st.error(f"The sweep cannot run: {exc}.")
    else:
        old = session_job("speed_job_id")
        if old is not None:
            old.stop()
        st.session_state.speed_job_id = get_manager().start(spec, kind="speed").id


@st.fragment(run_every=0.5)
def sweep_view() -> None:
    job = session_job("speed_job_id")
    if job is None:
        st.caption("Choose what to compare and click **Run sweep**. Points appear as they are measured.")
        return
    snap = job.snapshot()
    st.progress(snap.fraction_done, text=f"{len(snap.rows)} of {snap.start.get('total_steps', '?')} measured "
                                         f"({snap.status})" + (f": {snap.message}" if snap.status == "failed" else ""))
    if not snap.rows:
        return
    st.plotly_chart(throughput_figure(snap.rows), key="speed_chart")
    frame = pd.DataFrame(snap.rows)
    if {"cpu", "cuda"} <= set(frame["device"]):
        st.plotly_chart(speedup_figure(snap.rows, "cuda", "cpu"), key="speedup_chart")
    elif frame["threads"].nunique() > 1:
        pivot = frame.pivot_table(index=["batch_size", "width"], columns="threads", values="images_per_second")
        ratio = (pivot[pivot.columns.max()] / pivot[pivot.columns.min()]).rename("all threads ÷ 1 thread")
        st.markdown("**All threads against one** (above 1: more threads help; below 1: they get in the way):")
        st.dataframe(ratio.reset_index().style.format({"all threads ÷ 1 thread": "{:.2f}"}), hide_index=True)
    columns = ["device", "threads", "batch_size", "width", "images_per_second", "step_ms", "data_ms",
               "naive_images_per_second"]
    st.dataframe(frame[[c for c in columns if c in frame]], hide_index=True)
    st.caption("images_per_second: forward, backward and optimizer step with the data already on the device "
               "(on a GPU, each step replayed as one CUDA graph, as training does). data_ms: moving one batch "
               "from the host and normalizing it. naive: the tutorial's way on a GPU, every kernel launched one "
               "by one, copying every batch and reading the loss every step.")
    st.download_button("Download CSV", frame.to_csv(index=False), "speed-sweep.csv", "text/csv")


sweep_view()


# -- estimate ---------------------------------------------------------------------------------------
def train_config() -> TrainConfig:
    s = st.session_state
    try:
        return TrainConfig(dataset="shapes", batch_size=s.get("train_batch_size", 4),
                           conv_width=s.get("train_conv_width", 6), conv2_width=s.get("train_conv2_width", 16))
    except ConfigError:
        return TrainConfig()


st.header("How long will one epoch take?")
config = train_config()
dataset = DATASET_NAMES.get(st.session_state.get("train_dataset", "CIFAR-10"), "cifar10")
num_train = TRAIN_SIZES.get(dataset, 50000)
st.markdown(f"For the Train page's settings: batch {config.batch_size}, conv width {config.conv_width}, "
            f"{num_train:,} training images.")
if st.button("Estimate"):
    import torch

    from core.train import choose_threads

    threads = choose_threads(config, torch.device("cpu"))
    spec = SweepSpec(devices=tuple(devices), widths=(config.conv_width,), batch_sizes=(config.batch_size,),
                     threads=(threads,), steps=10, warmup=3, conv2_width=config.conv2_width)
    st.session_state.estimate_job_id = get_manager().start(spec, kind="speed").id
    st.session_state.estimate_images = num_train


@st.fragment(run_every=0.5)
def estimate_view() -> None:
    job = session_job("estimate_job_id")
    if job is None:
        return
    snap = job.snapshot()
    if snap.active and not snap.rows:
        st.caption(f"Measuring ({snap.status}) ...")
    for row in snap.rows:
        seconds = st.session_state.estimate_images / row["images_per_second"]
        st.metric(f"One epoch on {row['device']}" + (f" ({row['threads']} thread(s))" if row["threads"] else ""),
                  f"{int(seconds // 60)} min {seconds % 60:.0f} s", help=f"{row['images_per_second']:,.0f} images/s")


estimate_view()

# -- the race ------------------------------------------------------------------------------------------
st.header("Race: the same training on two devices")
racers = {"CPU, 1 thread": ("cpu", 1)}
if CORES > 1:
    racers[f"CPU, all {CORES} threads"] = ("cpu", CORES)
for d in devices[1:]:
    racers[{"cuda": "CUDA GPU", "mps": "Apple GPU (MPS)"}[d]] = (d, 0)
names = list(racers)
r1, r2, r3 = st.columns(3)
a = r1.selectbox("Racer A", names, index=0)
b = r2.selectbox("Racer B", names, index=len(names) - 1)
race_batch = r3.select_slider("Race batch size", [4, 16, 64, 256], value=64)
race_width = st.slider("Race conv width", 6, 256, 6)
if st.button("Start the race"):
    base = TrainConfig(dataset="shapes", epochs=1, batch_size=race_batch, conv_width=race_width, lr=0.01, seed=0,
                       log_interval=max(1, 200 // race_batch))
    jobs = {}
    for name in dict.fromkeys([a, b]):
        device, n = racers[name]
        jobs[name] = get_manager().start(base.replace(device=device, threads=n)).id
    st.session_state.race_jobs = jobs
if get_manager().max_running < 2:
    st.caption("This server trains one job at a time, so the racers run one after the other; each curve's clock "
               "starts with its own training.")


@st.fragment(run_every=0.5)
def race_view() -> None:
    jobs = {name: get_manager().get(i) for name, i in st.session_state.get("race_jobs", {}).items()}
    if not jobs:
        return
    curves, notes = {}, []
    for name, job in jobs.items():
        if job is None:
            continue
        snap = job.snapshot()
        curves[name] = [{"seconds": e["train_seconds"], "running_loss": e["running_loss"]} for e in snap.losses]
        seconds = snap.end.get("train_seconds")
        notes.append(f"**{name}**: {snap.status}" + (f" in {seconds:.1f} s of training" if seconds else ""))
    st.markdown(" · ".join(notes))
    st.plotly_chart(race_figure(curves), key="race_chart")


race_view()

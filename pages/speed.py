"""Speed lab: the tutorial's last exercise, widen the network until the GPU pulls ahead."""

import os
import time

import pandas as pd
import streamlit as st
import torch

from core.config import DEVICE_LABELS, OPTIMIZERS, ConfigError, TrainConfig, page_range
from core.device import available_devices
from core.figures import race_figure, scaling_figure, speedup_figure, throughput_figure
from core.jobs import get_manager
from core.memory import dataset_shape
from core.model import ModelArgs
from core.optimizers import LABELS as OPTIMIZER_LABELS
from core.speed import BUSY_SHARE, CannotKeep, ScalingSpec, SpeedError, SweepSpec, keep_result, newest_result
from ui.app import require_app
from ui.common import data_dir, held, runs_root
from ui.train_form import chosen_settings

require_app()  # first: a page run without dashboard.py is run again through it

WIDTHS = [6, 16, 32, 64, 128, 256]
BATCHES = [4, 16, 64, 256]
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


def active(key: str) -> bool:
    """Whether this session's measuring job `<key>_job_id` (key "race": its racers) is waiting or running."""
    if key == "race":
        jobs = [get_manager().get(i) for i in st.session_state.get("race_jobs", {}).values()]
    else:
        jobs = [session_job(f"{key}_job_id")]
    return any(job is not None and job.snapshot().active for job in jobs)


def live(view, key: str) -> None:
    """A view drawn with the page and, while its measurement runs, redrawn twice a second by a fragment; when the
    measurement ends the whole page runs once more, and the timer stops. Idle, the four views cost nothing (on a
    timer each, they redrew the last results' charts eight times a second; beside them a CI run's click on Measure
    scaling found its button replaced again and again for 30 s)."""
    was = active(key)

    def redraw() -> None:
        view()
        if was and not active(key):
            st.rerun(scope="app")

    st.fragment(redraw, run_every=0.5 if was else None)()


# -- the sweep ----------------------------------------------------------------------------------
st.header("Sweep: images per second by width")
c1, c2 = st.columns(2)
widths = c1.multiselect("Conv widths", WIDTHS, key="speed_widths", **held("speed_widths", WIDTHS, WIDTHS, many=True))
batches = c2.multiselect("Batch sizes", BATCHES, key="speed_batches",
                         **held("speed_batches", BATCHES, [4, 64], many=True))
c3, c4, c5 = st.columns(3)
chosen_devices = c3.multiselect("Devices", devices, key="speed_devices",
                                **held("speed_devices", devices, devices, many=True))
thread_options = {"1 thread": 1, f"all {CORES} threads": CORES} if CORES > 1 else {"1 thread": 1}
threads = c4.multiselect("CPU threads", list(thread_options), key="speed_threads",
                         **held("speed_threads", list(thread_options), list(thread_options), many=True))
steps = c5.slider("Timed steps per point", 3, 100, key="speed_steps", **held("speed_steps", default=10),
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
        st.session_state.speed_job_id = get_manager().start_sweep(spec).id


TABLE = {"device": "device", "threads": "CPU threads", "batch_size": "batch", "width": "conv width",
         "images_per_second": "images/s", "step_ms": "ms per step", "data_ms": "ms to move a batch",
         "naive_images_per_second": "images/s, the tutorial's way"}


def sweep_results(rows: list[dict], saved: float | None = None) -> None:
    """The sweep's charts and table (live while it runs, or the last one kept on disk)."""
    if saved:
        st.caption(f"The last sweep, measured {time.strftime('%d %b %H:%M', time.localtime(saved))}.")
    busy = [r for r in rows if r.get("busy")]
    if busy:
        share = min(r["cpu_share"] for r in busy)
        st.warning(f"The machine was busy while {len(busy)} of these points were measured (this program got as "
                   f"little as {share:.0%} of the CPU its threads asked for, even when measured again): another "
                   "program is using the cores, so those points are too slow and the ratios between them can be "
                   "wrong. Close it and run the sweep again.")
    st.plotly_chart(throughput_figure(rows), key="speed_chart")
    frame = pd.DataFrame(rows)
    if {"cpu", "cuda"} <= set(frame["device"]):
        st.plotly_chart(speedup_figure(rows, "cuda", "cpu"), key="speedup_chart")
    elif frame["threads"].nunique() > 1:
        pivot = frame.pivot_table(index=["batch_size", "width"], columns="threads", values="images_per_second")
        ratio = (pivot[pivot.columns.max()] / pivot[pivot.columns.min()]).rename("all threads ÷ 1 thread")
        st.markdown("**All threads against one** (above 1: more threads help; below 1: they get in the way):")
        st.dataframe(ratio.reset_index().rename(columns=TABLE).style.format({"all threads ÷ 1 thread": "{:.2f}"}),
                     hide_index=True, placeholder="–")
    columns = [c for c in TABLE if c in frame and frame[c].notna().any()]  # no column of nothing (the GPU's
    table = frame[columns].rename(columns=TABLE)                           # naive speed on a CPU-only sweep)
    st.dataframe(table.style.format({"images/s": "{:,.0f}", "ms per step": "{:.2f}", "ms to move a batch": "{:.3f}",
                                     "images/s, the tutorial's way": "{:,.0f}", "CPU threads": "{:.0f}"},
                                    na_rep="–"), hide_index=True, placeholder="–")
    st.caption("images/s: forward, backward and optimizer step with the data already on the device "
               "(on a GPU, each step replayed as one CUDA graph, as training does). ms to move a batch: from the "
               "host, normalized. The tutorial's way (GPU only): every kernel launched one by one, copying every "
               "batch and reading the loss every step.")
    st.download_button("Download CSV", frame.to_csv(index=False), "speed-sweep.csv", "text/csv")


def keep(kind: str, data: dict, key: str) -> None:
    """Keep a finished measurement for the Runs page and the next visit; where the runs folder cannot be written
    (read-only, full), the one line why is kept for the view to show under it, never a traceback."""
    try:
        keep_result(runs_root(), kind, data)
        st.session_state.pop(f"{key}_not_kept", None)
    except CannotKeep as exc:
        st.session_state[f"{key}_not_kept"] = f"{str(exc)[:1].upper()}{str(exc)[1:]}."


def measurements(key: str, kind: str, draw, hint: str) -> None:
    """A measuring job's progress and rows, drawn live while it runs and kept when it ends (the Runs page lists
    them); with no job in this session, the last one kept on disk. key: the session's `<key>_job_id`."""
    job = session_job(f"{key}_job_id")
    if job is None:
        last = newest_result(runs_root(), kind)
        if last and last.get("rows"):
            draw(last["rows"], last.get("saved"))
        else:
            st.caption(hint)
        return
    snap = job.snapshot()
    st.progress(snap.fraction_done, text=f"{len(snap.rows)} of {snap.start.get('total_steps', '?')} measured "
                                         f"({snap.status})" + (f": {snap.message}" if snap.status == "failed" else ""))
    if not snap.rows:
        return
    if not snap.active and st.session_state.get(f"{key}_saved") != job.id:
        st.session_state[f"{key}_saved"] = job.id  # tried once: a folder that cannot be written is said once
        keep(kind, {"rows": snap.rows}, key)
    if message := st.session_state.get(f"{key}_not_kept"):
        st.warning(message)
    draw(snap.rows)


def sweep_view() -> None:
    measurements("speed", "sweep", sweep_results,
                 "Choose what to compare and click **Run sweep**. Points appear as they are measured.")


live(sweep_view, "speed")


# -- scaling out ----------------------------------------------------------------------------------------
st.header("Scaling out: several processes or GPUs (DDP)")
GPUS = torch.cuda.device_count()
st.markdown(
    "**Data parallelism**, PyTorch's DistributedDataParallel under torchrun: each process trains its own copy of "
    "the network on its share of every batch, and after each backward pass the processes **average their "
    "gradients**, so every copy takes the same step. That averaging is communication, and it **competes with "
    "the computing**: the tutorial's tiny network computes so little per step that the talking takes a large "
    "share, so it scales poorly; a wider network gives each process more work per step to hide it behind. "
    "Each process takes the batch size below, so 2 processes take twice the images a step (the *global "
    "batch*).")
s1, s2, s3 = st.columns(3)
scale_device = s1.selectbox("Scaling device", ["cpu"] + (["cuda"] if GPUS else []), key="scaling_device",
                            **held("scaling_device", ["cpu"] + (["cuda"] if GPUS else [])),
                            format_func=lambda d: f"{GPUS} GPU(s), nccl" if d == "cuda" else f"CPU, {CORES} cores")
most = GPUS if scale_device == "cuda" else max(2, CORES)
ladder = tuple(sorted({*(2**i for i in range(most.bit_length()) if 2**i <= most), most}))  # 1, 2, 4, ... most
scale_widths = s2.multiselect("Scaling conv widths", WIDTHS, key="scaling_widths",
                              **held("scaling_widths", WIDTHS, [6, 64], many=True))
scale_batch = s3.select_slider("Batch size per process", BATCHES, key="scaling_batch",
                               **held("scaling_batch", default=64))
if st.button("Measure scaling", type="primary"):
    try:
        scale_spec = ScalingSpec(device=scale_device, widths=tuple(sorted(scale_widths)), batch_size=scale_batch,
                                 processes=ladder, threads=1, steps=100)
    except SpeedError as exc:
        st.error(f"The measurement cannot run: {exc}.")
    else:
        st.session_state.scaling_job_id = get_manager().start_scaling(scale_spec, data_dir()).id


SCALING_TABLE = {"width": "conv width", "processes": "processes", "threads": "CPU threads each",
                 "global_batch_size": "global batch", "images_per_second": "images/s", "efficiency": "efficiency"}


def scaling_results(rows: list[dict], saved: float | None = None) -> None:
    if saved:
        st.caption(f"The last measurement, {time.strftime('%d %b %H:%M', time.localtime(saved))}.")
    busy = [r for r in rows if r.get("busy")]
    if busy:
        share = min(r["cpu_share"] for r in busy)
        st.warning(f"The machine was busy while {len(busy)} of these bars were measured (a process got as little "
                   f"as {share:.0%} of the CPU its threads asked for): another program is using the cores, so "
                   "those bars are too slow and the efficiencies can be wrong. Close it and measure again.")
    st.plotly_chart(scaling_figure(rows), key="scaling_chart")
    frame = pd.DataFrame(rows)
    columns = [c for c in SCALING_TABLE if c in frame]
    st.dataframe(frame[columns].rename(columns=SCALING_TABLE).style.format(
        {"images/s": "{:,.0f}", "efficiency": "{:.0%}"}, na_rep="–"), hide_index=True, placeholder="–")
    st.caption("Each bar: 100 training steps of Shapes (python -m core.train --nproc N), timed without the start "
               "and the evaluation. Efficiency: images/s ÷ (processes × one process's images/s); 100% would be "
               "perfect scaling. On a CPU the last bar is one process using every core's threads, without DDP.")


def scaling_view() -> None:
    measurements("scaling", "scaling", scaling_results, f"Click **Measure scaling** to train on "
                 f"{', '.join(map(str, ladder))} processes in turn (each start takes a few seconds).")


live(scaling_view, "scaling")


# -- estimate ---------------------------------------------------------------------------------------
def train_config() -> TrainConfig:
    s = chosen_settings()  # the Train page's, or its defaults
    try:
        return TrainConfig(dataset="shapes", batch_size=s["batch_size"], conv_width=s["conv_width"],
                           conv2_width=s["conv2_width"])
    except ConfigError:
        return TrainConfig()


st.header("How long will one epoch take?")
config = train_config()
dataset = chosen_settings()["dataset"]  # the Train page's dataset
num_train = dataset_shape(dataset)["num_train"]
st.markdown(f"For the Train page's settings: batch {config.batch_size}, conv width {config.conv_width}, "
            f"{num_train:,} training images.")
if st.button("Estimate"):
    import torch

    from core.device import choose_threads

    threads = choose_threads(config, torch.device("cpu"))
    spec = SweepSpec(devices=tuple(devices), widths=(config.conv_width,), batch_sizes=(config.batch_size,),
                     threads=(threads,), steps=10, warmup=3,
                     model=ModelArgs(conv2_width=config.conv2_width))
    st.session_state.estimate_job_id = get_manager().start_sweep(spec).id
    st.session_state.estimate_images = num_train


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


live(estimate_view, "estimate")

# -- the race ------------------------------------------------------------------------------------------
st.header("Race: the same training on two devices")
racers = {"CPU, 1 thread": ("cpu", 1)}
if CORES > 1:
    racers[f"CPU, all {CORES} threads"] = ("cpu", CORES)
for d in devices[1:]:
    racers[DEVICE_LABELS[d]] = (d, 0)
names = list(racers)
r1, r2, r3 = st.columns(3)
a = r1.selectbox("Racer A", names, index=0)
b = r2.selectbox("Racer B", names, index=len(names) - 1)
race_batch = r3.select_slider("Race batch size", [4, 16, 64], value=64)
w1, w2 = st.columns([2, 1])
race_width = w1.slider("Race conv width", 6, page_range("conv_width")[1], 6)
race_optimizer = w2.selectbox("Race optimizer", list(OPTIMIZERS), format_func=OPTIMIZER_LABELS.get,
                              help="The update rule both racers train with: Adam and RMSProp do a little more work "
                                   "a step than SGD.")
# a learning rate that makes one epoch of Shapes learn at this batch size (measured: 70-80% test accuracy; Adam and
# RMSProp at their usual 0.001: 73% at batch 64, 86% at batch 4)
race_lr = min(0.05, max(0.005, 0.05 * race_batch / 64)) if race_optimizer == "sgd" else 0.001
rule = "momentum 0.9" if race_optimizer == "sgd" else OPTIMIZER_LABELS[race_optimizer]
st.caption(f"Each racer trains one epoch of Shapes at learning rate {race_lr:g}, {rule}, from the same "
           "starting weights: the same work, so the faster device's curve ends first.")
if st.button("Start the race"):
    base = TrainConfig(dataset="shapes", epochs=1, batch_size=race_batch, conv_width=race_width, lr=race_lr,
                       optimizer=race_optimizer, seed=0, log_interval=max(1, 200 // race_batch))
    jobs = {}
    for name in dict.fromkeys([a, b]):
        device, n = racers[name]
        jobs[name] = get_manager().start(base.replace(device=device, threads=n)).id
    st.session_state.race_jobs = jobs
if get_manager().max_running < 2:
    st.caption("This server trains one job at a time, so the racers run one after the other; each curve's clock "
               "starts with its own training.")


def race_view() -> None:
    jobs = {name: get_manager().get(i) for name, i in st.session_state.get("race_jobs", {}).items()}
    jobs = {name: job for name, job in jobs.items() if job is not None}
    if not jobs:
        last = newest_result(runs_root(), "race")
        if last and last.get("curves"):
            st.caption(f"The last race, run {time.strftime('%d %b %H:%M', time.localtime(last['saved']))}.")
            st.markdown(" · ".join(last.get("notes", [])))
            st.plotly_chart(race_figure(last["curves"]), key="race_chart")
        return
    curves, notes, busy = {}, [], []
    for name, job in jobs.items():
        snap = job.snapshot()
        curves[name] = [{"seconds": e["train_seconds"], "running_loss": e["running_loss"]} for e in snap.losses]
        seconds = snap.end.get("train_seconds")
        notes.append(f"**{name}**: {snap.status}" + (f" in {seconds:.1f} s of training" if seconds else ""))
        share = snap.end.get("cpu_share")
        if isinstance(share, float) and share < BUSY_SHARE:  # see the sweep: another program took the cores
            busy.append(f"{name} got {share:.0%} of the CPU its threads asked for")
    st.markdown(" · ".join(notes))
    if busy:
        st.warning(f"The machine was busy during this race ({'; '.join(busy)}): another program is using the "
                   "cores, so the race says more about that program than about the devices. Close it and race "
                   "again.")
    st.plotly_chart(race_figure(curves), key="race_chart")
    ids = tuple(job.id for job in jobs.values())
    if all(not job.snapshot().active for job in jobs.values()) and st.session_state.get("race_saved") != ids:
        st.session_state.race_saved = ids
        keep("race", {"curves": curves, "notes": notes}, "race")
    if message := st.session_state.get("race_not_kept"):
        st.warning(message)


live(race_view, "race")

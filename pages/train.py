"""Train: the tutorial's steps 3 and 4 (define a loss and optimizer, train the network), live.

Every setting lives in the page's URL (core/links.py), so a lesson is a link: `/train?dataset=shapes&lr=0.01`
sets those knobs, and `lock=lr,momentum` holds them fixed for the class.
"""

from urllib.parse import urlencode

import streamlit as st

import ui.live as live
from core.config import (
    DEVICE_LABELS,
    OPTIMIZERS,
    PRESETS,
    SCHEDULES,
    SETTINGS,
    ConfigError,
    TrainConfig,
    bounds,
    command_line,
    label,
    page_range,
    preset_values,
    widget_help,
)
from core.data import DATASET_LABELS, DatasetError, check_folder, default_dataset
from core.device import available_devices, resolve_device
from core.figures import accuracy_figure, loss_ranges, running_loss_figure
from core.jobs import get_manager
from core.links import KNOBS, LOCK, OTHER_PARAMS, PARAMS, PRESET_CHOICES, link_query, nearest_preset, parse_link
from core.loop import TUTORIAL_ACCURACY
from core.memory import check_fits, dataset_shape
from core.optimizers import LABELS as OPTIMIZER_LABELS
from ui.app import entered, require_app
from ui.common import (
    BATCH_SIZES,
    LEARNING_RATES,
    app_url,
    current_job,
    data_dir,
    job_active,
    plain,
    presenting,
    with_value,
)

require_app()  # first: a page run without dashboard.py is run again through it

DATASET_TEXT = DATASET_LABELS
MAX_MOMENTUM = page_range("momentum")[1]  # the Momentum control's top (core/config.py)
PRESET_TEXT = {"tutorial": "Tutorial", "fast": "Fast", "custom": "Custom"}
SCHEDULE_TEXT = {"constant": "Constant (the tutorial)", "one-cycle": "One-cycle (warm up, then anneal)"}
LABELS = {"folder": "Folder path", "preset": "Preset", **{n: label(n) for n in PARAMS if n in SETTINGS}}
# The live charts take the screen's height below the status and metrics: 270 px on a 1280x720 projector (where
# the page above them takes 450 px with a message such as "diverged"), up to 620 px on a 1920x1080 one
CHART_HEIGHT = "clamp(260px, calc(100vh - 450px), 620px)"
KEEP = "session"  # the Train widgets keep their values while other pages are shown (and the folder path while
# the folder box is hidden)


def key(name: str) -> str:
    return f"train_{name}"


# -- where it trains: a device, or several processes training data-parallel (DDP, core/distributed.py) ----------
DDP = ":ddp"  # the Device control's option for the processes of a device: "cpu:ddp", "cuda:ddp"
CPU_PROCESSES = 2  # on a CPU, data parallelism is taught on 2 processes of one thread each


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def placements() -> list[str]:
    """The Device control's options: each device, 2 CPU processes, and every GPU (where there are 2 or more)."""
    options = [*available_devices(), "cpu" + DDP]
    return options + (["cuda" + DDP] if gpu_count() > 1 else [])


def placement_text(option: str) -> str:
    if option == "cpu" + DDP:
        return f"{CPU_PROCESSES} processes (DDP, gloo)"
    if option == "cuda" + DDP:
        return f"{gpu_count()} GPUs (DDP)"
    return DEVICE_LABELS.get(option, option)


def placement(device: str, nproc: int) -> str:
    return device + DDP if nproc > 1 and device + DDP in placements() else device


def device_and_processes(option: str) -> tuple[str, int]:
    """The Device control's option -> (device, processes)."""
    if option == "cpu" + DDP:
        return "cpu", CPU_PROCESSES
    if option == "cuda" + DDP:
        return "cuda", gpu_count()
    return option, 1


def link_values() -> dict:
    """The settings as the controls hold them, in the link's terms (device and nproc apart)."""
    values = {name: st.session_state.get(key(name)) for name in PARAMS}
    values["device"], values["nproc"] = device_and_processes(values["device"])
    return values


def defaults() -> dict:
    """A new session's settings: the tutorial's, on CIFAR-10 where it can be had, else on Shapes."""
    devices = available_devices()
    dataset, _ = default_dataset(data_dir())
    return dict(dataset=dataset, folder="", preset="tutorial", **preset_values("tutorial"),
                device=devices[1] if len(devices) > 1 else "cpu", nproc=1, seed=0)


def matching_preset(values: dict) -> str:
    """The preset whose knobs these are, else custom."""
    name, changed = nearest_preset(values)
    return "custom" if changed else name


def apply_link() -> None:
    """Read the settings in the URL when they are not the ones this page wrote there itself: a lesson link
    opened, a URL edited by hand, or a new session. Values the page cannot take are dropped, each with a line."""
    query = st.query_params.to_dict()
    settings = {k: v for k, v in query.items() if k in PARAMS or k == LOCK}
    new_session = key("link") not in st.session_state
    if not new_session and (not entered() or settings == st.session_state[key("link")] or not settings):
        return  # a rerun, our own URL, or the page opened from the menu: the session's settings stay
    link = parse_link(query)
    for name in query:  # what is not a setting of this page leaves its URL (the line above says so)
        if name not in (*PARAMS, LOCK, *OTHER_PARAMS):
            del st.query_params[name]
    values = defaults()
    if not new_session:  # a link changes what it names and resets the rest, as on a fresh page
        values["dataset"] = st.session_state.get(key("dataset"), values["dataset"])
    chosen = link.values.get("preset", "tutorial")
    if chosen in PRESETS:
        values.update(preset_values(chosen))
    values.update(link.values)
    if values["momentum"] > MAX_MOMENTUM:  # valid for a run, beyond the slider: dropped like any other value
        link.problems.append(f"momentum={values['momentum']:g} was ignored: the Momentum control goes up to "
                             f"{MAX_MOMENTUM}.")
        values["momentum"] = preset_values("tutorial")["momentum"] if chosen not in PRESETS else \
            preset_values(chosen)["momentum"]
    if "device" in link.values and values["device"] not in ("auto", *available_devices()):
        link.problems.append(f"device={values['device']} was ignored: this machine has no "
                             f"{DEVICE_LABELS.get(values['device'], values['device'])}.")
        values["device"] = defaults()["device"]
    if values["device"] == "auto":
        values["device"] = defaults()["device"]
    values["preset"] = matching_preset(values)
    option = placement(values["device"], values["nproc"])
    if values["nproc"] != device_and_processes(option)[1]:
        link.problems.append(f"nproc={values['nproc']} was changed: here {values['device']} trains on "
                             f"{device_and_processes(option)[1]} process(es).")
    for name in PARAMS:
        st.session_state[key(name)] = values[name]
    st.session_state[key("device")] = option
    st.session_state[key("locked")] = link.locked
    st.session_state[key("problems")] = link.problems
    if new_session and "dataset" not in link.values:
        st.session_state[key("dataset_note")] = default_dataset(data_dir())[1]


def write_link(values: dict) -> None:
    """Put the settings (and the lesson's locks) in the URL; the job's token stays as it is."""
    query = link_query(values, st.session_state.get(key("locked"), set()))
    for name in [*PARAMS, LOCK]:
        if name in query and st.query_params.get(name) != query[name]:
            st.query_params[name] = query[name]
        elif name not in query and name in st.query_params:
            del st.query_params[name]
    st.session_state[key("link")] = query


def set_preset() -> None:
    """Choosing a preset moves the knobs to its values."""
    name = st.session_state[key("preset")]
    if name in PRESETS:
        values = preset_values(name)
        for knob in KNOBS:
            st.session_state[key(knob)] = values[knob]


def to_custom() -> None:
    """Moving a knob by hand makes the settings Custom (or the preset they now match)."""
    st.session_state[key("preset")] = matching_preset({k: st.session_state[key(k)] for k in KNOBS})


def use_shapes() -> None:
    st.session_state[key("dataset")] = "shapes"


def widget(name: str, knob: bool = True) -> dict:
    """What every Train control takes: its key, kept across pages, disabled when the lesson locks it, and
    (a knob) making the settings Custom when moved by hand."""
    locked = name in st.session_state.get(key("locked"), set())
    return dict(key=key(name), persist_state=KEEP, disabled=locked, **({"on_change": to_custom} if knob else {}))


def sgd_only(options: dict, sgd: bool) -> dict:
    """Momentum and Nesterov are SGD's: with Adam or RMSProp their controls are shown disabled."""
    return {**options, "disabled": options["disabled"] or not sgd}


def choose_optimizer() -> None:
    """Nesterov momentum is SGD's: another optimizer turns it off (and the settings become Custom)."""
    if st.session_state[key("optimizer")] != "sgd":
        st.session_state[key("nesterov")] = False
    to_custom()


def controls() -> TrainConfig | None:
    """The knobs; returns the config they describe, or None (with the reason shown) when it is not valid."""
    value = lambda name: st.session_state[key(name)]  # noqa: E731
    devices = available_devices()
    st.radio(LABELS["preset"], PRESET_CHOICES, horizontal=True, format_func=PRESET_TEXT.get,
             help="Tutorial: exactly the tutorial's settings. Fast: reaches the tutorial's accuracy in seconds.",
             **{**widget("preset", knob=False), "on_change": set_preset})
    left, right = st.columns(2)
    with left:
        dataset = st.selectbox(LABELS["dataset"], list(DATASET_TEXT), format_func=DATASET_TEXT.get,
                               **widget("dataset", knob=False))
        if dataset == "folder":
            st.text_input(LABELS["folder"], **widget("folder", knob=False),
                          help="A folder with train/ and test/, one sub-folder per class inside each.")
        st.slider(LABELS["epochs"], *page_range("epochs", value("epochs")), **widget("epochs"),
                  help=widget_help("epochs"))
        st.select_slider(LABELS["lr"], with_value(LEARNING_RATES, value("lr")), **widget("lr"),
                         help=widget_help("lr"))
        sgd = value("optimizer") == "sgd"
        st.slider(LABELS["momentum"], *page_range("momentum"), step=0.01, **sgd_only(widget("momentum"), sgd),
                  help=widget_help("momentum") + ("" if sgd else " Adam and RMSProp do not use it."))
    with right:
        st.select_slider(LABELS["batch_size"], with_value(BATCH_SIZES, value("batch_size")), **widget("batch_size"),
                         help=widget_help("batch_size"))
        nproc = device_and_processes(value("device"))[1]
        if nproc > 1:
            st.caption(f"Per process: {nproc} processes × {value('batch_size')} = **global batch "
                       f"{nproc * value('batch_size')}** images a step; the gradients are averaged over them.")
        st.slider(LABELS["conv_width"], *page_range("conv_width", value("conv_width")), **widget("conv_width"),
                  help=widget_help("conv_width"))
        st.selectbox(LABELS["device"], placements(), format_func=placement_text, **widget("device", knob=False),
                     help="Where it trains. N processes (DDP): data parallelism, as torchrun runs it: each "
                          "process trains a copy of the network on its share of every batch, and the gradients "
                          "are averaged every step.")
        if len(devices) == 1 and not presenting():
            st.caption("No GPU on this machine: the CPU, or 2 CPU processes to see data parallelism. See the "
                       "Speed page for what a GPU would change.")
        st.number_input(LABELS["seed"], *bounds("seed"), step=1, **widget("seed", knob=False),
                        help=widget_help("seed"))
    with st.expander("More settings"):
        st.selectbox(LABELS["optimizer"], list(OPTIMIZERS), format_func=OPTIMIZER_LABELS.get,
                     **{**widget("optimizer"), "on_change": choose_optimizer}, help=widget_help("optimizer"))
        st.slider(LABELS["conv2_width"], *page_range("conv2_width", value("conv2_width")), **widget("conv2_width"),
                  help=widget_help("conv2_width"))
        st.selectbox(LABELS["schedule"], list(SCHEDULES), format_func=SCHEDULE_TEXT.get, **widget("schedule"))
        st.checkbox(LABELS["nesterov"], **sgd_only(widget("nesterov"), sgd), help=widget_help("nesterov"))

    write_link(link_values())
    config, problem = settings_config()
    if problem:
        st.error(problem)
    return config


def settings_config() -> tuple[TrainConfig | None, str]:
    """The config the Train controls describe now, or None and why it cannot train (here). Built from the
    widgets' state, so the Train button's callback starts exactly what the controls show at the click."""
    values = link_values()
    name = values["dataset"] if values["dataset"] != "folder" else f"folder:{(values['folder'] or '').strip()}"
    try:
        config = TrainConfig(dataset=name, data_dir=data_dir(), epochs=values["epochs"], lr=float(values["lr"]),
                             momentum=float(values["momentum"]), nesterov=bool(values["nesterov"]),
                             optimizer=values["optimizer"],
                             schedule=values["schedule"], batch_size=values["batch_size"],
                             conv_width=values["conv_width"], conv2_width=values["conv2_width"],
                             device=values["device"], seed=int(values["seed"]), nproc=values["nproc"],
                             threads=1 if values["nproc"] > 1 and values["device"] == "cpu" else 0)
    except ConfigError as exc:
        return None, f"These settings cannot train: {exc}."
    try:  # before the first step: a run that would not fit in this machine's memory
        device = str(resolve_device(config.device))
        check_fits(config, device, config.nproc if device == "cpu" else 1, **dataset_shape(config.dataset))
    except ConfigError as exc:
        return None, f"These settings cannot train here: {exc}."
    return config, ""


def share_box(config: TrainConfig | None) -> None:
    """The link to these settings, with the controls a class should not change locked."""
    with st.expander("Share these settings", icon=":material/link:"):
        st.caption("Open this link on another computer (or give it to a class) to get exactly these settings. "
                   "Tick the controls the students should not change.")
        current = st.session_state.get(key("locked"), set())
        columns = st.columns(4)
        locks = {name for i, name in enumerate(PARAMS)
                 if (name != "folder" or st.session_state.get(key("dataset")) == "folder") and name != "nproc"
                 and columns[i % 4].checkbox(f"Lock {LABELS[name].lower()}", value=name in current,
                                             key=f"share_lock_{name}")}
        values = link_values()
        st.code(f"{app_url()}/train?{urlencode(link_query(values, locks), safe=',/:')}", language=None)


def start(config: TrainConfig) -> None:
    """Start a job for `config` (a button's callback: before the page is drawn, so the sidebar follows the new
    job at once, with no second run of the page); a folder that cannot be used is said instead."""
    st.session_state.pop("confirm_config", None)
    if config.dataset.startswith("folder:"):
        try:
            check_folder(config.dataset[len("folder:"):])
        except DatasetError as exc:
            st.session_state[key("start_error")] = str(exc)
            return
    st.session_state.job_id = get_manager().start(config).id


def on_train() -> None:
    """The Train button: the settings as the controls show them now; a second job is asked about first."""
    config, problem = settings_config()
    if config is None:
        st.session_state[key("start_error")] = problem
    elif job_active(current_job()):
        st.session_state.confirm_config = config
    else:
        start(config)


def stop_and_start() -> None:
    """The running job ends (keeping its history), and the settings the user asked for start."""
    pending = st.session_state.get("confirm_config")
    if pending is None:  # a click that came after another had already answered the question
        return
    if (job := current_job()) is not None:
        job.stop()
    start(pending)


def train_button(config: TrainConfig | None) -> None:
    st.button("Train", type="primary", disabled=config is None, width="stretch", on_click=on_train)


def confirm_second_job(job) -> None:
    pending = st.session_state.get("confirm_config")
    if pending is not None and job_active(job):
        st.warning("Your last training job is still running. Stop it and start the new one?")
        yes, no = st.columns(2)
        yes.button("Stop it and train the new settings", on_click=stop_and_start)
        no.button("Keep the running job", on_click=lambda: st.session_state.pop("confirm_config", None))


def notices(snap) -> None:
    if snap.status == "failed":
        st.error(f"Training failed: {snap.message}")
        if "shapes" in snap.message.lower() and snap.config.dataset != "shapes":
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


def controls_row(job, snap, config: TrainConfig | None) -> None:
    """Train, Pause/Resume and Stop in one row, and what went wrong if it did (no job yet: Train alone)."""
    train_col, pause_col, stop_col, _ = st.columns([1, 1, 1, 3])
    with train_col:
        train_button(config)
    if problem := st.session_state.pop(key("start_error"), None):
        st.error(problem)
    if snap is None:
        return
    # callbacks: they act before the page is drawn again, which then shows their effect
    if snap.status == "paused":
        pause_col.button("Resume", width="stretch", on_click=job.resume)
    else:
        pause_col.button("Pause", disabled=snap.status not in ("running", "starting"), width="stretch",
                         on_click=job.pause)
    stop_col.button("Stop", disabled=not snap.active, width="stretch", on_click=job.stop)
    confirm_second_job(job)
    with st.container():  # messages come and go inside it; the elements below keep their places
        notices(snap)


def accuracy_figure_of(snap):
    if snap is None or not snap.start:
        return accuracy_figure([], 10, None)
    cifar = "cifar" in snap.config.dataset.lower()
    return accuracy_figure(snap.epochs, len(snap.start["classes"]), TUTORIAL_ACCURACY if cifar else None)


def sized(fig):
    """A live chart as the page shows it: low enough to fit under the metrics on a projector, with larger
    text in presentation mode."""
    fig.update_layout(autosize=True, margin=dict(t=50, b=45))  # as high as the element (CHART_HEIGHT)
    if presenting():
        big = dict(tickfont=dict(size=20), title_font=dict(size=21))
        fig.update_layout(font=dict(size=20), title_font=dict(size=23), legend_font=dict(size=19))
        fig.update_xaxes(**big)
        fig.update_yaxes(**big)
    return fig


def charts(snap, feed: str | None = None, seq: int = 0) -> None:
    left, right = st.columns([3, 2])
    with left:
        losses, total = (snap.losses, live.total_images(snap)) if snap else ([], None)
        ranges = loss_ranges(losses, total) if total else None
        live.live_chart(sized(running_loss_figure(losses, total_images=total)), key="running_loss_chart",
                        height=CHART_HEIGHT, feed=feed, series="running_loss", seq=seq, ranges=ranges)
    with right:
        live.live_chart(sized(accuracy_figure_of(snap)), key="test_accuracy_chart", height=CHART_HEIGHT,
                        feed=feed, series="test_accuracy", seq=seq)


def live_view(job, config: TrainConfig | None, buttons) -> None:
    """What the job is doing, drawn once by the page and then kept up to date by the browser itself while the
    job is active (ui/live.py): training never waits for any of it. `buttons`: the container at the top of the
    page for Train, Pause and Stop (above the settings, so Train is in view on a projector)."""
    snap = job.snapshot() if job is not None else None
    with buttons:
        controls_row(job, snap, config)
    if job is None:
        st.info("Choose the settings and click **Train**. The running loss will appear here as it falls.")
        # The charts are drawn (empty) before Train is clicked: the browser loads its charting code
        # then (seconds on a slow machine), so the first loss point shows at once.
        charts(None)
        return
    state = live.STATES.of(job)
    feed = live.feed_url(job) if snap.active else None  # an ended job's elements have nothing to follow
    live.live_numbers(state, key="live_numbers", feed=feed)
    charts(snap, feed, state["seq"])


def summary_line() -> str:
    """The settings in a few words, for the folded settings while a job is shown."""
    get = lambda name: st.session_state.get(key(name))  # noqa: E731
    dataset = DATASET_TEXT.get(get("dataset"), "")
    preset = f"{PRESET_TEXT[get('preset')]} · " if get("preset") in PRESETS else ""
    epochs, nproc = get("epochs"), device_and_processes(get("device"))[1]
    batch = f"batch {get('batch_size')}" + (f" × {nproc} processes" if nproc > 1 else "")
    rule = f"momentum {get('momentum'):g}" if get("optimizer") == "sgd" else OPTIMIZER_LABELS[get("optimizer")]
    return (f"{dataset} · {preset}lr {get('lr'):g} · {rule} · {batch} · "
            f"width {get('conv_width')} · {epochs} epoch{'s' if epochs != 1 else ''}")


job = current_job()
apply_link()
# While a job is shown the room's height goes to its charts: a smaller title (none at all on a projector), so a
# run that ends with a message (it diverged, say) still has both charts in view at 1280x720
if job is None:
    st.title("Train the network")
elif not presenting():
    st.subheader("Train the network")
if job is None and not presenting():
    st.caption("The tutorial's steps 3 and 4: a classification cross-entropy loss, SGD with momentum, "
               "and a loop over the data. Set the knobs, click Train, and watch the loss fall.")
for problem in st.session_state.pop(key("problems"), []):
    st.warning(f"From the link: {plain(problem)}")
if note := st.session_state.pop(key("dataset_note"), ""):
    st.info(note)
locked = st.session_state.get(key("locked"), set())
buttons = st.container()
# While a job is shown the settings fold away, so its status, metrics and charts fit a projector's screen.
folded = f"Settings{' :material/lock:' if locked else ''}: {summary_line()}"
with st.expander(folded, expanded=False) if job is not None else st.container():
    if locked:
        st.caption(":material/lock: " + ", ".join(LABELS[n] for n in PARAMS if n in locked) + ": set by the lesson. "
                   + ("The other controls are yours to change." if set(PARAMS) - set(locked) else ""))
    config = controls()
    if config is not None and not presenting():
        st.caption("The same run from a terminal:")
        st.code(command_line(config), language="bash")
    share_box(config)
live_view(job, config, buttons)

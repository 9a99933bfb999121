"""The Train page's settings: its controls, their link, and the config they describe.

    read_link()                  # first: a lesson link (or a new session) sets the controls
    config = train_settings()    # draws the controls; the config they describe, or None with the reason shown

Every control's range, choices, label and help come from the settings schema (core/config.py); the values are
the link's (core/links.py), so what the page shows, its URL, the command line and the run's config are one thing.
"""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from core.classroom import Challenge, ClassError, clean_name
from core.config import (
    DEVICE_LABELS,
    OPTIMIZERS,
    PRESETS,
    SCHEDULES,
    SETTINGS,
    ConfigError,
    TrainConfig,
    page_ladder,
    page_range,
    preset_values,
    setting_label,
    widget_help,
)
from core.data import DATASET_LABELS, default_dataset
from core.datasets import own_names
from core.device import available_devices, resolve_device
from core.links import (
    CLASS_PARAMS,
    LINK_SETTINGS,
    LOCK,
    PRESET_CHOICES,
    PRESET_KNOBS,
    class_query,
    dataset_values,
    link_dataset,
    link_query,
    nearest_preset,
    parse_link,
)
from core.memory import check_fits, dataset_shape
from core.optimizers import LABELS as OPTIMIZER_LABELS
from ui.app import entered
from ui.common import data_dir, held, presenting, share_url
from ui.url_state import drop, from_link, strangers, to_link

PAGE = "train"
PRESET_TEXT = {"tutorial": "Tutorial", "fast": "Fast", "custom": "Custom"}
SCHEDULE_TEXT = {"constant": "Constant (the tutorial)", "one-cycle": "One-cycle (warm up, then anneal)"}
LABELS = {"folder": "Folder path", "own": "Own dataset", "preset": "Preset",
          **{n: setting_label(n) for n in LINK_SETTINGS if n in SETTINGS}}
CPU_PROCESSES = 2  # on a CPU, data parallelism is taught on 2 processes of one thread each


def key(name: str) -> str:
    return f"train_{name}"


def chosen() -> dict:
    """The settings as the controls hold them now, in the link's terms."""
    return {name: st.session_state.get(key(name)) for name in LINK_SETTINGS}


NAME = "student_name"  # the name box's key: kept for the session, and in the Train page's URL


def school() -> dict:
    """The class's side of the page: the student's name (as typed), and the lesson and challenge of the link."""
    return {"name": st.session_state.get(NAME, ""), "lesson": st.session_state.get(key("lesson")),
            "challenge": st.session_state.get(key("challenge"))}


def challenge() -> Challenge | None:
    return st.session_state.get(key("challenge"))


def student_name() -> tuple[str, str]:
    """The name as the board will show it, and "" or why it cannot be one."""
    try:
        return clean_name(st.session_state.get(NAME, "")), ""
    except ClassError as exc:
        return "", f"That name cannot be used: {exc}."


def chosen_settings() -> dict:
    """What the Train page was last set to, for the pages that start from it (the Network page's widths, the Speed
    page's dataset): the page's values, or the defaults where it was never opened in this session."""
    return {**defaults(), **st.session_state.get("train_chosen", {})}


# -- where it trains: a device, and how many processes train on it data-parallel (DDP, core/distributed.py) ---

def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def process_choices(device: str) -> list[int]:
    """The Processes control's options on a device: 1, or data parallelism on 2 CPU processes or every GPU."""
    if device == "cpu":
        return [1, CPU_PROCESSES]
    if device == "cuda" and gpu_count() > 1:
        return [1, gpu_count()]
    return [1]


def processes_text(device: str, n: int) -> str:
    """Short enough for half a column at 1280x720: "1", "2 (DDP, gloo)", "4 GPUs (DDP)"."""
    if n == 1:
        return "1"
    return f"{n} (DDP, gloo)" if device == "cpu" else f"{n} GPUs (DDP)"


def choose_device() -> None:
    """A device with fewer processes to offer takes the most it has."""
    choices = process_choices(st.session_state[key("device")])
    if st.session_state.get(key("nproc")) not in choices:
        st.session_state[key("nproc")] = choices[-1]


# -- the link -------------------------------------------------------------------------------------------------

def defaults() -> dict:
    """A new session's settings: the tutorial's, on CIFAR-10 where it can be had, else on Shapes."""
    devices = available_devices()
    dataset, _ = default_dataset(data_dir())
    return dict(dataset=dataset, folder="", own="", preset="tutorial", **preset_values("tutorial"), augment=False,
                train_images=0,
                device=devices[1] if len(devices) > 1 else "cpu", nproc=1, seed=0)


def matching_preset(values: dict) -> str:
    """The preset whose knobs these are, else custom."""
    name, changed = nearest_preset(values)
    return "custom" if changed else name


def read_link() -> None:
    """Set the controls from the URL when it is a link to read (ui/url_state.py): a lesson link opened, a URL
    edited by hand, or a new session. A link changes what it names and resets the rest, as on a fresh page; a
    value the page cannot take is dropped, with a line saying so."""
    query = from_link(PAGE, (*LINK_SETTINGS, LOCK, *CLASS_PARAMS))
    if query is None:
        if entered() and in_lesson() and not any(n in st.query_params for n in (*LINK_SETTINGS, LOCK)):
            leave_lesson()  # the Train page opened from the menu is not the lesson's
        return
    others = strangers((*LINK_SETTINGS, LOCK, *CLASS_PARAMS))
    link = parse_link({**query, **{name: st.query_params[name] for name in others}})
    drop(others)  # said in a line (parse_link), and out of the URL
    values = defaults()
    new_session = key("dataset") not in st.session_state
    if not new_session:
        values["dataset"] = st.session_state[key("dataset")]
    chosen_preset = link.values.get("preset", "tutorial")
    values.update(preset_values(chosen_preset if chosen_preset in PRESETS else "tutorial"))
    values.update(link.values)
    link.problems += fit_to_page(values, link.values)
    values["preset"] = matching_preset(values)
    lesson = bool(link.locked or link.school.get("lesson") or link.school.get("challenge"))
    if lesson and not in_lesson() and not new_session:  # what Leave the lesson gives back
        st.session_state[key("before_lesson")] = {name: st.session_state.get(key(name)) for name in LINK_SETTINGS}
    elif not lesson:
        st.session_state.pop(key("before_lesson"), None)
    for name in LINK_SETTINGS:
        st.session_state[key(name)] = values[name]
    st.session_state[key("locked")] = link.locked
    st.session_state[key("problems")] = link.problems
    st.session_state[key("lesson")] = link.school.get("lesson")  # a link without them is no lesson's
    st.session_state[key("challenge")] = link.school.get("challenge")
    if link.school.get("name"):  # a link without a name keeps the one typed
        st.session_state[NAME] = link.school["name"]
    if new_session and "dataset" not in link.values:
        st.session_state[key("dataset_note")] = default_dataset(data_dir())[1]


def in_lesson() -> bool:
    """Whether the settings are a lesson's: set by a link that locks controls, or names a lesson or challenge."""
    return bool(st.session_state.get(key("locked")) or st.session_state.get(key("lesson"))
                or st.session_state.get(key("challenge")))


def leave_lesson() -> None:
    """Unlock every control and give back the settings from before the lesson's link (a new session's: the
    defaults); the lesson's and challenge's marks go too."""
    own = st.session_state.pop(key("before_lesson"), None) or defaults()
    for name in LINK_SETTINGS:
        if own.get(name) is not None:
            st.session_state[key(name)] = own[name]
    for name in ("locked", "lesson", "challenge"):
        st.session_state[key(name)] = set() if name == "locked" else None


def fit_to_page(values: dict, given: dict) -> list[str]:
    """Values that are valid for a run but that this page's controls cannot show here: changed, a line each."""
    problems = []
    top = page_range("momentum")[1]
    if values["momentum"] > top:
        problems.append(f"momentum={values['momentum']:g} was ignored: the Momentum control goes up to {top}.")
        values["momentum"] = preset_values(values.get("preset") if values.get("preset") in PRESETS
                                           else "tutorial")["momentum"]
    if values["device"] not in ("auto", *available_devices()):
        problems.append(f"device={values['device']} was ignored: this machine has no "
                        f"{DEVICE_LABELS.get(values['device'], values['device'])}.")
        values["device"] = "auto"
    if values["device"] == "auto":
        values["device"] = defaults()["device"]
    choices = process_choices(values["device"])
    if values["nproc"] not in choices:
        values["nproc"] = choices[-1] if values["nproc"] > 1 else 1
        problems.append(f"nproc={given['nproc']} was changed: here {values['device']} trains on "
                        f"{values['nproc']} process(es).")
    return problems


def write_link(values: dict) -> None:
    """The settings (and the lesson's locks, challenge and the student's name) in the URL; the job's token stays as
    it is."""
    name, _ = student_name()
    query = {**link_query(values, st.session_state.get(key("locked"), set())),
             **class_query({**school(), "name": name})}
    if values["nproc"] == 1 and values["device"] == defaults()["device"]:
        # this machine's own device goes without a word: a lesson's link that names none is then the URL as it
        # stays, and the browser's Back is not spent on the page's rewriting it
        query.pop("device", None)
    to_link(PAGE, query, (*LINK_SETTINGS, LOCK, *CLASS_PARAMS))
    st.session_state["train_chosen"] = values


# -- the controls ---------------------------------------------------------------------------------------------

def set_preset() -> None:
    """Choosing a preset moves the knobs to its values."""
    name = st.session_state[key("preset")]
    if name in PRESETS:
        for knob, value in preset_values(name).items():
            st.session_state[key(knob)] = value


def to_custom() -> None:
    """Moving a knob by hand makes the settings Custom (or the preset they now match)."""
    st.session_state[key("preset")] = matching_preset({k: st.session_state[key(k)] for k in PRESET_KNOBS})


def choose_optimizer() -> None:
    """Nesterov momentum is SGD's: another optimizer turns it off (and the settings become Custom)."""
    if st.session_state[key("optimizer")] != "sgd":
        st.session_state[key("nesterov")] = False
    to_custom()


def widget(name: str, on_change=to_custom, off: bool = False, options: list | None = None) -> dict:
    """What every Train control takes: its key, kept across pages, and its value (`ui.common.held`), disabled when
    the lesson locks it (or `off`: momentum with Adam), and (a knob) making the settings Custom when moved by hand."""
    locked = name in st.session_state.get(key("locked"), set())
    return dict(key=key(name), persist_state="session", disabled=locked or off, on_change=on_change,
                label=LABELS[name], **held(key(name), options))


def span(name: str, value=None) -> dict:
    """A number control's range: the setting's page range, stretched to hold a link's larger value."""
    low, high = page_range(name, value)
    return dict(min_value=low, max_value=high)


def controls() -> None:
    """The knobs, each with its range and help from the schema."""
    value = lambda name: st.session_state[key(name)]
    st.radio(options=PRESET_CHOICES, horizontal=True, format_func=PRESET_TEXT.get,
             **widget("preset", set_preset, options=PRESET_CHOICES),
             help="Tutorial: exactly the tutorial's settings. Fast: reaches the tutorial's accuracy in seconds.")
    left, right = st.columns(2)
    sgd = value("optimizer") == "sgd"
    with left:
        dataset = st.selectbox(options=list(DATASET_LABELS), format_func=DATASET_LABELS.get,
                               **widget("dataset", None, options=list(DATASET_LABELS)))
        if dataset == "folder":
            st.text_input(**widget("folder", None),
                          help="A folder with train/ and test/, one sub-folder per class inside each.")
        elif dataset == "own":
            own_control()
        st.slider(**span("epochs", value("epochs")), **widget("epochs"), help=widget_help("epochs"))
        st.select_slider(options=page_ladder("lr", value("lr")), **widget("lr"), help=widget_help("lr"))
        st.slider(**span("momentum"), step=0.01, **widget("momentum", off=not sgd),
                  help=widget_help("momentum") + ("" if sgd else " Adam and RMSProp do not use it."))
    with right:
        st.select_slider(options=page_ladder("batch_size", value("batch_size")), **widget("batch_size"),
                         help=widget_help("batch_size"))
        st.slider(**span("conv_width", value("conv_width")), **widget("conv_width"),
                  help=widget_help("conv_width"))
        where_it_trains(value("device"), value("nproc"), value("batch_size"))
        st.number_input(**span("seed"), step=1, **widget("seed", None), help=widget_help("seed"))
    with st.expander("More settings"):
        st.selectbox(options=list(OPTIMIZERS), format_func=OPTIMIZER_LABELS.get,
                     **widget("optimizer", choose_optimizer, options=list(OPTIMIZERS)), help=widget_help("optimizer"))
        st.slider(**span("conv2_width", value("conv2_width")), **widget("conv2_width"),
                  help=widget_help("conv2_width"))
        st.selectbox(options=list(SCHEDULES), format_func=SCHEDULE_TEXT.get,
                     **widget("schedule", options=list(SCHEDULES)))
        st.checkbox(**widget("nesterov", off=not sgd), help=widget_help("nesterov"))
        st.number_input(**span("train_images"), step=100, **widget("train_images", None),
                        help=widget_help("train_images"))
        st.checkbox(**widget("augment", None), help=widget_help("augment"))


def own_control() -> None:
    """Which own dataset (core/datasets.py): the server's, by name; none yet says where to make one."""
    names = own_names(data_dir())
    if not names:  # settings_config says so
        st.page_link("pages/own.py", label="Own pictures", icon=":material/add_photo_alternate:")
        return
    if st.session_state.get(key("own")) not in names:
        st.session_state[key("own")] = names[0]
    st.selectbox(options=names, **widget("own", None, options=names),
                 help="Pictures you gave the app, sorted into classes: made on the Own pictures page.")


def where_it_trains(device: str, nproc: int, batch: int) -> None:
    """Device and Processes: two controls (processes above 1: data parallelism, as torchrun runs it)."""
    devices, choices = available_devices(), process_choices(device)
    device_col, processes_col = st.columns(2)
    device_col.selectbox(options=devices, format_func=lambda d: DEVICE_LABELS.get(d, d),
                         **widget("device", choose_device, options=devices), help="Where it trains.")
    processes_col.selectbox(options=choices, format_func=lambda n: processes_text(device, n),
                            **widget("nproc", None, off=len(choices) == 1, options=choices),
                            help="Data parallelism, as torchrun runs it: each process trains a copy of the network "
                                 "on its share of every batch, and the gradients are averaged every step.")
    if nproc > 1:
        st.caption(f"Per process: {nproc} processes × {batch} = **global batch {nproc * batch}** images a step; "
                   "the gradients are averaged over them.")
    if len(devices) == 1 and not presenting():
        st.caption("No GPU on this machine: the CPU, or 2 CPU processes to see data parallelism. See the Speed page "
                   "for what a GPU would change.")


def settings_config(values: dict) -> tuple[TrainConfig | None, str]:
    """The config these settings describe, or None and why it cannot train (here)."""
    fields = {name: values[name] for name in LINK_SETTINGS if name in SETTINGS}
    fields["dataset"] = link_dataset(values)
    if fields["dataset"] == "own:":  # no own dataset on this server yet (own_control links to where to make one)
        return None, "No own datasets on this server yet: make one from your pictures on the Own pictures page."
    cpu_processes = values["nproc"] > 1 and values["device"] == "cpu"
    try:
        config = TrainConfig(**fields, data_dir=data_dir(), threads=1 if cpu_processes else 0)
    except ConfigError as exc:
        return None, f"These settings cannot train: {exc}."
    try:  # before the first step: a run that would not fit in this machine's memory
        device = str(resolve_device(config.device))
        check_fits(config, device, config.nproc if device == "cpu" else 1, **dataset_shape(config.dataset))
    except ConfigError as exc:
        return None, f"These settings cannot train here: {exc}."
    return config, ""


def train_settings() -> TrainConfig | None:
    """Draw the controls; return the config they describe, or None (with the reason shown) when it is not valid."""
    controls()
    values = chosen()
    write_link(values)
    config, problem = settings_config(values)
    if problem:
        st.error(problem)
    return config


def locked_line() -> str:
    """Which controls the lesson holds, or "" when none."""
    locked = st.session_state.get(key("locked"), set())
    if not locked:
        return ""
    rest = "The other controls are yours to change." if set(LINK_SETTINGS) - set(locked) else ""
    names = ", ".join(LABELS[n] for n in LINK_SETTINGS if n in locked)
    return f":material/lock: {names}: set by the lesson. {rest}"


def share_box() -> None:
    """The link to these settings, with the controls a class should not change locked."""
    with st.expander("Share these settings", icon=":material/link:"):
        st.caption("Open this link on another computer (or give it to a class) to get exactly these settings. "
                   "Tick the controls the students should not change.")
        current = st.session_state.get(key("locked"), set())
        columns = st.columns(4)
        kind = st.session_state.get(key("dataset"))
        shown = [n for n in LINK_SETTINGS if n != "nproc" and (n not in ("folder", "own") or n == kind)]
        locks = {name for i, name in enumerate(shown)
                 if columns[i % 4].checkbox(f"Lock {LABELS[name].lower()}", value=name in current,
                                            key=f"share_lock_{name}")}
        query = {**link_query(chosen(), locks), **class_query(school(), name=False)}  # never the student's name
        base, why_not = share_url()
        st.code(f"{base}/train?{urlencode(query, safe=',/:')}", language=None)
        if why_not:
            st.caption(why_not)


def run_values(config: TrainConfig) -> dict:
    """A run's config in the controls' terms (the link's names)."""
    values = {name: getattr(config, name) for name in LINK_SETTINGS if name in SETTINGS}
    values.update({"folder": "", "own": "", **dataset_values(config.dataset)})
    values["preset"] = matching_preset(values)
    return values


def changed_knobs(run: dict) -> list[str]:
    """The controls that no longer show what the run shown trained with, in words ("lr 0.002")."""
    now = chosen()
    return [f"{LABELS[name].lower()} {now[name]:g}" if isinstance(now[name], float) else f"{LABELS[name].lower()} "
            f"{now[name]}" for name in (*PRESET_KNOBS, "dataset", "own", "augment", "train_images", "nproc", "seed")
            if now.get(name) != run.get(name)]


def summary_line(values: dict | None = None) -> str:
    """The settings in a few words (the controls', or a run's in run_values' terms), for the folded settings."""
    v = values or chosen()
    preset = f"{PRESET_TEXT[v['preset']]} · " if v["preset"] in PRESETS else ""
    batch = f"batch {v['batch_size']}" + (f" × {v['nproc']} processes" if v["nproc"] > 1 else "")
    rule = f"momentum {v['momentum']:g}" if v["optimizer"] == "sgd" else OPTIMIZER_LABELS[v["optimizer"]]
    subset = f" of {v['train_images']:,} images" if v.get("train_images") else ""
    subset += ", flipped and cropped" if v.get("augment") else ""
    data = f"{DATASET_LABELS['own']}: {v['own']}" if v["dataset"] == "own" else DATASET_LABELS.get(v["dataset"], "")
    return (f"{data} · {preset}lr {v['lr']:g} · {rule} · {batch} · "
            f"width {v['conv_width']} · {v['epochs']} epoch{'s' if v['epochs'] != 1 else ''}{subset}")

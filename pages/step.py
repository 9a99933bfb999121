"""Step: inside one training step, with the numbers filled in (forward, loss, backward, the update).

A lesson links here with the Train page's names: `/step?dataset=shapes&lr=0.01&momentum=0.9&lock=lr`, and
`run=<run folder>` for a trained run's checkpoint instead of a fresh network. The work is core/step.py's.
"""

import copy
import math
import time
from pathlib import Path

import streamlit as st
import torch

import ui.step_view as view
from core import runs as runs_mod
from core.config import (
    OPTIMIZERS,
    ConfigError,
    TrainConfig,
    bounds,
    page_ladder,
    page_range,
    setting_label,
    widget_help,
)
from core.data import DATASET_LABELS, default_dataset
from core.datasets import own_names
from core.links import LINK_SETTINGS, LOCK, link_dataset, link_query, parse_link
from core.loop import build_model
from core.optimizers import LABELS as OPTIMIZER_LABELS
from core.optimizers import Rule
from core.step import LOSSES, Stepper, number
from ui.app import require_app
from ui.common import data_dir, held, plain, runs_root
from ui.run_files import dataset_for, model_for
from ui.url_state import from_link, strangers, to_link

require_app()  # first: a page run without dashboard.py is run again through it

NAMES = ("dataset", "folder", "own", "optimizer", "lr", "momentum", "nesterov", "batch_size", "conv_width",
         "conv2_width", "seed")  # the Train link's names this page takes; and run=, loss=
OWN = (*NAMES, "run", "loss", LOCK)  # the page's parameters
span = lambda name: page_range(name, page="step")  # this page's ranges (core/config.py)
ladder = lambda name: page_ladder(name, st.session_state.get(key(name)), "step")
MAX_MOMENTUM = span("momentum")[1]
STAGES = ["Batch", "Forward", "Backward", "Update", "Effect", "History", "Loss functions"]
FRESH = "fresh"


def key(name: str) -> str:
    return f"step_{name}"


def defaults() -> dict:
    return dict(dataset=default_dataset(data_dir())[0], folder="", own="", optimizer="sgd", lr=0.01, momentum=0.9,
                nesterov=False, batch_size=4, conv_width=6, conv2_width=16, seed=0, loss="cross-entropy",
                network=FRESH)


def runs_with_checkpoints() -> list[str]:
    return [r.name for r in runs_mod.list_runs(runs_root())
            if r.error is None and r.status != "running" and (r.path / "checkpoint.pt").exists()]


def link_problems(query: dict, values: dict) -> list[str]:
    """What this page cannot take of a link's values (beyond what parse_link refuses): values off its controls."""
    problems = []
    for name in ("batch_size", "conv_width", "conv2_width"):  # narrower than training's (core/config.py)
        high = span(name)[1]
        if name in values and values[name] > high:
            problems.append(f"{name}={values.pop(name)} was ignored: this page takes up to {high}.")
    if values.get("momentum", 0) > MAX_MOMENTUM:
        problems.append(f"momentum={values.pop('momentum')} was ignored: this page takes momentum up to "
                        f"{MAX_MOMENTUM}.")
    if "loss" in query:
        if query["loss"] in LOSSES:
            values["loss"] = query["loss"]
        else:
            problems.append(f"loss={query['loss']} was ignored: choose one of {', '.join(LOSSES)}.")
    if "run" in query:
        if query["run"] in runs_with_checkpoints():
            values["network"] = query["run"]
        else:
            problems.append(f"run={query['run']} was ignored: there is no finished run of that name with a "
                            "checkpoint here; the fresh network is used.")
    return problems


def apply_link() -> None:
    """A link's settings, when the page is entered with them (a lesson, a URL typed or shared); else the session's.
    A Train link's other settings (epochs, preset, ...) are not this page's and are passed over; a name that is no
    setting at all gets a line."""
    query = from_link("step", OWN)
    if query is None:
        return
    link = parse_link({k: v for k, v in query.items() if k not in ("run", "loss")})
    base = defaults()  # one look at which dataset can be had
    values = {**base, **link.values}
    unknown = [f"{name} is not a setting of this page and was ignored."
               for name in strangers((*LINK_SETTINGS, *OWN, "stage"))]
    problems = link.problems + link_problems(query, values) + unknown
    values = {**base, **values}  # what the page could not take: its default
    if values["optimizer"] != "sgd":
        values["nesterov"] = False  # SGD's alone
    if values["dataset"] in ("folder", "own") and not values[values["dataset"]]:
        values["dataset"] = base["dataset"]
    for name, value in values.items():
        st.session_state[key(name)] = value
    st.session_state[key("explicit")] = {n for n in ("conv_width", "conv2_width", "dataset") if n in link.values}
    st.session_state[key("locked")] = link.locked
    st.session_state[key("problems")] = problems


def write_link(values: dict) -> None:
    """The page's settings in its URL, so the page is a link a teacher can share."""
    query = link_query(values, st.session_state.get(key("locked"), set()))
    query.pop("preset", None)
    if values["network"] != FRESH:
        query["run"] = values["network"]
    if values["loss"] != "cross-entropy":
        query["loss"] = values["loss"]
    to_link("step", query, OWN)


def widget(name: str, off: bool = False, options: list | None = None) -> dict:
    """A control's key and value; disabled when the lesson locks it, or `off` (e.g. momentum for Adam)."""
    return dict(key=key(name), disabled=off or name in st.session_state.get(key("locked"), set()),
                **held(key(name), options))


def off_sgd() -> None:
    if st.session_state[key("optimizer")] != "sgd":
        st.session_state[key("nesterov")] = False


def controls(run_names: list[str]) -> dict:
    """The settings: which network, the data, the update rule, the loss. Returns their values."""
    get = lambda name: st.session_state[key(name)]
    options = [FRESH, *run_names] if get("network") in [FRESH, *run_names] else [FRESH, *run_names, get("network")]
    a, b, c, d = st.columns(4)
    with a:
        st.selectbox("Network", options, format_func=lambda n: "Fresh: the seed's initial weights" if n == FRESH
                     else f"Trained: {n}", **widget("network", options=options),
                     help="A fresh network, as the Train page's first step has it, or a finished run's checkpoint.")
        trained = get("network") != FRESH
        st.selectbox(setting_label("dataset"), list(DATASET_LABELS), format_func=DATASET_LABELS.get,
                     **widget("dataset", off=trained, options=list(DATASET_LABELS)))
        if get("dataset") == "folder":
            st.text_input("Folder path", **widget("folder"), help="A folder with train/ and test/.")
        elif get("dataset") == "own":
            owns = own_names(data_dir())
            if owns:
                st.selectbox("Own dataset", owns, **widget("own", options=owns),
                             help="Made on the Own pictures page.")
            else:
                st.caption("No own datasets yet: make one on the Own pictures page.")
    with b:
        st.selectbox(setting_label("optimizer"), list(OPTIMIZERS), format_func=OPTIMIZER_LABELS.get,
                     on_change=off_sgd, **widget("optimizer", options=list(OPTIMIZERS)), help=widget_help("optimizer"))
        st.select_slider(setting_label("lr"), ladder("lr"), **widget("lr"), help=widget_help("lr"))
    with c:
        sgd = get("optimizer") == "sgd"
        st.slider(setting_label("momentum"), *span("momentum"), step=0.01, **widget("momentum", off=not sgd),
                  help=widget_help("momentum"))
        st.checkbox(setting_label("nesterov"), **widget("nesterov", off=not sgd), help=widget_help("nesterov"))
        st.select_slider(setting_label("batch_size"), ladder("batch_size"), **widget("batch_size"))
    with d:
        st.slider(setting_label("conv_width"), *span("conv_width"), **widget("conv_width", off=trained))
        st.slider(setting_label("conv2_width"), *span("conv2_width"), **widget("conv2_width", off=trained))
        st.number_input(setting_label("seed"), *bounds("seed"), step=1, **widget("seed"))
    st.radio("Loss function", list(LOSSES), format_func=LOSSES.get, horizontal=True, key=key("loss"),
             **held(key("loss"), list(LOSSES)),
             help="Cross-entropy, as the tutorial trains; or MSE on one-hot targets, as one telling's nn.MSELoss.")
    return {name: get(name) for name in (*NAMES, "loss", "network")}


def network_for(values: dict) -> tuple:
    """(model, dataset, config) for the settings: a run's checkpoint (on its dataset, with its widths) or a fresh
    network. A run that cannot be used is said in one line, and the fresh network is used."""
    config = TrainConfig(dataset=link_dataset(values),
                         data_dir=data_dir(), optimizer=values["optimizer"], lr=float(values["lr"]),
                         momentum=float(values["momentum"]), nesterov=bool(values["nesterov"]),
                         batch_size=values["batch_size"], conv_width=values["conv_width"],
                         conv2_width=values["conv2_width"], seed=int(values["seed"]))
    if values["network"] != FRESH:
        run = runs_mod.load_run(Path(runs_root()) / values["network"], with_events=False)
        model = model_for(run) if run.error is None else None  # a damaged checkpoint says why itself ...
        if run.error is None and model is None:
            st.caption("... and the fresh network is used instead.")
        explicit = st.session_state.get(key("explicit"), set())
        if run.error is None and model is not None:
            args = model.args
            clash = [f"{n}={values[n]}" for n, have in (("conv_width", args.conv_width),
                                                        ("conv2_width", args.conv2_width))
                     if n in explicit and values[n] != have]
            if clash:
                st.warning(f"From the link: run {plain(run.name)} has widths {args.conv_width}/{args.conv2_width}, "
                           f"not {plain(', '.join(clash))}: the fresh network is used.")
            else:
                # the server's own data folder: never a path a run folder names
                config = config.replace(dataset=run.config.dataset, conv_width=args.conv_width,
                                        conv2_width=args.conv2_width)
                dataset = dataset_for(config.dataset)
                if dataset is not None and (dataset.channels, dataset.image_size, dataset.num_classes) == (
                        args.in_channels, args.image_size, args.num_classes):
                    return copy.deepcopy(model).train(), dataset, config
                if dataset is not None:
                    st.warning(f"Run {plain(run.name)}'s network does not fit its dataset here: the fresh network "
                               "is used.")
        elif run.error:
            st.warning(f"Run {plain(run.name)} cannot be used ({plain(run.error)}): the fresh network is used.")
    dataset = dataset_for(config.dataset)
    if dataset is None:
        return None, None, config
    torch.manual_seed(config.seed)  # the seed's initial weights, as the training loop builds them
    return build_model(config, dataset), dataset, config


def summary_line() -> str:
    """The settings in a few words, for the folded settings."""
    get = lambda name: st.session_state.get(key(name))
    sgd = get("optimizer") == "sgd"
    return (f"{DATASET_LABELS.get(get('dataset'), get('dataset'))} · {OPTIMIZER_LABELS[get('optimizer')]} · lr "
            f"{get('lr'):g}" + (f" · momentum {get('momentum'):g}" if sgd else "")
            + (" · Nesterov" if sgd and get("nesterov") else "") + f" · batch {get('batch_size')} · "
            + (f"widths {get('conv_width')}/{get('conv2_width')}, fresh" if get("network") == FRESH
               else f"run {get('network')}") + f" · {LOSSES[get('loss')].split(' (')[0].lower()}")


def start_again() -> None:
    st.session_state.pop(key("stepper"), None)


def take(next_batch: bool = False) -> None:
    stepper = st.session_state.get(key("stepper"))
    if stepper is None:
        return
    if next_batch:
        view.compute(stepper.next_batch)
    started = time.perf_counter()
    view.compute(stepper.take, zero_grad=not st.session_state.get(key("skip_zero_grad"), False))
    st.session_state[key("seconds")] = time.perf_counter() - started
    record(stepper)


def record(stepper: Stepper) -> None:
    """A history row for the step just taken: the batch's loss, and the chosen weight's numbers."""
    r = stepper.last
    rows = st.session_state.setdefault(key("rows"), [])
    rows.append({"step": r.step, "batch": stepper.batch_number, "zero_grad": "yes" if r.left_over is None else "no",
                 "loss before": round(r.loss, 6), "loss after": round(r.loss_after, 6)})
    weight_row(stepper)


FIRST_WEIGHT = ("conv1.weight", (0, 0, 2, 2))  # the centre of conv1's first filter, on the red channel


def chosen_weight(stepper: Stepper) -> tuple[str, tuple[int, ...]]:
    """The weight the Update and History tabs follow: the one chosen, while this network has it; else conv1's."""
    name, index = st.session_state.get(key("chosen")) or FIRST_WEIGHT
    params = stepper.named_parameters()
    if name not in params or len(index) != params[name].dim() or any(
            not 0 <= i < n for i, n in zip(index, params[name].shape)):
        return FIRST_WEIGHT
    return name, index


def weight_row(stepper: Stepper) -> None:
    """The chosen weight's numbers in the last step's history row (a weight just chosen starts there)."""
    chosen = chosen_weight(stepper)
    rows = st.session_state.get(key("rows"), [])
    if rows and stepper.last is not None:
        n = stepper.last.weight(*chosen)
        where = f"{chosen[0]}[{','.join(map(str, chosen[1]))}]"
        rows[-1].update({"weight": where, **{k: number(n[k]) for k in ("w", "g", "buf", "m", "v", "w_new")
                                             if k in n}})


def weight_picker(stepper: Stepper) -> tuple[str, tuple[int, ...]]:
    """Which weight the Update and History stages follow: a layer's tensor and a position in it."""
    params = stepper.named_parameters()
    names = list(params)
    cols = st.columns(5)
    name = cols[0].selectbox("Follow the weight of", names, key=key("weight_of"), **held(key("weight_of"), names),
                             help="Which weight the Update and History tabs show: a layer's tensor, and a position.")
    shape = params[name].shape
    titles = {4: ("Output channel", "Input channel", "Row", "Column"), 2: ("Output", "Input"), 1: ("Output",)}
    defaults_at = {4: (0, 0, 2, 2), 2: (0, 0), 1: (0,)}
    for i, size in enumerate(shape):  # a position kept from a wider network than this one: its last place
        if st.session_state.get(key(f"{name}_{i}"), 0) > size - 1:
            st.session_state[key(f"{name}_{i}")] = size - 1
    index = tuple(int(cols[i + 1].number_input(title, 0, size - 1, key=key(f"{name}_{i}"),
                                               **held(key(f"{name}_{i}"),
                                                      default=min(defaults_at[len(shape)][i], size - 1))))
                  for i, (title, size) in enumerate(zip(titles[len(shape)], shape)))
    return name, index


# -- the page -----------------------------------------------------------------------------------

st.subheader("Inside one step: forward, loss, backward, update",
             help="What one step of the training loop does to the network, with PyTorch's own numbers: "
                  "`optimizer.zero_grad()`, `loss = criterion(net(inputs), labels)`, `loss.backward()`, "
                  "`optimizer.step()`. Each tab is one stage.")
apply_link()
for problem in st.session_state.pop(key("problems"), []):
    st.warning(f"From the link: {plain(problem)}")
run_names = runs_with_checkpoints()
with st.expander(f"Settings: {summary_line()}", icon=":material/settings:"):
    values = controls(run_names)
write_link(values)

setting = tuple(sorted((k, str(v)) for k, v in values.items()))
if st.session_state.get(key("setting")) != setting:  # new settings: a new network, and its first step
    st.session_state.pop(key("stepper"), None)
if key("stepper") not in st.session_state:
    try:
        model, dataset, config = network_for(values)
    except ConfigError as exc:
        st.error(f"These settings cannot take a step: {plain(str(exc))}.")
        st.stop()
    if model is None:
        st.stop()
    stepper = view.compute(Stepper, model, dataset, Rule.of(config), config.batch_size, config.seed,
                           values["loss"])
    st.session_state[key("stepper")] = stepper
    st.session_state[key("setting")] = setting
    st.session_state[key("rows")] = []
    st.session_state[key("classes")] = list(dataset.classes)
    take()
stepper: Stepper = st.session_state[key("stepper")]
classes = st.session_state[key("classes")]
result = stepper.last

go, again, new, toggle = st.columns([1.2, 1, 1, 2])
go.button("Take the step", type="primary", on_click=take, width="stretch",
          help="Another step on this batch: the momentum buffer (or Adam's m and v) carries over.")
again.button("Next batch", on_click=take, args=(True,), width="stretch",
             help="The next batch of the epoch's shuffle, and a step on it.")
new.button("Start again", on_click=start_again, width="stretch", help="The network as it was, and step 1.")
toggle.toggle("Skip zero_grad", key=key("skip_zero_grad"), **held(key("skip_zero_grad"), default=False),
              help="The next backward() adds its gradient to the one already in .grad, as it does when the loop "
                   "forgets optimizer.zero_grad().")
st.markdown(f"**Step {result.step}** on batch {stepper.batch_number}: batch loss {result.loss:.4f} → "
            f"{result.loss_after:.4f}" + (f" · computed in {st.session_state[key('seconds')]:.2f} s"
                                          if key("seconds") in st.session_state else ""))
if not result.diverged and result.loss_after > 10 * math.log(len(classes)):  # as the training loop judges a loss
    st.warning(f"The loss jumped from {result.loss:.4g} to {result.loss_after:.4g}: with learning rate "
               f"{result.rule.lr:g} this step overshoots. A few more such steps and it becomes infinite.")
if result.diverged:
    st.error(f"This step diverged: with learning rate {result.rule.lr:g} the weights or the loss became "
             f"infinite or NaN (loss after the step: {result.loss_after}). Lower the learning rate, then "
             "Start again.", icon=":material/trending_up:")
view.difference_line(result)

tabs = st.tabs(STAGES, key="stage", on_change="rerun", bind="query-params")
image = 0
with tabs[0]:
    if tabs[0].open:
        view.batch(stepper, classes)
        if values["network"] == FRESH and result.step == 1 and stepper.batch_number == 1:
            st.caption("Step 1 of a fresh network is exactly the first step the Train page takes with these "
                       "settings: the same initial weights (the seed's) and the same first batch.")
for tab, stage in zip(tabs[1:], STAGES[1:]):
    with tab:
        if not tab.open:
            continue
        if stage in ("Forward", "Loss functions"):
            count = len(result.labels)
            image = st.columns(3)[0].selectbox("Image of the batch", range(count), key=key("image"),
                                               **held(key("image"), list(range(count))),
                                               format_func=lambda i: f"#{i + 1} {classes[int(result.labels[i])]}")
            (view.forward if stage == "Forward" else view.losses)(result, classes, image)
        elif stage == "Backward":
            view.backward(result)
        elif stage in ("Update", "History"):
            shown, picker = st.container(), st.container()  # the rule first, where a projector shows it
            with picker:
                chosen = weight_picker(stepper)
            if st.session_state.get(key("chosen")) != chosen:
                st.session_state[key("chosen")] = chosen
                weight_row(stepper)
            with shown:
                if stage == "Update":
                    view.update(result, *chosen)
                else:
                    view.history(st.session_state.get(key("rows"), []))
        elif stage == "Effect":
            view.effect(result)

"""The Step page's stages, drawn from a StepResult (core/step.py): the batch, forward, backward, the update with
its numbers, the effect, the history and the two loss functions. Drawing only: every number comes from core."""

from __future__ import annotations

import html
import math
from concurrent.futures import Future, ThreadPoolExecutor

import pandas as pd
import streamlit as st
import torch

from core.figures import (
    image_grid,
    layer_norms_figure,
    score_gradients_figure,
    scores_figure,
    signed_images,
    step_curve_figure,
)
from core.optimizers import LABELS as OPTIMIZER_LABELS
from core.step import (
    LOSSES,
    Stepper,
    StepResult,
    batch_loss_formula,
    confident_wrong,
    curve_verdict,
    image_loss_formula,
    number,
    score_gradient,
    update_lines,
    warm_up,
)

# Streamlit runs each page run in a new thread, and PyTorch's CPU thread pool and kernel caches warm up per calling
# thread: a step run in a fresh thread took ~0.2 s longer (width 64, batch 64; docs/benchmarks.md). The Step page's
# PyTorch work runs in this one long-lived thread instead, warmed as the server starts; steps of several sessions
# take turns (a step of the tutorial's network takes a few hundredths of a second).
_TORCH = ThreadPoolExecutor(max_workers=1, thread_name_prefix="step-page")


def compute(function, *args, **kwargs):
    """function(*args, **kwargs), run in the Step page's PyTorch thread; its result (or its exception)."""
    return _TORCH.submit(function, *args, **kwargs).result()


def warm_up_in_background() -> Future:
    """The server's start: the first step's one-time costs, paid before a student's first click."""
    return _TORCH.submit(warm_up)


MAX_SHOWN = 16  # images of the batch drawn
FILTERS_SHOWN = 8
TOLERANCE = 1e-6  # optimizer.step() and the rule written out agree to this, or the page warns


def difference_line(result: StepResult) -> None:
    """The check of the hand-written rule against torch.optim's, over every parameter, never hidden."""
    diff, n = result.torch_difference, result.parameters
    text = (f"optimizer.step() gives the same weights: largest difference {diff:.3g} over all {n:,} parameters"
            + (" (float32 rounding)" if diff else ""))
    if diff <= TOLERANCE:
        st.markdown(f":green[:material/check_circle: {text}]", width="stretch")
    elif result.diverged:
        st.warning(f"optimizer.step() and the rule written out: largest difference {diff:.3g} over all {n:,} "
                   "parameters. The weights blew up (inf or NaN), so the two can no longer agree.",
                   icon=":material/warning:")
    else:
        st.warning(f"optimizer.step() gives other weights: largest difference {diff:.3g} over all {n:,} "
                   f"parameters, above {TOLERANCE:g}.", icon=":material/warning:")


def batch(stepper: Stepper, classes: list[str]) -> None:
    result = stepper.last
    shown = min(len(result.labels), MAX_SHOWN)
    st.markdown(f"**Batch {stepper.batch_number}** of the epoch's shuffle (seed's order): {len(result.labels)} "
                f"training images{f', the first {shown} shown' if shown < len(result.labels) else ''}, with the "
                "label each should get.")
    captions = [f"#{i + 1} {classes[int(y)]}" for i, y in enumerate(result.labels[:shown])]
    st.image(image_grid(result.images[:shown], captions, columns=8, scale=4, caption_lines=1))
    st.caption("The tutorial's loop gets these from its DataLoader (`for i, data in enumerate(trainloader)`); here "
               "they are normalized to -1..1 as there, then passed through the network in one go.")


def forward(result: StepResult, classes: list[str], image: int) -> None:
    label = int(result.labels[image])
    scores = result.scores[image]
    probs = torch.softmax(scores, 0)
    left, right = st.columns([1, 4])
    left.image(image_grid(result.images[image:image + 1], [f"truth: {classes[label]}"], scale=5, caption_lines=1))
    guess = int(probs.argmax())
    left.markdown(f"The network's guess: **{classes[guess]}** ({float(probs[guess]):.1%})")
    right.plotly_chart(scores_figure(classes, scores.tolist(), probs.tolist(), label), key="step_scores")
    formula = image_loss_formula(scores, label, classes, result.loss_name)
    st.html(f'<div class="step-formula">{html.escape(formula)}<br>'
            f'{html.escape(batch_loss_formula(result.losses))}</div>')
    if result.loss_name == "cross-entropy":
        st.caption("Softmax turns the scores into probabilities that add up to 1: p = e^score / Σ e^scores. The "
                   "loss is small when the true class gets a high probability; a guess spread evenly over 10 "
                   "classes has p = 0.1 and a loss of ln 10 = 2.30.")
    else:
        st.caption("MSE compares the raw scores with the one-hot target (1 for the true class, 0 for the others), "
                   "as one telling's nn.MSELoss does.")


def backward(result: StepResult) -> None:
    st.markdown("`loss.backward()` gives every weight its gradient **g**: how much the batch's loss would rise "
                "if that weight rose a little. The update then moves each weight against its gradient.")
    left, right = st.columns([2, 3])
    left.plotly_chart(layer_norms_figure(result.layer_norms()), key="step_norms")
    with right:
        weights, w_top = signed_images(result.before["conv1.weight"])
        grads, g_top = signed_images(result.grads["conv1.weight"])
        n = min(len(weights), FILTERS_SHOWN)  # a row of filters above a row of their gradients
        st.image(image_grid(torch.cat([weights[:n], grads[:n]]), [f"w #{i}" for i in range(n)] +
                            [f"g #{i}" for i in range(n)], columns=n, scale=10, caption_lines=1),
                 caption=f"Top: conv1's filters w{'' if n == len(weights) else f' (the first {n} of {len(weights)})'}"
                         f", on one colour scale (grey 0, ±{w_top:.3g} brightest and darkest). Below: their gradients"
                         f" g, on one scale of their own (±{g_top:.3g}). The update moves each filter against its g.")


def update(result: StepResult, name: str, index: tuple[int, ...]) -> None:
    n = result.weight(name, index)
    rule = result.rule
    where = f"{name}[{', '.join(map(str, index))}]"
    settings = (f"lr = {number(rule.lr)}" + (f", μ = {number(rule.momentum)}" if rule.optimizer == "sgd" else "")
                + (", Nesterov" if rule.nesterov else ""))
    st.markdown(f"**{OPTIMIZER_LABELS[rule.optimizer]}**, {settings}, step t = {result.step}, for the weight "
                f"`{where}`:")
    values = [("w", "w"), ("g", "g")]
    if "g_left" in n:
        values = [("w", "w"), ("g_left", "g left over"), ("g_new", "g of this backward"), ("g", "g (their sum)")]
    values += [(k, {"buf_prev": "buf before", "m_prev": "m before", "v_prev": "v before"}.get(k, k))
               for k in ("buf_prev", "buf", "m_prev", "m", "v_prev", "v") if k in n]
    values.append(("w_new", "w_new"))
    left, right = st.columns([3, 7])
    left.html(f'<div class="step-values" data-step="{result.step}">' + "<br>".join(
        f'{html.escape(text)} = <span class="value" data-name="{key}">{number(n[key])}</span>'
        for key, text in values) + "</div>")
    lines = update_lines(n, rule)
    right.html("".join(f'<div class="step-rule" data-line="{line.name}"><div class="symbols">{html.escape(line.rule)}'
                    f'</div><div class="numbers">= {html.escape(line.numbers)}</div><div class="numbers">= '
                    f'<span class="result">{number(line.value)}</span></div></div>' for line in lines))
    change = n["w_new"] - n["w"]
    if math.isfinite(change):
        way = "up" if change > 0 else "down" if change < 0 else "nowhere"
        st.markdown(f"The weight moves **{way}** by {number(abs(change))}: against its gradient"
                    f"{' (g is ' + ('negative' if n['g'] < 0 else 'positive') + ')' if n['g'] else ''}.")
    if "g_left" in n:
        twice = {True: f" Two backward passes on this batch at these weights, with no zero_grad between, give "
                       f"exactly 2·g: checked now, over all {result.parameters:,} parameters.",
                 False: " Two backward passes on this batch at these weights did not give exactly 2·g here (float "
                        "rounding in the gradient's sums)."}.get(result.doubled, "")
        st.info("zero_grad was skipped: backward() **added** this batch's gradient to the one the last step left in "
                "`.grad`. The update used their sum, a gradient the network never had. That is why the training "
                "loop calls `optimizer.zero_grad()` before every backward." + twice)


def effect(result: StepResult) -> None:
    before, after = result.loss, result.loss_after
    a, b, c = st.columns(3)
    a.metric("Batch loss before the step", f"{before:.4f}")
    b.metric("After the step", f"{after:.4f}" if math.isfinite(after) else str(after),
             delta=f"{after - before:+.4f}" if math.isfinite(after) else None, delta_color="inverse")
    c.metric("Learning rate", number(result.rule.lr))
    st.plotly_chart(step_curve_figure(result.etas, result.curve, result.rule.lr, before), key="step_curve")
    st.markdown(curve_verdict(result.etas, result.curve, result.rule.lr, before))
    st.caption("d is the direction this step took: w_new = w − lr·d. The chart moves every weight along it by η "
               "and measures this batch's loss there, from lr/100 to 100·lr.")


def history(rows: list[dict]) -> None:
    if not rows:
        st.info("Take a step to start the history.")
        return
    frame = pd.DataFrame(rows).set_index("step").fillna("")
    st.dataframe(frame, width="stretch")
    st.caption("One row per step. With momentum, buf builds up step by step: each step keeps μ of the last one. "
               "The weight's columns start at the step it was chosen.")


def losses(result: StepResult, classes: list[str], image: int) -> None:
    label = int(result.labels[image])
    scores = result.scores[image]
    grads = {name: score_gradient(scores, label, name).tolist() for name in LOSSES}
    worst = confident_wrong(result.scores, result.labels)
    probs = torch.softmax(scores, 0)
    guess = int(probs.argmax())
    if guess != label:
        st.markdown(f"Image #{image + 1} is a **{classes[label]}**; the network says **{classes[guess]}** "
                    f"({float(probs[guess]):.0%} sure), a wrong guess.")
    else:
        st.markdown(f"Image #{image + 1} is a **{classes[label]}** and the network gets it right "
                    f"({float(probs[guess]):.0%} sure)." + (f" The most confident wrong guess of this batch is "
                                                              f"image #{worst + 1}: choose it above." if worst is
                                                              not None else ""))
    st.plotly_chart(score_gradients_figure(classes, grads, label), key="step_loss_gradients")
    ce, mse = -grads["cross-entropy"][label], -grads["mse"][label]
    ratio = f"{ce / mse:.1f} times" if mse > 0 else "more"
    st.markdown(f"On the true class's score, cross-entropy pushes up with **{ce:.3f}** and MSE with **{mse:.3f}**: "
                + (f"cross-entropy pushes **{ratio}** as hard." if ce > mse else "MSE pushes harder here."))
    st.caption("Cross-entropy's gradient on the scores is p − target: on the true class p − 1, close to −1 whenever "
               "the network gives the truth a low probability. MSE's is 2·(score − target)/10: it follows each raw "
               "score's distance from its target (1 or 0), not how sure the network is of a wrong class, so a "
               "confident wrong guess can get a weak push. This is why classifiers train with cross-entropy. (In "
               "the batch's loss each image's push is divided by the batch size.)")

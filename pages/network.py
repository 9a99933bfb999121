"""Network: the tutorial's step 2, define a convolutional neural network, layer by layer."""

import pandas as pd
import streamlit as st

from core.config import page_range
from core.data import Normalizer
from core.figures import feature_map_images, filter_images, image_grid
from core.model import ModelArgs, layer_table
from ui.app import require_app
from ui.common import held
from ui.run_downloads import links
from ui.run_files import dataset_for, follow_running, model_for, pick_run
from ui.train_form import chosen_settings
from ui.url_state import controls_from_link, to_link

require_app()  # first: a page run without dashboard.py is run again through it

INPUTS = {"3x32x32 (CIFAR-10, Shapes)": (3, 32), "1x28x28 (MNIST, Fashion-MNIST)": (1, 28)}

st.title("The network, layer by layer")
st.caption("The tutorial's step 2. Each row applies one layer; the output size of a convolution or pooling "
           "follows ((W - F + 2P) / S) + 1, with W the input size, F the filter size, P the padding, S the stride.")

WIDTHS = page_range("conv_width")  # the sliders' range (core/config.py)


def parse_width(text: str) -> int:
    value = int(text)
    if not WIDTHS[0] <= value <= WIDTHS[1]:
        raise ValueError(f"a width is a whole number from {WIDTHS[0]} to {WIDTHS[1]}")
    return value


LINKED = {"conv_width": ("network_conv_width", parse_width), "conv2_width": ("network_conv2_width", parse_width)}
controls_from_link("network", LINKED)  # /network?conv_width=12 shows that network
st.session_state.setdefault("network_conv_width", chosen_settings()["conv_width"])  # else the Train page's widths
st.session_state.setdefault("network_conv2_width", chosen_settings()["conv2_width"])
c1, c2, c3 = st.columns(3)
width = c1.slider("Conv width", *WIDTHS, key="network_conv_width", persist_state="session",
                  **held("network_conv_width"), help="Output channels of conv1.")
width2 = c2.slider("Conv2 width", *page_range("conv2_width"), key="network_conv2_width", persist_state="session",
                   **held("network_conv2_width"),
                   help="Output channels of conv2.")
channels, size = INPUTS[c3.selectbox("Input", list(INPUTS), key="network_input", persist_state="session",
                                     **held("network_input", list(INPUTS)))]
to_link("network", {"conv_width": str(width), "conv2_width": str(width2)}, LINKED)  # the page is a link to these
args = ModelArgs(in_channels=channels, image_size=size, num_classes=10, conv_width=width, conv2_width=width2)

rows = layer_table(args)
table = pd.DataFrame([{
    "Layer": r["layer"],
    "Operation": r["operation"],
    "Output shape": "x".join(map(str, r["shape"])),
    "Size formula": r["formula"],
    "Parameters": f"{r['parameters']:,}",
    "Multiply-adds": f"{r['mult_adds']:,}",
} for r in rows]).set_index("Layer")
st.table(table)
total_params = sum(r["parameters"] for r in rows)
total_macs = sum(r["mult_adds"] for r in rows)
st.markdown(f"**Total: {total_params:,} parameters** and **{total_macs:,} multiply-adds** per image "
            f"(the tutorial's network has 62,006 parameters).")
st.caption("A convolution's parameters: out × (in × 5 × 5 + 1 bias). Pooling and flattening have none. "
           "Most parameters sit in fc1; most arithmetic in the convolutions.")

st.header("What the filters learned")
st.caption("The table above is the network for the widths you choose on this page: a plan, nothing is trained. "
           "Below is a network that was trained, with the widths of its own run.")
run = pick_run("network_run", "Trained run", history=False)
if run is None:
    st.info("Train a network first to see its learned filters and feature maps.")
    st.stop()
follow_running(run)
model = model_for(run)
data = dataset_for(run.config.dataset)  # the server's own data folder, never one a run names
if model is None or data is None:
    st.stop()
st.html(links(run.name, ["onnx"]))  # for Netron: every layer and its output shape, as the table above
st.markdown(f"This run (conv width {model.conv1.out_channels}, conv2 width {model.conv2.out_channels}) has "
            f"**{model.conv1.out_channels} conv1 filters** of 5x5 pixels "
            f"× {model.conv1.in_channels} channel(s), shown enlarged and stretched to full contrast.")
st.image(image_grid(filter_images(model.conv1.weight), [f"#{i}" for i in range(model.conv1.out_channels)],
                    columns=16, scale=12, caption_lines=1))

st.subheader("Feature maps")
index = st.number_input("Test image #", 0, len(data.test_labels) - 1, 0, step=1,
                        help="Which test image to pass through the network.")
image = data.test_images[index:index + 1]
maps = model.feature_maps(Normalizer(data.mean, data.std)(image))
left, right = st.columns([1, 4])
left.image(image_grid(image, [data.classes[int(data.test_labels[index])]], scale=6, caption_lines=1),
           caption="input")
with right:
    conv1 = maps["conv1"][0]
    st.image(image_grid(feature_map_images(conv1), [f"#{i}" for i in range(len(conv1))], columns=12,
                        scale=3, caption_lines=1),
             caption=f"conv1 + ReLU: {conv1.shape[0]} maps of {conv1.shape[1]}x{conv1.shape[2]} (bright = strong)")
    conv2 = maps["conv2"][0]
    st.image(image_grid(feature_map_images(conv2), [f"#{i}" for i in range(len(conv2))], columns=16,
                        scale=5, caption_lines=1),
             caption=f"conv2 + ReLU: {conv2.shape[0]} maps of {conv2.shape[1]}x{conv2.shape[2]}")

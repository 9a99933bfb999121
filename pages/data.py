"""Data: the tutorial's step 1, load and normalize the training and test images."""

import streamlit as st
import torch

from core.data import DATASET_LABELS, DATASET_NAMES, Normalizer
from core.datasets import check_name, own_names
from core.figures import class_count_figure, image_grid, pixel_histogram_figure
from ui.app import require_app
from ui.common import data_dir, held
from ui.run_files import dataset_for
from ui.url_state import controls_from_link, to_link

require_app()  # first: a page run without dashboard.py is run again through it

DATASETS = {DATASET_LABELS["shapes"]: "shapes", **DATASET_NAMES}  # Shapes first: it works offline

st.title("The data")
st.caption("The tutorial's step 1: load the training and test images and normalize them.")

def dataset_label(name: str) -> str:
    labels = {value: label for label, value in DATASETS.items()}
    if name not in labels:
        raise ValueError(f"choose one of {', '.join(labels)}")
    return labels[name]


def folder_path(text: str) -> str:
    if not text.strip():
        raise ValueError("it is empty")
    return text.strip()


# /data?dataset=shapes, /data?dataset=folder&folder=/data/pictures, /data?dataset=own&own=fruit
controls_from_link("data", {"dataset": ("data_dataset", dataset_label), "folder": ("data_folder", folder_path),
                            "own": ("data_own", check_name)})
choice = st.selectbox("Dataset", list(DATASETS), key="data_dataset", persist_state="session",
                      **held("data_dataset", list(DATASETS)))
name = DATASETS[choice]
folder = (st.text_input("Folder path", key="data_folder", persist_state="session", **held("data_folder"))
          if name == "folder" else "")
owns = own_names(data_dir()) if name == "own" else []
own = (st.selectbox("Own dataset", owns, key="data_own", persist_state="session", **held("data_own", owns))
       if owns else "")
to_link("data", {"dataset": name, **({"folder": folder.strip()} if folder.strip() else {}),
                 **({"own": own} if own else {})}, ["dataset", "folder", "own"])
if name == "folder":
    if not folder.strip():
        st.info("Enter the path of a folder with train/ and test/ sub-folders, one sub-folder per class.")
        st.stop()
    name = f"folder:{folder.strip()}"
if name == "own":
    if not own:
        st.info("No own datasets on this server yet: make one from your pictures on the Own pictures page.")
        st.page_link("pages/own.py", label="Own pictures", icon=":material/add_photo_alternate:")
        st.stop()
    name = f"own:{own}"
data = dataset_for(name)
if data is None:
    if name in ("cifar10", "mnist", "fashion-mnist"):
        st.info("No internet here? Choose **Shapes (offline)**: it is made on this machine.")
    st.stop()

st.markdown(f"**{len(data.train_labels):,} training** and **{len(data.test_labels):,} test** images of "
            f"{data.channels}x{data.image_size}x{data.image_size} pixels in **{data.num_classes} classes**.")

st.header("Training images by class")
per_class = st.slider("Images per class", 4, 16, 8)
rows = []
for k in range(data.num_classes):
    rows.append((data.train_labels == k).nonzero().squeeze(1)[:per_class])
chosen = torch.cat(rows)
st.image(image_grid(data.train_images[chosen], [data.classes[int(data.train_labels[i])] for i in chosen],
                    columns=per_class, scale=3, caption_lines=1))

train_counts = torch.bincount(data.train_labels, minlength=data.num_classes).tolist()
test_counts = torch.bincount(data.test_labels, minlength=data.num_classes).tolist()
st.plotly_chart(class_count_figure(data.classes, train_counts, test_counts), key="class_counts")

st.header("Normalization")
st.markdown(
    "The tutorial turns each image into a tensor with `transforms.ToTensor()`, which scales the pixel values "
    "from 0..255 to **0..1**, then applies `transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))`, which "
    "computes **(x − 0.5) / 0.5** for every channel: the values now run from **−1 to 1**, centred on 0. "
    "Inputs centred on zero keep the first layer's outputs in a good range, which helps SGD learn. "
    "Here the images stay as bytes in memory and are normalized a batch at a time, just before the network.")
sample = data.train_images[:200]
st.plotly_chart(pixel_histogram_figure(sample.float() / 255, Normalizer(data.mean, data.std)(sample)),
                key="pixel_histogram")

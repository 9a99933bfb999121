import streamlit as st

from ui.app import require_app

require_app()  # first: a page run without dashboard.py is run again through it

st.title("Train a CNN live: the PyTorch CIFAR-10 tutorial")
st.markdown(
    """
This dashboard runs the network of PyTorch's *Training a classifier* tutorial while you watch.
New to it, or teaching it? The **Lessons** page walks the tutorial step by step, each step a link.

1. **Train**: choose the data, the learning rate, momentum, batch size and the width of the
   convolutions, then click **Train**. The running loss is drawn live while the network learns.
2. **Results**: what the network got right and wrong: test images with their predictions,
   accuracy per class, the confusion matrix, and your own photo.
3. **Network**: every layer's shape, worked out with the tutorial's formula, and what the filters learned.
4. **Data**: the images, their classes, and what normalization does to them.
5. **Speed**: CPU against GPU, widening the network until the GPU pulls ahead.

No internet? The app starts on **Shapes (offline)**: ten kinds of drawn shapes, made on this machine.
"""
)
left, right, _ = st.columns([1, 1, 2])
if left.button("Start the lessons", type="primary", width="stretch"):
    st.switch_page("pages/lessons.py")
if right.button("Go to the Train page", width="stretch"):
    st.switch_page("pages/train.py")

"""Own pictures: make a dataset in the browser (classes, pictures by upload, zip or camera), see what the network will
see, and train the tutorial's network on it. The work is core/datasets.py's; the actions are ui/own_view.py's."""

import streamlit as st

from core.datasets import (
    CAPS_TEXT,
    MAX_PICTURE_BYTES,
    MAX_UPLOAD,
    MIN_PICTURES,
    OwnError,
    check_name,
    get_own,
    own_names,
)
from ui import own_view as view
from ui.app import require_app
from ui.common import data_dir, held, plain
from ui.url_state import controls_from_link, to_link

require_app()  # first: a page run without dashboard.py is run again through it

SHOWN = 40  # pictures shown a class; the rest counted
SMALL_DATA = {"epochs": "20", "batch_size": "8", "lr": "0.01"}  # what the Train link sets: steps enough on a few dozen

st.title("Own pictures")
st.caption("Make a dataset from your own pictures: name 2 to 10 classes and give each at least "
           f"{MIN_PICTURES} pictures, by upload or with the camera. Then train the tutorial's network on it.")


controls_from_link("own", {"own": (view.CHOSEN, check_name)})  # /own?own=fruit
names = own_names(data_dir())
if st.session_state.get(view.CHOSEN) not in (view.NEW, *names):  # a link's name that is not here, or one deleted
    if st.session_state.get(view.CHOSEN):
        st.warning(f"There is no own dataset {plain(st.session_state[view.CHOSEN])} on this server (deleted, or made "
                   "on another): choose one here, or make it.")
    st.session_state[view.CHOSEN] = names[0] if names else view.NEW
choices = [*names, view.NEW]
chosen = st.selectbox("Dataset", choices, key=view.CHOSEN, format_func=lambda n: n or "New dataset…",
                      **held(view.CHOSEN, choices))
to_link("own", {"own": chosen} if chosen else {}, ["own"])

lines = st.container()  # what the last action did; one container, so what follows keeps its place (and its tab)
for kind, line in view.said():
    getattr(lines, kind)(plain(line))

if chosen == view.NEW:
    left, right = st.columns(2)
    with left:
        st.subheader("A new dataset")
        st.text_input("Name", key="own_new_name", placeholder="fruit", max_chars=40)
        st.text_input("Classes, separated by commas", key="own_new_classes", placeholder="apple, banana, cherry")
        st.button("Make the dataset", on_click=view.on_create, type="primary")
    with right:
        st.subheader("Or take in a dataset zip")
        st.file_uploader("A zip of class folders (or of train/ and test/ with class folders), such as another "
                         "server's Download dataset", type=["zip"], key=view._uploader_key("own_zip"),
                         on_change=view.on_import)
    st.caption(f"Limits: {CAPS_TEXT}.")
    st.stop()

try:
    dataset = get_own(data_dir(), chosen)
except OwnError as exc:
    st.error(plain(str(exc)))
    st.stop()

total = sum(dataset.count(c) for c in dataset.classes)
tests = sum(dataset.count(c, "test") for c in dataset.classes)
summary = (f"**{plain(dataset.name)}**: {len(dataset.classes)} classes, **{total} pictures**: {total - tests} to train "
           f"on, {tests} kept aside to test.")
state = st.container()  # one element whatever it says: the tabs below keep their place, and the one open stays open
if dataset.ready:
    state.success(f"{summary} **Ready to train.**")
    link, why = state.columns([1, 3], vertical_alignment="center")
    link.page_link("pages/train.py", label=f"Train on {plain(dataset.name)}", icon=":material/fitness_center:",
                   query_params={"dataset": "own", "own": dataset.name, **SMALL_DATA})
    why.caption(f"The link sets {SMALL_DATA['epochs']} epochs, batch {SMALL_DATA['batch_size']} and learning rate "
                f"{SMALL_DATA['lr']}: on a few dozen pictures the tutorial's 2 epochs are too few steps to learn.")
else:
    state.warning(f"{summary} {plain(dataset.missing_line())}")

# a tab a class, named by the class alone: a tab whose name changed (a count in it) would be a new one, and the page
# would jump back to the first class after every picture added
tabs = st.tabs([*map(plain, dataset.classes), "Add a class"], key=f"own_tabs_{dataset.name}")
for cls, tab in zip(dataset.classes, tabs):
    with tab:
        st.markdown(f"**{plain(cls)}: {dataset.count(cls)} picture{'s' if dataset.count(cls) != 1 else ''}** "
                    f"({dataset.count(cls, 'train')} to train on, {dataset.count(cls, 'test')} to test).")
        add, camera = st.columns(2)
        add.file_uploader(f"Add pictures of {plain(cls)} (up to {MAX_UPLOAD} at once)", accept_multiple_files=True,
                          type=["png", "jpg", "jpeg", "bmp", "gif", "webp"], key=view._uploader_key(f"own_up_{cls}"),
                          max_upload_size=MAX_PICTURE_BYTES // 2**20,
                          on_change=view.on_upload, args=(dataset.name, cls))
        if camera.toggle("Use the camera", key=f"own_camera_on_{cls}"):
            camera.camera_input(f"A photo of {plain(cls)}", key=view._uploader_key(f"own_cam_{cls}"),
                                on_change=view.on_camera, args=(dataset.name, cls))
            camera.caption("No camera, or the browser was told no? Upload pictures instead, on the left.")
        pictures = dataset.pictures[cls]
        if not pictures:
            st.info(f"No pictures of {plain(cls)} yet.")
        st.caption("Each picture as kept, and beside it the 32x32 the network sees. Test: kept aside to test on (a "
                   "fifth of each class, chosen from the pictures themselves: the same every time).")
        columns = st.columns(5)
        for i, picture in enumerate(pictures[:SHOWN]):
            with columns[i % 5]:
                st.image(view.tile(str(picture.path), picture.id),
                         caption=f"{'test' if picture.split == 'test' else 'train'}")
                st.button("Remove", key=f"own_rm_{cls}_{picture.id}", on_click=view.on_remove,
                          args=(dataset.name, cls, picture.id), icon=":material/delete:")
        if len(pictures) > SHOWN:
            st.caption(f"... and {len(pictures) - SHOWN} more.")
        if len(dataset.classes) > 2:
            st.button(f"Remove the class {plain(cls)}", key=f"own_rm_class_{cls}", on_click=view.on_remove_class,
                      args=(dataset.name, cls))
with tabs[-1]:
    st.text_input("A new class's name", key="own_add_class", max_chars=40)
    st.button("Add the class", on_click=view.on_add_class, args=(dataset.name,))

st.file_uploader(f"Or add many at once: a zip with a folder for each class ({plain(', '.join(dataset.classes))})",
                 type=["zip"], key=view._uploader_key("own_add_zip"), on_change=view.on_add_zip,
                 args=(dataset.name,))

st.subheader("Share it")
st.html(view.zip_link(dataset.name))
st.caption(f"Another server takes the zip in on this page (New dataset…). Limits: {CAPS_TEXT}.")
with st.expander("Delete this dataset"):
    st.button(f"Delete {plain(dataset.name)} and all its pictures", on_click=view.on_delete, args=(dataset.name,),
              type="primary")

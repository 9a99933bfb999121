"""Runs: every training run kept on disk, named by what it is; compare, rename, delete and share them."""

import time

import pandas as pd
import streamlit as st

from core.data import dataset_label
from core.figures import compare_accuracy_figure, compare_loss_figure, compare_per_class_figure
from core.runs import RunError, add_meta, delete_run, list_runs, load_run, write_meta
from core.runs.archive import ArchiveError, import_run
from core.runs.compare import legend_names, per_class, settings_table
from core.speed import speed_results
from ui.app import require_app
from ui.classroom import may_change, owner_id
from ui.common import held, plain, presenting, runs_root
from ui.run_downloads import links
from ui.url_state import from_link, to_link

require_app()  # first: a page run without dashboard.py is run again through it

st.title("Runs: keep, compare and share")
st.caption("Every training run is kept here, named by what it is. Pick two or more to see what the setting "
           "that differs changed.")

runs = list_runs(runs_root())  # config, summary and title: enough for the table; histories only for compared runs
by_name = {r.name: r for r in runs}


def started(name: str) -> str:
    """A run folder's time stamp (20261130-015710-...) as a date a person reads."""
    try:
        return time.strftime("%d %b %Y %H:%M", time.strptime(name[:15], "%Y%m%d-%H%M%S"))
    except ValueError:
        return ""


def table() -> pd.DataFrame:
    rows = []
    for r in runs:
        s = r.summary or {}
        rows.append({"Run": r.title, "Name": r.meta.get("name", ""),
                     "Dataset": dataset_label(r.config.dataset.split(":")[0]) if r.config else "–",
                     "Status": r.status, "Test accuracy": r.accuracy * 100 if r.accuracy is not None else None,
                     "Images/s": s.get("images_per_second"), "Training (s)": s.get("train_seconds"),
                     "Device": s.get("device"), "Started": started(r.name), "Folder": r.name})
    return pd.DataFrame(rows, columns=["Run", "Name", "Dataset", "Status", "Test accuracy", "Images/s", "Training (s)",
                                       "Device", "Started", "Folder"])


# -- upload ------------------------------------------------------------------------------------------------
with st.expander("Upload a run", expanded=not runs, icon=":material/upload:"):
    upload = st.file_uploader("Upload a run", type=["zip", "pt"],
                              help="A run zip downloaded from this page, on this or another computer, or a bare "
                                   "checkpoint.pt. It is checked before anything is kept.")
    if upload is not None and st.session_state.get("runs_imported") != upload.file_id:
        st.session_state.runs_imported = upload.file_id
        try:
            name = import_run(runs_root(), upload.getvalue())
            add_meta(f"{runs_root()}/{name}", {"owner": owner_id()})  # the uploader's, whoever made it
        except (ArchiveError, OSError) as exc:
            st.session_state.runs_message = ("error", f"{upload.name} was not taken in: {exc}")
        else:
            st.session_state.runs_message = ("success", f"{upload.name} is now run {name}: it is in the table "
                                                        "and on the Results and Network pages.")
        st.rerun()
if message := st.session_state.pop("runs_message", None):
    getattr(st, message[0])(message[1])


def speed_summary(result: dict) -> tuple[pd.DataFrame, str]:
    """A kept sweep, scaling measurement or race as a table and a line that says what it found."""
    when = time.strftime("%d %b %Y %H:%M", time.localtime(result["saved"]))
    if result["kind"] == "sweep":
        frame = pd.DataFrame(result["rows"])
        best = frame.loc[frame["images_per_second"].idxmax()]
        return frame, (f"Sweep, {when}: {len(frame)} points, fastest {best['images_per_second']:,.0f} images/s "
                       f"({best['device']}, width {best['width']}, batch {best['batch_size']})")
    if result["kind"] == "scaling":
        frame = pd.DataFrame(result["rows"])
        best = frame.loc[frame["images_per_second"].idxmax()]
        return frame, (f"Scaling, {when}: {len(frame)} points, fastest {best['images_per_second']:,.0f} images/s "
                       f"({best['processes']} process(es) x {best['threads']} thread(s), width {best['width']})")
    frame = pd.DataFrame([{"racer": name, **point} for name, curve in result["curves"].items() for point in curve])
    return frame, f"Race, {when}: " + " · ".join(str(n) for n in result.get("notes", [])).replace("**", "")


def speed_section() -> None:
    """The speed lab's sweeps and races, kept like runs (core/speed.py): each as a table and a CSV."""
    results = speed_results(runs_root())
    if not results:
        return
    st.header("Speed results")
    st.caption("Sweeps, scaling measurements and races from the **Speed** page, newest first.")
    for i, result in enumerate(results[:10]):
        try:
            frame, label = speed_summary(result)
        except (KeyError, TypeError, ValueError):  # a file edited by hand, say: left out, as a damaged run is
            continue
        with st.expander(label):
            st.dataframe(frame, hide_index=True, placeholder="–")
            st.download_button("Download (.csv)", frame.to_csv(index=False), result["file"].replace(".json", ".csv"),
                               "text/csv", key=f"speed_csv_{i}")


if not runs:
    st.info("No run yet: train one on the **Train** page, or upload one above.")
    speed_section()
    st.stop()

# -- the table -----------------------------------------------------------------------------------------------
frame = table()
f1, f2 = st.columns(2)
datasets = f1.multiselect("Dataset", sorted(frame["Dataset"].unique()), key="runs_datasets",
                          **held("runs_datasets", sorted(frame["Dataset"].unique()), many=True),
                          placeholder="All datasets")
statuses = f2.multiselect("Status", sorted(frame["Status"].unique()), key="runs_statuses",
                          placeholder="Any status",
                          **held("runs_statuses", sorted(frame["Status"].unique()), many=True))
shown = frame[frame["Dataset"].isin(datasets or frame["Dataset"]) & frame["Status"].isin(statuses or frame["Status"])]
# the run's name takes the room (it starts with the dataset and ends with the time it started); the rest stay
# narrow, and in presentation mode the table keeps what a class reads, so it fits a 1280-px projector
WHAT_A_CLASS_READS = ["Run", "Name", "Status", "Test accuracy", "Images/s", "Training (s)"]
st.dataframe(shown, hide_index=True, width="stretch", placeholder="–", column_order=WHAT_A_CLASS_READS if presenting()
             else [c for c in shown.columns if c != "Dataset"], column_config={
    "Run": st.column_config.TextColumn(width="large"),
    "Name": st.column_config.TextColumn(width="small"),
    "Dataset": st.column_config.TextColumn(width="small"),
    "Status": st.column_config.TextColumn(width="small"),
    "Test accuracy": st.column_config.NumberColumn(format="%.1f%%", width="small"),
    "Images/s": st.column_config.NumberColumn(format="%,.0f", width="small"),
    "Training (s)": st.column_config.NumberColumn(format="%.1f", width="small"),
    "Device": st.column_config.TextColumn(width="small"),
    "Started": st.column_config.TextColumn(width="small"),
    "Folder": st.column_config.TextColumn(width="medium")})

# -- compare -----------------------------------------------------------------------------------------------------
st.header("Compare runs")
readable = [r.name for r in runs if r.config is not None]
COMPARE, MOST = "compare", 8  # the URL names the compared runs by their folders: ?compare=NAME&compare=NAME


def follow_link() -> None:
    """A link opened (not the URL this page wrote itself) chooses the runs it names. By folder name, not by the
    label the list shows (bind="query-params" would put that in the URL): a title edited later, or a new
    accuracy, does not break a link a teacher has shared."""
    query = from_link("runs", [COMPARE], lists=[COMPARE])
    if not query:
        return
    linked = query[COMPARE]
    here = [n for n in dict.fromkeys(linked) if n in readable]
    st.session_state.runs_compare = here[:MOST]
    if missing := len(dict.fromkeys(linked)) - len(here):
        st.caption(f"{missing} run(s) named in the link are not on this server.")


follow_link()
chosen = st.multiselect("Compare runs", readable, format_func=lambda n: f"{by_name[n].title} ({n})",
                        max_selections=MOST, key="runs_compare", **held("runs_compare", readable, many=True),
                        help="Two to eight runs. The page's link keeps them: share it to show the same comparison.")
to_link("runs", {COMPARE: chosen}, [COMPARE])  # an empty list takes the parameter away
if len(chosen) == 1:
    st.caption("Choose one more run to compare with.")
elif len(chosen) >= 2:
    picked = [load_run(by_name[n].path) for n in chosen]
    legends = legend_names(picked)
    c1, c2, c3 = st.columns([2, 2, 1])
    x = c1.radio("Loss against", ["images_seen", "train_seconds"], horizontal=True, key="runs_x",
                 **held("runs_x", ["images_seen", "train_seconds"]),
                 format_func={"images_seen": "images seen", "train_seconds": "seconds of training"}.get)
    smoothing = c2.slider("Smoothing", 0.0, 0.99, 0.6, step=0.01, key="runs_smoothing",
                          help="An exponential moving average of the running loss; the raw line stays faint behind.")
    diverged = [n for n, r in zip(legends, picked) if r.status == "diverged"]
    log_y = c3.toggle("Log scale", value=False, key=f"runs_log_{'_'.join(chosen)}",
                      help="A loss that exploded is thousands of times the others: on a log scale all of it shows.")
    if diverged and not log_y:
        st.caption(f"{', '.join(diverged)} diverged: its loss shot off the top of the chart (Log scale shows all "
                   "of it).")
    st.plotly_chart(compare_loss_figure([(n, r.history.losses) for n, r in zip(legends, picked)], x, smoothing,
                                        log_y, diverged), key="runs_loss_chart")
    st.plotly_chart(compare_accuracy_figure([(n, r.history.epochs) for n, r in zip(legends, picked)]),
                    key="runs_accuracy_chart")
    classes = [r.history.start.get("classes") for r in picked]
    bars = [(n, per_class(r)) for n, r in zip(legends, picked)]
    if all(c == classes[0] for c in classes) and classes[0] and all(b is not None for _, b in bars):
        st.plotly_chart(compare_per_class_figure(classes[0], bars), key="runs_per_class_chart")
    st.markdown("**What differs, and what each run reached**")
    st.table(pd.DataFrame(settings_table(picked)).set_index("run"))  # a few rows, readable from the back

# -- one run: title, note, download, delete -------------------------------------------------------------------
st.header("One run")
name = st.selectbox("Run", list(by_name), format_func=lambda n: f"{by_name[n].title} ({n})", key="runs_one",
                    **held("runs_one", list(by_name)))
run = load_run(by_name[name].path, with_events=False)  # the files below are made on the click
mine = may_change(run.meta)  # a student's run is theirs (and the teacher's) to rename and delete
if not mine:
    who = plain(run.meta.get("name") or "another student")
    st.caption(f":material/lock: This run is {who}'s: only the browser that started it, or the teacher, can rename "
               "or delete it.")
if run.error:
    st.error(f"This run is damaged: {run.error}." + (" Delete it below." if mine else ""))
else:
    if mine:
        with st.form("runs_meta"):
            title = st.text_input("Title", run.meta.get("title", ""), placeholder=run.title, max_chars=120)
            note = st.text_area("Note", run.meta.get("note", ""), max_chars=2000,
                                placeholder="What did you try, and what happened?")
            if st.form_submit_button("Save title and note"):
                write_meta(run.path, title, note)
                st.rerun()
    elif run.meta.get("note"):
        st.text(run.meta["note"])
    # links to the app's own route (ui/run_downloads.py): each file made at the click, for TensorBoard and ONNX too
    st.html(links(name, ["zip", "loss.csv", "epochs.csv", "tensorboard", "onnx"]))


def delete_section() -> None:
    with st.expander("Delete this run", icon=":material/delete:"):
        sure = st.checkbox(f"Yes, delete {run.title} ({name}): its history, checkpoint and predictions go for good",
                           key=f"runs_sure_{name}")
        if st.button("Delete the run", disabled=not sure, key="runs_delete"):
            if not may_change(load_run(run.path, with_events=False).meta):  # as the folder says now
                st.session_state.runs_message = ("error", "Only the browser that started this run, or the "
                                                          "teacher, can delete it.")
                st.rerun()
            try:
                delete_run(runs_root(), name)
            except RunError as exc:
                st.session_state.runs_message = ("error", str(exc))
            else:
                st.session_state.runs_message = ("success", f"Run {name} was deleted.")
                st.session_state.pop("runs_one", None)
            st.rerun()


if mine:
    delete_section()

speed_section()

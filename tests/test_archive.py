"""Runs kept, named, deleted and shared: a run zip makes the round trip, and a hostile file is refused whole."""

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from core.runs import RunError, RunWriter, delete_run, list_runs, load_model, load_run, write_meta
from core.runs.archive import ArchiveError, export_bytes, export_run, history_csv, import_run
from tests.conftest import ROOT, run_main
from tests.test_runs import finished_run


@pytest.fixture
def run(tmp_path, small_shapes):
    """A finished Shapes run at learning rate 0.01 (its folder)."""
    _, events = finished_run(tmp_path, small_shapes)
    return Path(events[-1]["run_dir"])


def untouched(root: Path, before: set[str]) -> bool:
    """Nothing new in the runs folder, hidden staging folders included."""
    return {p.name for p in root.iterdir()} == before


def test_a_run_is_named_by_what_it_is_and_takes_a_title_and_a_note(run):
    info = load_run(run)
    started = f"{info.name[9:11]}:{info.name[11:13]}"  # the folder's name: 20261202-140512-shapes-9124
    assert info.title == (f"Shapes (offline) · Tutorial · epochs 1 · lr 0.01 · batch 32 · {info.accuracy:.1%} · "
                          f"{started}")
    write_meta(run, "  My   first run ", "lr 0.01 learns fast")
    info = load_run(run)
    assert info.title == "My first run" and info.meta["note"] == "lr 0.01 learns fast"
    write_meta(run, "", "")
    assert load_run(run).title.startswith("Shapes (offline) · Tutorial")  # an empty title: the built one again


def test_export_then_import_into_an_empty_runs_folder_gives_the_same_run(run, tmp_path, small_shapes):
    data = export_bytes(run)
    names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert {"config.json", "metrics.jsonl", "metrics.csv", "summary.json", "checkpoint.pt", "predictions.pt"} <= names
    csv_lines = zipfile.ZipFile(io.BytesIO(data)).read("metrics.csv").decode().splitlines()
    assert csv_lines[0].startswith("epoch,step,images_seen") and len(csv_lines) > 2
    epochs = history_csv(load_run(run).history.epochs, "epoch").splitlines()  # the page's accuracy download
    assert epochs[0] == "epoch,test_accuracy,train_accuracy,train_loss,seconds,images_per_second" and len(epochs) == 2
    other = tmp_path / "elsewhere"
    name = import_run(other, data)
    (imported,) = list_runs(other, with_events=True)
    original = load_run(run)
    assert imported.name == name and imported.status == "finished" and imported.accuracy == original.accuracy
    assert imported.history.epochs == original.history.epochs and imported.history.losses == original.history.losses
    model = load_model(other / name)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), load_model(run).state_dict().values()))


def zip_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out.getvalue()


def run_files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and not p.name.startswith(".")}


class RunsCode:
    """Unpickled, it would run code: it creates the file `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def checkpoint_bytes(obj) -> bytes:
    out = io.BytesIO()
    torch.save(obj, out)
    return out.getvalue()


def packed_bomb() -> bytes:
    """A file shaped like a torch checkpoint (a zip: data.pkl and a record) whose record unpacks to 300 MB."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        zf.writestr("archive/data/0", bytes(300 * 2**20))
    return out.getvalue()


@pytest.mark.parametrize("case", ["escape", "absolute", "bomb", "pickle", "huge-model", "wrong-shapes", "not-a-run",
                                  "link", "checkpoint-bomb", "bare-checkpoint-bomb", "long-history",
                                  "large-predictions", "predictions-bomb"])
@pytest.mark.fault
def test_a_hostile_file_is_refused_with_one_line_and_nothing_is_written(case, run, tmp_path):
    root = tmp_path / "runs"
    files = run_files(run)
    escaped = tmp_path / "x"
    ran = tmp_path / "code-ran"
    blob = torch.load(run / "checkpoint.pt", weights_only=True)
    if case == "escape":
        data, message = zip_of({**files, "../x": b"outside"}), "'../x' is a name that would land outside the folder"
    elif case == "absolute":
        data, message = zip_of({**files, str(escaped): b"outside"}), "would land outside"
    elif case == "bomb":  # 200 MB of zeros in a zip of a few hundred kB
        data, message = zip_of({**files, "metrics.jsonl": bytes(200 * 2**20)}), "would be 200 MB unpacked"
    elif case == "pickle":
        data, message = zip_of({**files, "checkpoint.pt": checkpoint_bytes({"model_args": RunsCode(ran)})}), "damaged"
    elif case == "huge-model":
        args = {**blob["model_args"], "num_classes": 5_000_000}
        data = zip_of({**files, "checkpoint.pt": checkpoint_bytes({**blob, "model_args": args})})
        message = "num_classes=5000000 is outside 2..1000"
    elif case == "wrong-shapes":  # arguments within bounds, weights of another shape
        args = {**blob["model_args"], "conv_width": 7}
        data = zip_of({**files, "checkpoint.pt": checkpoint_bytes({**blob, "model_args": args})})
        message = "size mismatch"
    elif case == "checkpoint-bomb":  # a small checkpoint.pt whose own zip record would take 300 MB in memory
        data, message = zip_of({**files, "checkpoint.pt": packed_bomb()}), "would unpack to more than 210 MB"
    elif case == "bare-checkpoint-bomb":
        data, message = packed_bomb(), "would unpack to more than 210 MB"
    elif case == "long-history":  # 70,000 tiny lines: 0.2 MB, under the byte cap, over the point cap
        data, message = zip_of({**files, "metrics.jsonl": b"{}\n" * 70_000}), "more than 60,000 points"
    elif case == "large-predictions":  # 40 MB of probabilities: more than the loop ever saves
        probs = torch.zeros(20_000, 1000, dtype=torch.half)
        data = zip_of({**files, "predictions.pt": checkpoint_bytes({"epoch": 1, "probs": probs})})
        message = "predictions.pt would be 38 MB unpacked, more than this app takes (32 MB)"
    elif case == "predictions-bomb":
        data, message = zip_of({**files, "predictions.pt": packed_bomb()}), "would unpack to more than 34 MB"
    elif case == "not-a-run":
        data, message = b"GIF89a not a zip, not a checkpoint", "not a run zip or a checkpoint"
    else:  # a member that is a symbolic link
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            for name, content in files.items():
                zf.writestr(name, content)
            link = zipfile.ZipInfo("summary.json.lnk")
            link.external_attr = 0o120777 << 16
            zf.writestr(link, "/etc/passwd")
        data, message = out.getvalue(), "is a link"
    before = {p.name for p in root.iterdir()}
    with pytest.raises(ArchiveError, match=re.escape(message)):
        import_run(root, data)
    assert untouched(root, before) and not escaped.exists() and not ran.exists()
    assert not (root.parent / "x").exists() and not Path("/x").exists()


@pytest.mark.fault
def test_an_import_keeps_the_history_and_not_its_spreadsheet_copy(run, tmp_path):
    """metrics.csv is written on export for a spreadsheet; taken in, it would only take room (export makes it anew)."""
    root = tmp_path / "in"
    name = import_run(root, zip_of({**run_files(run), "metrics.csv": b"epoch,step\n" * 100_000}))
    assert not (root / name / "metrics.csv").exists() and (root / name / "metrics.jsonl").exists()
    assert load_run(root / name).history.losses == load_run(run).history.losses


def test_a_bare_checkpoint_becomes_a_run_of_its_own(run, tmp_path):
    name = import_run(tmp_path / "other", (run / "checkpoint.pt").read_bytes())
    info = load_run(tmp_path / "other" / name)
    assert info.status == "imported" and info.config.conv_width == 6 and load_model(info.path) is not None


def test_delete_never_removes_a_run_that_is_still_training(run, tmp_path):
    from core.config import TrainConfig

    writer = RunWriter(tmp_path / "runs", TrainConfig(dataset="shapes"))  # its marker names this live process
    with pytest.raises(RunError, match="still training"):
        delete_run(tmp_path / "runs", writer.path.name)
    assert writer.path.exists()
    for name in ("../runs", "", ".", str(run)):
        with pytest.raises(RunError, match="there is no run"):
            delete_run(tmp_path / "runs", name)
    writer.summary({"type": "end", "status": "stopped"})
    writer.close()
    delete_run(tmp_path / "runs", writer.path.name)
    delete_run(tmp_path / "runs", run.name)
    assert list_runs(tmp_path / "runs") == []


def test_a_run_named_by_a_page_link_or_command_is_a_folder_directly_in_the_runs_folder(run, tmp_path):
    # one check for every place a run is named from outside (delete, export, the download route): a name with a
    # path in it, a hidden one, a link out of the folder or no folder at all is no run, and nothing is read
    from core.runs import run_path
    from core.runs.export import read_export

    root = run.parent
    assert run_path(root, run.name) == run.resolve()
    (tmp_path / "outside").mkdir()
    (root / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "file").write_text("not a folder")
    for name in ("", " ", f" {run.name}", "..", ".", ".hidden", f"{run.name}/..", "../x", "a\\b", "a\0b",
                 "escape", "file", "missing", str(run)):
        with pytest.raises(RunError, match="there is no run"):
            run_path(root, name)
        with pytest.raises(RunError, match="there is no run"):
            read_export(root, name)
        with pytest.raises(RunError, match="there is no run"):
            export_run(root, name, tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()
    assert read_export(root, run.name).config.conv_width == 6
    assert zipfile.is_zipfile(export_run(root, run.name, tmp_path / "out.zip"))


def test_the_command_line_lists_shows_exports_imports_and_deletes(run, tmp_path):
    """core.runs' main in this process: the test reads what it prints and returns."""
    from core.runs.__main__ import main

    def cli(*args):
        return run_main(main, "--runs-dir", run.parent, *args)

    listed = cli("list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["run"] == run.name
    shown = json.loads(cli("show", run.name, "--json").stdout)
    assert shown["config"]["lr"] == 0.01 and shown["epochs"][0]["test_accuracy"] == load_run(run).accuracy
    zipped = tmp_path / "run.zip"
    assert cli("export", run.name, "-o", str(zipped)).returncode == 0 and zipfile.is_zipfile(zipped)
    imported = cli("import", str(zipped))
    assert imported.returncode == 0 and (run.parent / imported.stdout.strip()).is_dir()
    for args, message in ((["show", "nope"], "there is no run 'nope'"), (["delete", run.name], "add --yes"),
                          (["import", str(run / "config.json")], "not a run zip or a checkpoint")):
        r = cli(*args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert cli("delete", run.name, "--yes").returncode == 0 and not run.exists()


def _with_member_header(data: bytes, *, flag_bits: int | None = None, method: int | None = None) -> bytes:
    """A run zip with its members' headers changed as a hostile tool might write them (local and central)."""
    import struct

    out = bytearray(data)
    for signature, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        at = out.find(signature)
        while at != -1:
            if flag_bits is not None:
                struct.pack_into("<H", out, at + flag_at, flag_bits)
            if method is not None:
                struct.pack_into("<H", out, at + method_at, method)
            at = out.find(signature, at + 4)
    return bytes(out)


@pytest.mark.parametrize("change, message", [(dict(flag_bits=1), "is encrypted"),
                                             (dict(method=99), "packed with a method this app does not read")])
@pytest.mark.fault
def test_an_encrypted_or_oddly_packed_zip_is_one_line_from_the_command_line(run, tmp_path, change, message):
    hostile = tmp_path / "hostile.zip"
    hostile.write_bytes(_with_member_header(export_bytes(run), **change))
    before = {p.name for p in run.parent.iterdir()}
    from core.runs.__main__ import main

    r = run_main(main, "--runs-dir", run.parent, "import", hostile)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert untouched(run.parent, before)


@pytest.mark.fault
def test_import_reads_only_a_regular_file_and_never_without_end(tmp_path):
    fifo = tmp_path / "x.zip"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        r = subprocess.run([sys.executable, "-m", "core.runs", "--runs-dir", str(tmp_path / "runs"), "import",
                            str(path)], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
        assert r.returncode == 2 and "is not a regular file" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.fault
def test_an_export_that_cannot_be_written_whole_leaves_no_file(run, tmp_path):
    """A file-size limit stands in for a full disk: the zip is written whole or not at all."""
    import resource

    from core.runs.archive import export_run

    target = tmp_path / "out" / "run.zip"
    target.parent.mkdir()
    size = len(export_bytes(run))
    script = (f"import resource, sys; sys.path.insert(0, {str(ROOT)!r}); "
              f"resource.setrlimit(resource.RLIMIT_FSIZE, ({size // 2}, {size // 2})); "
              "import signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              "from core.runs.archive import export_run; from core.runs import RunError\n"
              f"try:\n    export_run({str(run.parent)!r}, {run.name!r}, {str(target)!r})\n"
              "except RunError as exc:\n    print('refused:', exc)")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "refused:" in r.stdout and "is the disk full?" in r.stdout, (r.stdout, r.stderr)
    assert list(target.parent.iterdir()) == []  # no truncated zip, no temporary file
    assert export_run(run.parent, run.name, target) == target and zipfile.is_zipfile(target)
    assert resource.getrlimit(resource.RLIMIT_FSIZE)  # (this process's own limit was never touched)


def test_the_readme_states_the_caps_the_import_applies():
    from core.runs import MAX_CHECKPOINT_BYTES, MAX_EVENTS, MAX_PREDICTION_BYTES
    from core.runs.archive import MAX_ARCHIVE_BYTES, MAX_HISTORY_BYTES
    from core.runs.cache import RUN_CACHE_BYTES

    readme = " ".join((ROOT / "README.md").read_text().split())
    for stated in (f"`checkpoint.pt` {MAX_CHECKPOINT_BYTES >> 20} MB",
                   f"`predictions.pt` {MAX_PREDICTION_BYTES >> 20} MB",
                   f"`metrics.jsonl` {MAX_HISTORY_BYTES >> 20} MB and {MAX_EVENTS:,} events",
                   f"{MAX_ARCHIVE_BYTES >> 20} MB in all", f"within {RUN_CACHE_BYTES >> 20} MB"):
        assert stated in readme

"""Fault injection: hostile files and broken processes, done for real, never mocked.

Each test does what a hostile user or a failing machine does, in a real subprocess where a crash of the
process itself is what would go wrong.
"""

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from core.data import DatasetError, load_dataset
from core.jobs import JobManager
from core.loop import run_training
from tests.conftest import ROOT, cfg, children, pid_alive, wait_for, write_image_folder
from tests.test_cli import cli

pytestmark = pytest.mark.fault  # every test here is a fault probe (counted at the end of the run: conftest.py)


def flipped_png(seed: int) -> bytes:
    """A valid PNG of noise with one byte of its compressed image data flipped (a bad CRC, broken zlib)."""
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (32, 32), bytes(rng.randrange(256) for _ in range(32 * 32 * 3)))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[-20] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_byte_flipped_png_is_named_and_exits_2_instead_of_killing_the_process(tmp_path, seed):
    # torchvision's PNG decoder died with SIGSEGV (exit 139) on every one of these
    folder = write_image_folder(tmp_path / "images")
    bad = folder / "train" / "cats" / "zz-corrupt.png"
    bad.write_bytes(flipped_png(seed))
    r = cli(tmp_path, "--dataset", f"folder:{folder}", "--max-steps", "1")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "zz-corrupt.png" in r.stderr and "not a readable image" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_huge_image_is_refused_before_it_is_decoded(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    Image.new("RGB", (5000, 5000), (10, 20, 30)).save(folder / "test" / "dogs" / "huge.png")  # ~75 MB decoded
    with pytest.raises(DatasetError, match=r"huge.png is 5000x5000 pixels"):
        load_dataset(f"folder:{folder}", tmp_path / "data")


# -- processes that die, servers that go, disks that fill ---------------------------------------------------

def test_a_dead_worker_whose_run_cannot_be_written_still_ends_its_job_and_frees_its_slot(tmp_path, shapes_dir):
    """Pause a job, break its run folder (as a full disk would: the summary cannot be written), kill -9 its
    worker: the job used to stay "paused" forever, Stop did nothing, and the only slot stayed taken."""
    m = JobManager(max_running=1, runs_root=str(tmp_path / "runs"), worker="process", keep_spare=False)
    try:
        job = m.start(cfg(shapes_dir, epochs=200, batch_size=4))
        wait_for(lambda: job.status == "running" and job.run_dir is not None and job.snapshot().losses)
        job.pause()
        wait_for(lambda: job.snapshot().history.paused)
        metrics = Path(job.run_dir) / "metrics.jsonl"
        metrics.unlink()
        metrics.mkdir()  # writing the dead worker's end there now fails, as on a full disk
        os.kill(job.worker.handle.pid, signal.SIGKILL)
        wait_for(lambda: job.status == "failed", timeout=30)  # at once here; a busy CI machine can take seconds
        assert "killed by signal 9" in job.message and "could not be written" in job.message
        job.stop()  # does nothing harmful on an ended job
        after = m.start(cfg(shapes_dir, max_steps=5))  # the slot is free
        wait_for(lambda: after.status == "finished")
        wait_for(lambda: not children(os.getpid(), zombie=True), timeout=30)  # ended workers are reaped
    finally:
        m.shutdown()


SERVER = """
import signal, sys
sys.path.insert(0, {root!r})
from core.config import TrainConfig
from core.jobs import JobManager
m = JobManager(max_running=1, runs_root={runs!r}, worker="process", keep_spare=True)
m.start(TrainConfig(dataset="shapes", data_dir={data!r}, epochs=200, batch_size=4))
signal.pause()  # a server: it runs until the test kills it
"""


def test_killing_the_server_ends_its_workers_and_closes_their_runs(tmp_path, shapes_dir):
    """kill -9 of the process that holds the jobs used to leave its training worker (and a spare) running on,
    orphaned, for good."""
    from core.runs import list_runs

    runs = tmp_path / "runs"
    script = SERVER.format(root=str(ROOT), runs=str(runs), data=shapes_dir)
    server = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        wait_for(lambda: any(r.history.count for r in list_runs(runs, with_events=True)), timeout=90)
        workers = children(server.pid)
        assert workers, "no worker process found"
        server.kill()
        server.wait(10)
        killed = time.monotonic()
        # the workers' own pids: wherever an orphan is adopted (pid 1, or a subreaper), it must have ended
        wait_for(lambda: not any(pid_alive(pid) for pid in workers), timeout=10)
        assert time.monotonic() - killed < 10
    finally:
        if server.poll() is None:
            server.kill()
    (run,) = list_runs(runs)
    # the worker stopped its run and wrote why; where it could not, the next server start marks it
    assert run.status in ("stopped", "interrupted"), run.status


def test_a_spare_whose_server_dies_while_it_starts_ends_too(tmp_path):
    """A server killed while its spare worker was still importing torch left that spare waiting, orphaned, for
    good (found 7 of them, hours old, on the development machine): it took the parent's pid only after the import."""
    script = (f"import signal, sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom core.jobs import JobManager\n"
              f"m = JobManager(max_running=1, runs_root={str(tmp_path / 'runs')!r})\nsignal.pause()\n")
    server = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        wait_for(lambda: children(server.pid), timeout=30)
        spares = children(server.pid)
        server.kill()  # within a second of the spare's start: it is still importing torch
        server.wait(10)
        wait_for(lambda: not any(pid_alive(pid) for pid in spares), timeout=30)
    finally:
        if server.poll() is None:
            server.kill()


def test_a_run_left_without_its_end_is_marked_interrupted_at_the_next_start(tmp_path, shapes_dir):
    from core.runs import RUNNING, list_runs, load_run, mark_interrupted

    config = cfg(shapes_dir)
    events = list(run_training(config, runs_root=tmp_path / "runs", dataset=load_dataset("shapes", shapes_dir)))
    done = Path(events[-1]["run_dir"])
    killed = tmp_path / "runs" / "20260101-000000-shapes-dead"
    shutil.copytree(done, killed)
    (killed / "summary.json").unlink()  # as if its process died mid-run
    (killed / RUNNING).write_text(json.dumps({"pid": 2**22 + 7}))  # a process that no longer exists
    alive = tmp_path / "runs" / "20260101-000001-shapes-live"
    shutil.copytree(done, alive)
    (alive / "summary.json").unlink()
    (alive / RUNNING).write_text(json.dumps({"pid": os.getpid()}))  # still being written
    JobManager(max_running=1, runs_root=str(tmp_path / "runs"), worker="thread").shutdown()  # a server starts
    assert load_run(killed).status == "interrupted" and load_run(killed).history.epochs  # history kept
    assert load_run(alive).status == "running" and load_run(done).status == "finished"  # its process is alive
    assert mark_interrupted(tmp_path / "runs") == []  # once
    assert {r.status for r in list_runs(tmp_path / "runs")} == {"finished", "interrupted", "running"}


def train_on_a_small_disk(tmp_path, shapes_dir, limit: int, epochs: int) -> subprocess.CompletedProcess:
    """`python -m core.train` on Shapes where every write past `limit` bytes fails (RLIMIT_FSIZE: EFBIG), as on a
    disk with no room left."""
    import resource

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "core.train", "--dataset", "shapes", "--data-dir", shapes_dir,
                           "--runs-dir", str(tmp_path / "runs"), "--epochs", str(epochs), "--batch-size", "16"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env, preexec_fn=small_disk)


def test_a_full_disk_ends_the_command_line_with_one_line(tmp_path, shapes_dir):
    """Every write past 100 KB fails, as on a disk with no room left."""
    r = train_on_a_small_disk(tmp_path, shapes_dir, 100_000, epochs=3)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip().splitlines()[-1].startswith("error:")
    assert "the run could not be saved" in r.stderr and "is the disk full?" in r.stderr
    assert "inline_container" not in r.stderr  # not torch's words


def test_a_disk_full_before_the_first_byte_leaves_no_empty_run_folder(tmp_path, shapes_dir):
    """Every write fails (RLIMIT_FSIZE 10 bytes): the run folder's .running marker cannot be written. The command
    says so in one line and the runs folder holds no empty run (the Runs page listed it, damaged)."""
    r = train_on_a_small_disk(tmp_path, shapes_dir, 10, epochs=1)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "is the disk full?" in r.stderr.strip().splitlines()[-1]
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_the_command_line_like_ctrl_c(tmp_path, shapes_dir, sig):
    from core.runs import list_runs

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "core.train", "--dataset", "shapes", "--data-dir", shapes_dir,
                             "--runs-dir", str(tmp_path / "runs"), "--epochs", "100", "--batch-size", "4"],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "step" in line:  # training has begun
            break
    proc.send_signal(sig)
    rest = proc.stderr.read()
    assert proc.wait(30) == 4, rest
    (run,) = list_runs(tmp_path / "runs")
    assert run.status == "stopped" and "Traceback" not in rest


def test_a_config_that_cannot_fit_in_memory_is_refused_before_its_first_step(tmp_path, shapes_dir):
    r = cli(tmp_path, "--dataset", "shapes", "--width", "1024", "--conv2-width", "1024", "--batch-size", "4096")
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()[-1:]) == 1 and "GB" in r.stderr and "free" in r.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run was started


def test_bad_environment_values_fall_back_to_the_default_with_one_line(tmp_path, monkeypatch, capsys):
    for value in ("abc", "0", "-3", "9999"):
        monkeypatch.setenv("CNN_DASHBOARD_MAX_JOBS", value)
        m = JobManager(runs_root=str(tmp_path / "runs"), worker="thread")
        assert m.max_running == max(1, (os.cpu_count() or 2) // 2)
        m.shutdown()
        assert f"CNN_DASHBOARD_MAX_JOBS={value!r} is not a whole number" in capsys.readouterr().err
    monkeypatch.setenv("CNN_DASHBOARD_MAX_JOBS", "3")
    assert JobManager(runs_root=str(tmp_path / "runs"), worker="thread").max_running == 3


# -- damaged run folders and hostile checkpoints ------------------------------------------------------------

@pytest.fixture
def finished(tmp_path, shapes_dir):
    config = cfg(shapes_dir, epochs=2)
    events = list(run_training(config, runs_root=tmp_path / "runs", dataset=load_dataset("shapes", shapes_dir)))
    return Path(events[-1]["run_dir"])


def damage(run: Path, how: str) -> None:
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    if how == "random bytes":
        metrics.write_bytes(metrics.read_bytes()[:200] + bytes(random.Random(0).randrange(256) for _ in range(3000)))
    elif how in ("wrong types", "short per-class lists"):
        out = []
        for line in lines:
            event = json.loads(line)
            if event["type"] == "epoch":
                if how == "wrong types":
                    event.update(test_accuracy="high", epoch="two", confusion="none")
                else:
                    event.update(per_class_correct=[1, 2], per_class_total=[3])
            out.append(json.dumps(event))
        metrics.write_text("\n".join(out) + "\n")
    elif how == "predictions with 50 columns":
        torch.save({"epoch": 2, "probs": torch.rand(2000, 50).half()}, run / "predictions.pt")
    elif how == "a checkpoint of 5,000,000 classes":
        blob = torch.load(run / "checkpoint.pt", weights_only=True)
        blob["model_args"]["num_classes"] = 5_000_000
        torch.save(blob, run / "checkpoint.pt")


DAMAGE = ["random bytes", "wrong types", "short per-class lists", "predictions with 50 columns",
          "a checkpoint of 5,000,000 classes"]


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("name", ["results", "network"])
def test_every_page_renders_a_damaged_run_with_a_line_not_a_traceback(tmp_path, shapes_dir, finished, monkeypatch,
                                                                      how, name):
    from streamlit.testing.v1 import AppTest

    import core.jobs

    damage(finished, how)
    monkeypatch.setenv("CNN_DASHBOARD_DATA", shapes_dir)
    manager = JobManager(max_running=1, runs_root=str(tmp_path / "runs"), worker="thread")
    monkeypatch.setattr(core.jobs, "_manager", manager)
    try:
        at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=60).run()
    finally:
        manager.shutdown()
    assert not at.exception, at.exception
    said = " ".join(m.value for m in (*at.error, *at.warning, *at.info))
    if how in ("predictions with 50 columns",) and name == "results":
        assert "do not match" in said
    if how == "a checkpoint of 5,000,000 classes" and name == "network":
        assert "num_classes=5000000 is outside" in said
    if how == "random bytes":
        assert at.title  # the page is there, drawn from what could be read


def test_a_checkpoint_with_absurd_model_arguments_is_refused_before_anything_is_built(finished):
    import resource

    from core.runs import RunError, load_model

    damage(finished, "a checkpoint of 5,000,000 classes")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(RunError, match="num_classes=5000000 is outside 2..1000"):
        load_model(finished)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: no gigabytes first


def test_run_files_are_private(finished):
    for path in finished.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path


def test_an_unreadable_class_folder_is_bad_input_not_a_crash(tmp_path, monkeypatch):
    folder = write_image_folder(tmp_path / "images")
    real = os.listdir

    def denied(path="."):
        if str(path).endswith("dogs"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "listdir", denied)  # as a folder of another user's, which root cannot be shown
    with pytest.raises(DatasetError, match="dogs cannot be read"):
        load_dataset(f"folder:{folder}", tmp_path / "data")

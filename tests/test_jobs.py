import os
import signal
import time

import pytest

from core.jobs import JobManager
from tests.conftest import cfg, holds_for, wait_for


def test_a_job_runs_to_the_end_and_its_events_arrive_in_order(manager, shapes_dir):
    job = manager.start(cfg(shapes_dir))
    wait_for(lambda: job.status == "finished")
    snap = job.snapshot()
    assert snap.start["total_steps"] == 157 and len(snap.losses) >= 157 // 5
    assert [e["step"] for e in snap.losses] == sorted(e["step"] for e in snap.losses)
    assert len(snap.epochs) == 1 and snap.end["status"] == "finished" and snap.fraction_done == 1.0
    assert snap.run_dir and os.path.isdir(snap.run_dir)


def test_pause_resume_and_stop(manager, shapes_dir):
    job = manager.start(cfg(shapes_dir, epochs=200, batch_size=4, log_interval=20))
    wait_for(lambda: len(job.snapshot().losses) >= 2)
    job.pause()
    wait_for(lambda: job.snapshot().history.paused)
    held = len(job.snapshot().losses)
    holds_for(lambda: len(job.snapshot().losses) <= held + 1 and job.status == "paused", 0.4, "the pause")
    job.resume()
    wait_for(lambda: len(job.snapshot().losses) > held + 1)
    asked = time.monotonic()
    job.stop()
    wait_for(lambda: job.status == "stopped", timeout=5)
    assert time.monotonic() - asked < 1.0
    assert len(job.snapshot().losses) > held  # the history is kept


def test_divergence_ends_the_job_with_a_hint(manager, shapes_dir):
    # batch 4: at batch 64 the same rate ended without a NaN (every ReLU dead) on a GPU machine's CPU
    job = manager.start(cfg(shapes_dir, lr=10, momentum=0.99, epochs=3, batch_size=4))
    wait_for(lambda: job.status == "diverged")
    assert "learning rate" in job.message


def test_bad_input_in_the_worker_fails_the_job_and_the_next_one_runs(manager, shapes_dir, tmp_path):
    bad = manager.start(cfg(shapes_dir, dataset=f"folder:{tmp_path / 'missing'}"))
    good = manager.start(cfg(shapes_dir, max_steps=10))
    wait_for(lambda: bad.status == "failed" and good.status == "finished")
    assert "there is no folder" in bad.message


def test_the_limit_queues_extra_jobs_in_order(manager, shapes_dir):
    jobs = [manager.start(cfg(shapes_dir, epochs=100, batch_size=4)) for _ in range(3)]
    wait_for(lambda: jobs[0].status == "running")
    snaps = [j.snapshot() for j in jobs]
    assert [s.status for s in snaps] == ["running", "waiting", "waiting"]
    assert [s.place for s in snaps] == [0, 1, 2]
    jobs[1].stop()  # leaving the queue moves the others up
    assert jobs[1].status == "stopped" and jobs[2].snapshot().place == 1
    jobs[0].stop()
    wait_for(lambda: jobs[2].status == "running")
    jobs[2].stop()
    wait_for(lambda: jobs[2].status == "stopped")


def test_process_worker_crash_fails_only_that_job(tmp_path, shapes_dir):
    """The real worker: a child process. Killing it (as an out-of-memory kill would) fails its job only."""
    m = JobManager(max_running=2, runs_root=str(tmp_path / "runs"), worker="process", keep_spare=False)
    try:
        doomed = m.start(cfg(shapes_dir, epochs=200, batch_size=4))
        survivor = m.start(cfg(shapes_dir, max_steps=40))
        wait_for(lambda: doomed.status == "running" and doomed.run_dir is not None)
        os.kill(doomed.worker.handle.pid, signal.SIGKILL)
        wait_for(lambda: doomed.status == "failed")
        assert "killed by signal 9" in doomed.message
        wait_for(lambda: survivor.status == "finished")
        from core.runs import load_run
        assert load_run(doomed.run_dir).status == "failed"  # the run directory says so too
        after = m.start(cfg(shapes_dir, max_steps=5))
        wait_for(lambda: after.status == "finished")
    finally:
        m.shutdown()


def test_a_speed_sweep_runs_as_a_job_and_streams_rows(manager):
    from core.speed import SweepSpec

    job = manager.start_sweep(SweepSpec(widths=(2, 4, 6), batch_sizes=(4,), threads=(1,), steps=2, warmup=1))
    wait_for(lambda: job.status == "finished")
    snap = job.snapshot()
    assert [r["width"] for r in snap.rows] == [2, 4, 6] and snap.fraction_done == 1.0


def test_a_worker_never_reruns_the_page_script_that_started_it(tmp_path, shapes_dir, monkeypatch):
    """Under Streamlit, __main__ is the page being run. A spawned worker must not run it again (it would
    draw a page and start workers of its own in the child), and starting one must leave __main__ and
    multiprocessing alone: Streamlit replaces __main__, from other threads, at the start of every script run."""
    import sys
    import types

    marker = tmp_path / "page-ran"
    script = tmp_path / "page.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    m = JobManager(max_running=1, runs_root=str(tmp_path / "runs"), worker="process", keep_spare=False)
    try:
        job = m.start(cfg(shapes_dir, max_steps=5))
        wait_for(lambda: job.status == "finished")
    finally:
        m.shutdown()
    assert not marker.exists(), "the worker ran the page script"

    # nothing of multiprocessing's is rewritten to get there: a worker is `python -m core.worker`
    import multiprocessing.spawn

    assert multiprocessing.spawn.get_preparation_data.__module__ == "multiprocessing.spawn"
    assert sys.modules["__main__"] is page


@pytest.mark.fault
def test_pause_and_resume_racing_the_end_never_hold_the_slot(tmp_path, shapes_dir):
    """Pause and Resume pressed over and over while a job ends (real process workers): the job ends ended, Stop
    and Pause do nothing to it after, and the next job gets the slot. Five rounds, one job each."""
    m = JobManager(max_running=1, runs_root=str(tmp_path / "runs"), worker="process")
    try:
        for round_ in range(5):
            job = m.start(cfg(shapes_dir, batch_size=32, max_steps=120, seed=round_))
            wait_for(lambda job=job: job.status in ("running", "finished"), timeout=120)
            while not job.history.end:  # a click's pace and more: hundreds a second, yet the worker gets the CPU
                job.pause()
                job.resume()
                time.sleep(0.002)
            wait_for(lambda job=job: job.status not in ("running", "paused", "starting"), timeout=30)
            job.pause()  # after the end: nothing changes
            job.resume()
            assert job.status == "finished", (round_, job.status)
            assert not job.snapshot().active and job not in m.running()
        last = m.start(cfg(shapes_dir, max_steps=5))
        wait_for(lambda: last.status == "finished", timeout=120)  # the slot was free
    finally:
        m.shutdown()

import json
import os
import subprocess
import sys

import pytest
import torch

from core.speed import SpeedError, SweepSpec, measure, sweep
from tests.conftest import ROOT, run_main


def test_a_measurement_is_well_formed():
    row = measure("cpu", width=6, batch_size=8, threads=1, steps=3, warmup=2)
    assert row["device"] == "cpu" and row["width"] == 6 and row["batch_size"] == 8 and row["threads"] == 1
    assert row["images_per_second"] > 0 and row["step_ms"] > 0 and row["data_ms"] >= 0
    assert row["images_per_second"] == pytest.approx(8 * 1000 / row["step_ms"])
    assert row["parameters"] == 62006 and row["naive_images_per_second"] is None


def test_warm_up_is_not_timed(monkeypatch):
    """Make the first (warm-up) steps very slow: the timed figure must not see them."""
    import core.speed

    calls = {"n": 0}
    real = core.speed.Net.forward

    def slow_first(self, x):
        calls["n"] += 1
        if calls["n"] <= 2:
            import time
            time.sleep(0.3)
        return real(self, x)

    monkeypatch.setattr(core.speed.Net, "forward", slow_first)
    row = measure("cpu", width=6, batch_size=4, threads=1, steps=5, warmup=2)
    assert calls["n"] == 7 and row["step_ms"] < 300


def test_threads_are_restored():
    before = torch.get_num_threads()
    measure("cpu", width=4, batch_size=4, threads=1, steps=1, warmup=0)
    assert torch.get_num_threads() == before


def test_sweep_yields_a_row_per_combination_and_can_stop():
    spec = SweepSpec(devices=("cpu",), widths=(2, 4), batch_sizes=(4, 8), threads=(1, 2), steps=2, warmup=1)
    rows = list(sweep(spec))
    assert [(r["threads"], r["batch_size"], r["width"]) for r in rows] == [
        (1, 4, 2), (1, 4, 4), (1, 8, 2), (1, 8, 4), (2, 4, 2), (2, 4, 4), (2, 8, 2), (2, 8, 4)]
    assert len(list(sweep(spec, stop=lambda: True))) == 0


@pytest.mark.parametrize("kw, message", [
    (dict(devices=("tpu",)), "unknown device"),
    (dict(widths=(0,)), "conv width must be a whole number from 1 to 1024, not 0"),  # TrainConfig's own bounds
    (dict(batch_sizes=(5000,)), "batch size must be a whole number from 1 to 4096, not 5000"),
    (dict(threads=(-1,)), "threads must be 0"),
    (dict(widths=()), "choose at least one conv width"),
    (dict(steps=0), "steps"),
    (dict(devices=()), "at least one device"),
])
def test_bad_sweeps_are_rejected_clearly(kw, message):
    with pytest.raises(SpeedError, match=message):
        SweepSpec(**kw)


def test_a_device_that_is_not_present_is_rejected():
    from core.device import available_devices

    missing = next((d for d in ("cuda", "mps") if d not in available_devices()), None)
    if missing is None:
        pytest.skip("both CUDA and MPS are present")
    with pytest.raises(SpeedError, match="not available on this machine"):
        SweepSpec(devices=("cpu", missing))


def test_cli_prints_one_json_object_per_row_and_rejects_bad_input():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "core.speed", "--devices", "cpu", "--widths", "6,12", "--batch-sizes",
                        "4", "--steps", "2", "--warmup", "1", "--json"], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["width"] for row in rows] == [6, 12] and all(row["images_per_second"] > 0 for row in rows)
    from core.speed import main  # bad input: only what the command prints and returns, so in this process

    for args, message in ((["--widths", "0"], "conv width must be a whole number"),
                          (["--devices", "gpu"], "unknown device"), (["--widths", "six"], "whole numbers"),
                          (["--processes", "0"], "processes must be")):
        r = run_main(main, *args)
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.serial  # a quiet machine, then its own load on every core
def test_a_busy_machine_is_noticed_and_the_point_measured_again():
    """With other programs busy on every core, the sweep's CPU points say so (and are measured twice) instead of
    reporting the slowdown as the speed of that thread count."""
    quiet = measure("cpu", width=16, batch_size=64, threads=1, steps=20, warmup=3)
    assert quiet["cpu_share"] > 0.75 and not quiet["busy"]
    cores = os.cpu_count() or 1
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * cores)]
    try:
        rows = list(sweep(SweepSpec(widths=(16,), batch_sizes=(64,), threads=(cores,), steps=8, warmup=2)))
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert rows[0]["busy"] and rows[0]["cpu_share"] < 0.75, rows[0]


def test_the_last_sweep_is_kept_for_a_reloaded_page(tmp_path):
    from core.runs import list_runs
    from core.speed import keep_result, newest_result

    assert newest_result(tmp_path, "sweep") is None
    keep_result(tmp_path, "sweep", {"rows": [{"width": 6, "images_per_second": 100.0}]})
    assert newest_result(tmp_path, "sweep")["rows"] == [{"width": 6, "images_per_second": 100.0}]
    assert list_runs(tmp_path) == []  # not taken for a (damaged) run folder
    (tmp_path / ".speed" / "29991231-235959-race-1.json").write_bytes(b"\xff not json")  # the newest, damaged
    assert newest_result(tmp_path, "race") is None


def test_scaling_trains_on_each_number_of_processes_and_says_the_efficiency(shapes_dir):
    """python -m core.speed --processes: a row per process count (and, on a CPU of several cores, one process
    with every core's threads), each from a real `python -m core.train --nproc N` run."""
    r = subprocess.run([sys.executable, "-m", "core.speed", "--processes", "1,2", "--widths", "6", "--batch-sizes",
                        "16", "--steps", "20", "--data-dir", shapes_dir, "--json"], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in r.stdout.strip().splitlines()]
    cores = os.cpu_count()
    assert [(row["processes"], row["threads"]) for row in rows] == [(1, 1), (2, 1)] + ([(1, cores)] if cores > 1
                                                                                        else [])
    one, two = rows[0], rows[1]
    assert one["global_batch_size"] == 16 and two["global_batch_size"] == 32
    assert one["efficiency"] == 1.0 and two["efficiency"] == pytest.approx(
        two["images_per_second"] / (2 * one["images_per_second"]))
    assert all(row["images_per_second"] > 0 for row in rows) and rows[-1]["efficiency"] in (None, 1.0)
    assert all(0 < row["cpu_share"] <= 1.5 for row in rows), rows  # the CPU each bar's rank 0 got


@pytest.mark.serial  # its own load on every core: it would slow the tests beside it
def test_a_busy_machine_is_noticed_by_the_scaling_measurement(shapes_dir):
    """With other programs busy on every core, a scaling bar says so (the Speed page then warns, as for the sweep
    and the race) instead of reporting the slowdown as the cost of more processes."""
    from core.speed import ScalingSpec, scaling

    cores = os.cpu_count() or 1
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * cores)]
    try:
        rows = list(scaling(ScalingSpec(widths=(6,), processes=(1,), batch_size=64, steps=40), shapes_dir))
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert rows and all(row["busy"] and row["cpu_share"] < 0.75 for row in rows), rows


def test_bad_scaling_is_one_line_and_a_stopped_one_ends_early(shapes_dir):
    from core.speed import ScalingSpec, scaling

    for kw, message in ((dict(processes=(0,)), "processes must be whole numbers from 1"),
                        (dict(device="mps"), r"scaling runs on cpu \(gloo\) or cuda \(nccl\)"),
                        (dict(widths=(0,)), "conv width must be"), (dict(steps=5), "steps must be")):
        with pytest.raises(SpeedError, match=message):
            ScalingSpec(**kw)
    # Stop during a measurement ends its processes at once (10,000 steps would take a minute or more)
    import time

    started = time.monotonic()
    rows = list(scaling(ScalingSpec(widths=(6,), processes=(2,), steps=10_000), shapes_dir,
                        stop=lambda: time.monotonic() - started > 4))
    assert rows == [] and time.monotonic() - started < 20

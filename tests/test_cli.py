"""The command line as a user runs it: a real subprocess, real exit codes, stdout and stderr."""

import json
import os
import subprocess
import sys

import pytest

from core.config import PRESETS
from core.device import resolve_device
from tests.conftest import ROOT, run_main


def cli(tmp_path, *args, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "core.train", "--data-dir", str(tmp_path / "data"),
                           "--runs-dir", str(tmp_path / "runs"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def test_json_summary_and_exit_0(tmp_path):
    r = cli(tmp_path, "--dataset", "shapes", "--preset", "fast", "--max-steps", "30", "--json", "--profile")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["steps"] == 30
    # where the time went (issue 29): start-up up to the first step, and the epochs' ends, in --json and --profile
    assert 0 < summary["startup_seconds"] < summary["train_seconds"] + 60 and 0 < summary["eval_seconds"]
    profile = [line for line in r.stderr.splitlines() if line.startswith("profile: ")]
    assert f"first step {summary['startup_seconds']:.2f} s after the command started" in profile[0]
    assert "import torch" in profile[0] and "whole command" in profile[1]
    assert summary["images_seen"] == 30 * PRESETS["fast"]["batch_size"] and summary["images_per_second"] > 0
    assert set(summary["per_class_accuracy"]) >= {"circle", "square"} and 0 <= summary["test_accuracy"] <= 1
    # --device auto (the default) trains on the GPU where there is one
    assert summary["device"] == str(resolve_device("auto")) and os.path.isdir(summary["run_dir"])
    assert "Traceback" not in r.stderr and "step 30/30" in r.stderr


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    """In this process (core.train's main): what the command prints and returns is all that is checked."""
    from core.train import main

    for args, message in ((["--lr", "0"], "learning rate must be > 0"),
                          (["--dataset", f"folder:{tmp_path / 'nowhere'}"], "there is no folder"),
                          (["--batch-size", "four"], "invalid int value"),
                          (["--preset", "turbo"], "invalid choice"),
                          (["--optimizer", "bogus"], "invalid choice: 'bogus' (choose from 'sgd', 'adam', 'rmsprop')"),
                          (["--optimizer", "adam", "--nesterov"], "Nesterov momentum is SGD's")):
        r = run_main(main, "--data-dir", tmp_path / "data", "--runs-dir", tmp_path / "runs", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_divergence_exits_3(tmp_path):
    r = cli(tmp_path, "--dataset", "shapes", "--lr", "10", "--momentum", "0.99", "--batch-size", "32", "--json")
    assert r.returncode == 3, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["status"] == "diverged"
    assert "lower it" in r.stderr.lower()


def test_python_m_core_train_runs_the_module_once(tmp_path):
    """core/train.py (the command line) runs as __main__ and nothing it uses imports it again: run a second time
    as another module, it would make two Control classes, two DeviceErrors (an except clause could miss)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "core.train", "--dataset", "shapes",
                        "--data-dir", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"), "--max-steps", "1"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    imported = [line for line in r.stderr.splitlines() if line.startswith("import time:")]
    assert not any(line.rstrip().endswith("| core.train") for line in imported)
    assert any(line.rstrip().endswith("| core.loop") for line in imported)  # the check can see imports at all


def test_adam_trains_from_the_command_line_and_its_run_says_so(tmp_path):
    r = cli(tmp_path, "--dataset", "shapes", "--optimizer", "adam", "--lr", "0.001", "--batch-size", "32",
            "--max-steps", "40", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    config = json.loads(open(os.path.join(summary["run_dir"], "config.json")).read())
    assert config["optimizer"] == "adam" and summary["final_running_loss"] < 2.3  # it learned
    from core.runs import load_run

    assert "optimizer adam" in load_run(summary["run_dir"]).title


@pytest.mark.fault
def test_a_pipe_named_like_an_image_is_one_line_not_a_hang(tmp_path):
    from tests.conftest import write_image_folder

    folder = write_image_folder(tmp_path / "pics")
    os.mkfifo(folder / "train" / "cats" / "x.png")  # nothing ever writes to it: reading it would wait for ever
    r = cli(tmp_path, "--dataset", f"folder:{folder}", "--max-steps", "1", timeout=60)
    assert r.returncode == 2 and "x.png is not a regular file" in r.stderr and "Traceback" not in r.stderr, r.stderr

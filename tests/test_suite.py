"""The suite's own guards, run as a developer runs the suite: a test that leaves a process, a thread or a launcher's
temporary folder behind fails at its teardown under its own name, in two test processes (pytest-xdist) too."""

import os
import subprocess
import sys

from tests.conftest import ROOT, pid_alive

LEAKY = '''
import os, subprocess, sys, tempfile, threading, time

def test_starts_a_process_and_leaves_it(tmp_path_factory):
    child = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])  # until killed
    with open(os.environ["LEAK_PIDS"], "a") as f:
        f.write(f"{child.pid}\\n")

def test_starts_a_thread_and_leaves_it():
    stop = threading.Event()
    threading.Thread(target=stop.wait, args=(3,), name="left-running").start()

def test_leaves_a_launchers_folder():
    os.mkdir(os.path.join(tempfile.gettempdir(), "cnn-ddp-left"))

def test_leaves_nothing():
    time.sleep(0.1)
'''


def test_a_leak_fails_the_test_that_left_it_under_two_test_processes(tmp_path):
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    pids = tmp_path / "pids"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEAK_PIDS": str(pids), "CNN_TESTS_LEAK_GRACE": "1"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-n", "2", "-p", "no:cacheprovider",
                        "--rootdir", str(tmp_path), "-c", "/dev/null", str(tmp_path / "test_leaky.py")],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240)
    try:
        out = r.stdout
        assert r.returncode == 1, out[-3000:]
        assert "test_starts_a_process_and_leaves_it left behind: process" in out, out[-3000:]
        assert "test_starts_a_thread_and_leaves_it left behind: thread left-running" in out, out[-3000:]
        assert "test_leaves_a_launchers_folder left behind: temporary folder cnn-ddp-left" in out, out[-3000:]
        assert "3 errors" in out and "4 passed" in out, out[-3000:]  # each test's own call passed; the leak is
        assert "test_leaves_nothing" not in out.split("short test summary info")[-1]  # its teardown's error
    finally:
        for pid in map(int, pids.read_text().split() if pids.exists() else []):
            if pid_alive(pid):
                os.kill(pid, 9)

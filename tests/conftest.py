import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CIFAR_ARCHIVE = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"

from core.data import make_shapes  # noqa: E402


@pytest.fixture
def shapes_dir(tmp_path):
    """A data folder with the Shapes set cached in it, as the dashboard would have it after a first use."""
    from core.data import load_dataset

    load_dataset("shapes", tmp_path / "data")
    return str(tmp_path / "data")


@pytest.fixture(scope="session")
def small_shapes():
    """A small offline dataset: 2000 training and 500 test images of 10 shapes."""
    return make_shapes(num_train=2000, num_test=500, seed=1)


def write_image_folder(root: Path, classes=("cats", "dogs", "frogs"), per_class=(6, 3), size=(20, 20),
                       fmt="png") -> Path:
    """A tiny ImageFolder tree: root/{train,test}/<class>/<n>.<fmt>, each class a different colour."""
    for split, count in zip(("train", "test"), per_class):
        for c, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                colour = (60 * c + 20, 255 - 60 * c, (37 * i) % 256)
                Image.new("RGB", size, colour).save(d / f"{i:03d}.{fmt}")
    return root


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "images")


@pytest.fixture(scope="session")
def cifar10_folder(tmp_path_factory):
    """The real CIFAR-10 (JPEG, ImageFolder layout) from ../shared, unpacked once per test session."""
    if not CIFAR_ARCHIVE.exists():
        pytest.skip(f"the CIFAR-10 copy is not at {CIFAR_ARCHIVE} (only the project's own machines have ../shared)")
    import tarfile

    target = tmp_path_factory.mktemp("cifar10")
    with tarfile.open(CIFAR_ARCHIVE) as tar:
        tar.extractall(target, filter="data")
    return target / "cifar10"


@pytest.fixture(scope="session")
def cifar10_data_dir(tmp_path_factory):
    """One dataset cache for every test that loads the real CIFAR-10 (decoding it takes ~20 s)."""
    return tmp_path_factory.mktemp("cifar10-cache")


def no_network(*args, **kwargs):
    import socket
    import urllib.error

    raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))  # as on a machine offline


@pytest.fixture
def offline(monkeypatch):
    """Make every download fail as it does on a machine without network."""
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    """A fresh job manager (thread workers, so no 5 s torch import per test) and a cached Shapes set."""
    import core.jobs
    from core.data import load_dataset

    monkeypatch.setenv("CNN_DASHBOARD_DATA", str(tmp_path / "data"))
    load_dataset("shapes", tmp_path / "data")
    manager = core.jobs.JobManager(max_running=1, runs_root=str(tmp_path / "runs"), worker="thread")
    monkeypatch.setattr(core.jobs, "_manager", manager)
    yield manager
    manager.shutdown()
    for job in manager.jobs():  # a stopped job's thread finishes its step (and its checkpoint) before the next test:
        if job.worker is not None and job.worker.kind == "thread":  # it would train beside it, in this process
            job.worker.handle.join(30)


# -- helpers the test files share ------------------------------------------------------------------------------

def wait_for(condition, timeout: float = 60.0, what: str = "a condition"):
    """condition()'s first true value, asked every 20 ms; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"waited {timeout} s for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """Whether process pid still runs (one that ended and waits to be reaped, a zombie, does not)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def children(pid: int, zombie: bool = False) -> list[int]:
    """Child processes of `pid` from /proc: the live ones, or (zombie=True) the ended ones nobody reaped."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and (fields[0] == "Z") == zombie:
            found.append(int(stat.parent.name))
    return found


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")  # Debian's; Playwright downloads no browser here


SERVER_LOG = [None]  # the running server's log, shown when a test times out


TEACHER_KEY = "test-teacher-key-2026"  # the servers the tests start take it (CNN_DASHBOARD_TEACHER_KEY)


def start_server(home, **env_extra: str) -> tuple:
    """A real dashboard server on a free port, its data and runs under `home`, Shapes already cached."""
    from core.data import load_dataset

    load_dataset("shapes", home / "data")  # the dataset is cached, as after a first use
    port = free_port()
    env = {**os.environ, "CNN_DASHBOARD_DATA": str(home / "data"), "CNN_DASHBOARD_RUNS": str(home / "runs"),
           "PYTHONPATH": str(ROOT), "CNN_DASHBOARD_TEACHER_KEY": TEACHER_KEY, **env_extra}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port", str(port),
                             "--server.headless", "true"], cwd=ROOT, env=env,
                            stdout=open(home / "server.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the dashboard did not start:\n" + (home / "server.log").read_text()[-3000:])
            time.sleep(0.3)


# -- after the suite: the fault probes counted, and nothing left behind ---------------------------------------

LEFT_BEHIND = ("cnn-ddp-*", "torchelastic_*")  # what a launcher or its ranks would leave in the temp folder
_RUN = {"fault": {}, "temp_before": set()}


def _temp_folders() -> set[str]:
    import tempfile

    return {p.name for pattern in LEFT_BEHIND for p in Path(tempfile.gettempdir()).glob(pattern)}


def _descendants(pid: int) -> list[int]:
    """Living processes under pid (children, their children, ...), zombies not counted."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "(gone)"


def pytest_sessionstart(session):
    _RUN["temp_before"] = _temp_folders()


def pytest_runtest_logreport(report):
    if "fault" in report.keywords and (report.when == "call" or report.outcome != "passed"):
        _RUN["fault"][report.nodeid] = report.outcome


def pytest_sessionfinish(session, exitstatus):
    """No process, non-daemon thread or temporary folder of the app's may outlive the suite: a leak fails it."""
    import threading
    import time

    def processes() -> list[str]:  # (Python's resource tracker, where a test started one, ends with the suite)
        return [f"process {pid}: {command}" for pid in _descendants(os.getpid())
                if "multiprocessing.resource_tracker" not in (command := _command(pid))]

    deadline = time.monotonic() + 15  # a process told to stop by a test's last line may take a moment
    while processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    leaks = processes()
    leaks += [f"thread {t.name}" for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
    leaks += [f"temporary folder {name}" for name in sorted(_temp_folders() - _RUN["temp_before"])]
    _RUN["leaks"] = leaks
    if leaks and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    outcomes = list(_RUN["fault"].values())
    terminalreporter.write_line(f"fault probes (hostile input, killed or stopped processes, full disks): "
                                f"{outcomes.count('passed')} passed, {outcomes.count('failed')} failed, "
                                f"{outcomes.count('skipped')} skipped")
    leaks = _RUN.get("leaks")
    if leaks is not None:  # (the summary comes after sessionfinish)
        terminalreporter.write_line("left behind after the suite: " + ("; ".join(leaks) if leaks else
                                    "no process, no non-daemon thread, no temporary folder"))

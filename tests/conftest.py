import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CIFAR_ARCHIVE = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"

# Two test processes share 2 cores, and each trains with OpenMP threads of its own (so do the servers and workers
# they start): threads that spin while they wait for work take the other process's core. Set before torch loads
# (libgomp reads it then), and inherited by every process a test starts. tests/test_train.py, 2 cores: 112 s in one
# process; 142 s in two; 110 s in two with this. No test asserts a speed.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from core.data import make_shapes  # noqa: E402


@pytest.fixture(scope="session")
def _shapes_cache(tmp_path_factory) -> Path:
    """The Shapes set generated and cached once for the test process (about 1 s each time otherwise)."""
    from core.data import load_dataset, shapes_cache

    data = tmp_path_factory.mktemp("shapes-once")
    load_dataset("shapes", data)
    return shapes_cache(data)


def cache_shapes(data_dir: Path, made: Path) -> None:
    """A data folder with the Shapes cache in it, as after a first use: a copy of the one made for the session."""
    import shutil

    from core.data import shapes_cache

    target = shapes_cache(data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(made, target)


@pytest.fixture
def shapes_dir(tmp_path, _shapes_cache):
    """A data folder with the Shapes set cached in it, as the dashboard would have it after a first use."""
    cache_shapes(tmp_path / "data", _shapes_cache)
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


def cfg(data_dir, **kw):
    """A TrainConfig for a short Shapes job: 1 epoch at batch 64, a loss point every 5 steps."""
    from core.config import TrainConfig

    base = dict(dataset="shapes", data_dir=data_dir, epochs=1, batch_size=64, lr=0.01, log_interval=5)
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def manager(tmp_path):
    """A job manager of thread workers (no torch import per job), one job at a time."""
    from core.jobs import JobManager

    m = JobManager(max_running=1, runs_root=str(tmp_path / "runs"), worker="thread")
    yield m
    m.shutdown()


@pytest.fixture
def app_env(tmp_path, monkeypatch, _shapes_cache):
    """A fresh job manager (thread workers, so no 5 s torch import per test) and a cached Shapes set."""
    import core.jobs

    monkeypatch.setenv("CNN_DASHBOARD_DATA", str(tmp_path / "data"))
    cache_shapes(tmp_path / "data", _shapes_cache)
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


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run_main(main, *argv) -> Ran:
    """A command's main(argv) run in this process, as its `python -m` would run it: its exit code and what it
    printed. For a test that checks only what a command prints and returns: no second Python, no torch import."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code if isinstance(exc.code, int) else 1
    return Ran(code, out.getvalue(), err.getvalue())


def holds_for(condition, seconds: float, what: str) -> None:
    """Asserts that condition() stays true for `seconds`, asked every 20 ms: a check that something does NOT
    happen (a paused job adds no loss point), where no event says the watch is over. Not a wait for an outcome:
    those use wait_for."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition(), f"{what} stopped holding after {seconds - (deadline - time.monotonic()):.2f} s"
        time.sleep(0.02)


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
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PROJECTOR = {"width": 1280, "height": 720}  # a classroom projector's viewport

TEACHER_KEY = "test-teacher-key-2026"  # the servers the tests start take it (CNN_DASHBOARD_TEACHER_KEY)


@dataclass
class Server:
    """A real dashboard server: its address, its home (data/, runs/, server.log) and its process."""

    url: str
    home: Path
    proc: subprocess.Popen

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        _SERVERS.pop(self.url, None)


_SERVERS: dict[str, Server] = {}  # the servers this test process started, by address: a page's log is its server's


def server_log(address: str) -> str:
    """The end of the log of the server that serves `address` (a page's URL): for a test that timed out."""
    found = [s for url, s in _SERVERS.items() if address.startswith(url)]
    return found[0].log.read_text()[-3000:] if found else f"(no server of this test run serves {address})"


def start_server(home: Path, **env_extra: str) -> Server:
    """A real dashboard server on a free port, its data and runs under `home`, Shapes already cached."""
    from core.data import load_dataset

    load_dataset("shapes", home / "data")  # the dataset is cached, as after a first use
    port = free_port()
    env = {**os.environ, "CNN_DASHBOARD_DATA": str(home / "data"), "CNN_DASHBOARD_RUNS": str(home / "runs"),
           "PYTHONPATH": str(ROOT), "CNN_DASHBOARD_TEACHER_KEY": TEACHER_KEY, **env_extra}
    with open(home / "server.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port",
                                 str(port), "--server.headless", "true"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", home, proc)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2)
            _SERVERS[server.url] = server
            return server
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                proc.wait(10)
                pytest.fail("the dashboard did not start:\n" + server.log.read_text()[-3000:])
            time.sleep(0.3)


@pytest.fixture
def own_server(tmp_path):
    """A dashboard server of the test's own, for a test that needs a fresh one (its first loads, its uploads)."""
    servers = []

    def start(home: Path | None = None, **env_extra: str) -> Server:
        servers.append(start_server(home or tmp_path / f"server{len(servers) + 1}", **env_extra))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The dashboard server the browser tests share (one per test process): one job at a time, as on 2 cores.

    Tests on it find their own run by what they started (tests/web.py: newest_run), not by the folder's size."""
    server = start_server(tmp_path_factory.mktemp("dashboard"), CNN_DASHBOARD_MAX_JOBS="1")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole run (each test opens its own context: its own cookies)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install "
                                   "playwright)")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    import threading

    before = set(children(os.getpid())), set(threading.enumerate())
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_FLAGS)
        hold_started(*before)  # Playwright's driver and its thread, Chromium under the driver
        yield b
        b.close()


@pytest.fixture
def projector(browser):
    """A fresh browser context (its own cookie) at a projector's 1280x720, and a page in it."""
    context = browser.new_context(viewport=PROJECTOR, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


# -- after each test: nothing left behind; after the suite: the fault probes and the skips counted ---------------
#
# Every test process (the one pytest, or each pytest-xdist worker) keeps its temporary files in a folder of its own
# (TMPDIR), so what a test leaves there is its own, whichever test runs beside it in the other worker. After each
# test: no process it started is still alive, no non-daemon thread, no launcher's temporary folder; a leak is an
# error at that test's teardown, naming it. Processes of the session's fixtures (the shared server and what it
# starts, Chromium) are theirs, not the test's.

LEFT_BEHIND = ("cnn-ddp-*", "torchelastic_*")  # what a launcher or its ranks would leave in the temp folder
_RUN = {"fault": {}, "tmpdir": None}
_HELD: set[int] = set()  # pids of processes a session fixture holds (each with its children)
_HELD_THREADS: set = set()  # and its threads


def _temp_folders() -> set[str]:
    import tempfile

    return {p.name for pattern in LEFT_BEHIND for p in Path(tempfile.gettempdir()).glob(pattern)}


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def _descendants(pid: int, exempt: set[int] = frozenset()) -> list[int]:
    """Living processes under pid (children, their children, ...), zombies not counted, nor anything under a pid
    in `exempt`."""
    parents: dict[int, list[int]] = {}
    for child, (parent, state) in _process_table().items():
        if state != "Z":
            parents.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in exempt:
                found.append(child)
                todo.append(child)
    return found


def hold_started(children_before: set[int], threads_before: set) -> None:
    """A session fixture's processes and threads: those of this process that were not there before it started."""
    import threading

    _HELD.update(set(children(os.getpid())) - children_before)
    _HELD_THREADS.update(set(threading.enumerate()) - threads_before)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "(gone)"


def _leaks(threads_before: set, temp_before: set[str]) -> tuple[list[int], list, list[str]]:
    """What the test left: living processes under this one (not a session fixture's), non-daemon threads and the
    launchers' temporary folders that were not there before it."""
    import threading

    held = _HELD | {s.proc.pid for s in _SERVERS.values()}
    pids = [pid for pid in _descendants(os.getpid(), held)
            if "multiprocessing.resource_tracker" not in _command(pid)]
    threads = [t for t in threading.enumerate()
               if not t.daemon and t is not threading.main_thread() and t not in threads_before | _HELD_THREADS
               and not t.name.startswith("asyncio_")]  # the session's Playwright loop's pool, made when it needs one
    return pids, threads, sorted(_temp_folders() - temp_before)


@pytest.fixture(scope="session")
def _machine_locks(tmp_path_factory) -> tuple[Path, Path]:
    """Two lock files that every test process of this run shares (pytest-xdist's workers: the parent folder of
    their own temporary folders)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return shared / "machine.turnstile", shared / "machine.lock"


@pytest.fixture(autouse=True)
def machine_share(request, _machine_locks):
    """A test marked `serial` has the machine to itself: it waits until the tests running beside it end, and the
    others wait until it ends (readers and a writer, with a turnstile so that a waiting serial test is not starved).
    On one test process this costs nothing."""
    import fcntl

    turnstile_path, lock_path = _machine_locks
    serial = request.node.get_closest_marker("serial") is not None
    with open(turnstile_path, "a") as turnstile, open(lock_path, "a") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)  # a serial test holds it while it waits: no test starts meanwhile
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if serial else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_MAIN = sys.modules["__main__"]


@pytest.fixture(autouse=True)
def main_module_kept():
    """A page run in this process (AppTest) runs its script as `__main__` and leaves it there; a later test's
    multiprocessing spawn would then run that page in its children (they exit 1). Put the real one back."""
    yield
    sys.modules["__main__"] = _MAIN


@pytest.fixture(autouse=True)
def nothing_left_behind(request, machine_share):
    """Set up first, so torn down last: after the test's own fixtures have stopped what they started."""
    import shutil
    import signal
    import threading

    threads, temp = set(threading.enumerate()), _temp_folders()
    yield
    # a process told to stop by a test's last line may take a moment
    deadline = time.monotonic() + float(os.environ.get("CNN_TESTS_LEAK_GRACE", "15"))
    while any(leaks := _leaks(threads, temp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    pids, left_threads, folders = leaks
    if pids or left_threads or folders:
        said = ([f"process {pid}: {_command(pid)}" for pid in pids] + [f"thread {t.name}" for t in left_threads] +
                [f"temporary folder {name}" for name in folders])
        for pid in pids:  # said once, here, and ended: not blamed on the next test too
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _HELD_THREADS.update(left_threads)
        for name in folders:
            shutil.rmtree(Path(_RUN["tmpdir"] or "/nonexistent") / name, ignore_errors=True)
        pytest.fail(f"{request.node.nodeid} left behind: " + "; ".join(said), pytrace=False)


def pytest_configure(config):
    """This test process's own temporary folder (TMPDIR), inherited by every process a test starts."""
    import tempfile

    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return  # pytest-xdist's controller: it runs no test
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    _RUN["tmpdir"] = tempfile.mkdtemp(prefix=f"cnn-tests-{worker}-")  # short: Chromium's socket path fits
    os.environ["TMPDIR"] = _RUN["tmpdir"]
    tempfile.tempdir = None  # gettempdir() asks TMPDIR again


def pytest_unconfigure(config):
    import shutil

    if _RUN["tmpdir"]:
        shutil.rmtree(_RUN["tmpdir"], ignore_errors=True)


def pytest_runtest_logreport(report):
    if "fault" in report.keywords and (report.when == "call" or report.outcome != "passed"):
        _RUN["fault"][report.nodeid] = report.outcome


def pytest_terminal_summary(terminalreporter):
    outcomes = list(_RUN["fault"].values())
    terminalreporter.write_line(f"fault probes (hostile input, killed or stopped processes, full disks): "
                                f"{outcomes.count('passed')} passed, {outcomes.count('failed')} failed, "
                                f"{outcomes.count('skipped')} skipped")
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    terminalreporter.write_line("skipped: " + ("; ".join(f"{n} because {r}" for r, n in sorted(reasons.items()))
                                               if reasons else "none"))
    terminalreporter.write_line("left behind: checked after each test (an error at its teardown names it)")

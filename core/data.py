"""Datasets as in-memory uint8 tensors (N, C, H, W), decoded once and cached on disk.

The training loop never touches PIL or a DataLoader: it draws batches by slicing
a shuffled copy of one tensor and normalizes each batch on the device.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from core.untrusted import MAX_IMAGE_PIXELS, open_image

CACHE_VERSION = 1
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SHAPES_CLASSES = ("circle", "square", "triangle", "diamond", "ring",
                  "cross", "plus", "h-bar", "v-bar", "frame")
DATASET_LABELS = {
    "cifar10": "CIFAR-10",
    "mnist": "MNIST",
    "fashion-mnist": "Fashion-MNIST",
    "shapes": "Shapes (offline)",
    "folder": "Image folder",  # folder:PATH
    "own": "Own pictures",  # own:NAME (core/datasets.py)
}
DATASET_NAMES = {text: name for name, text in DATASET_LABELS.items()}  # what the pages show -> dataset name
OFFLINE_HINT = ("Train on the offline Shapes set instead (made on this machine), or on a folder of your own "
                "images.")

# torchvision 0.29 announces, on every call, that its image decoders move to torchcodec; they still work
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)

Progress = Callable[[str, float], None]  # (message, fraction done 0..1)


class DatasetError(RuntimeError):
    """The dataset cannot be had; the message names what to do instead."""


@dataclass
class Dataset:
    name: str
    classes: list[str]
    train_images: torch.Tensor  # uint8 (N, C, H, W)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # The tutorial's transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)): pixels go from [0, 1] to [-1, 1].
    @property
    def mean(self) -> tuple[float, ...]:
        return (0.5,) * self.channels

    @property
    def std(self) -> tuple[float, ...]:
        return (0.5,) * self.channels


def dataset_label(name: str) -> str:
    """The dataset's name as a person reads it."""
    if name.startswith("folder:"):
        return f"{DATASET_LABELS['folder']} {name[len('folder:'):]}"
    if name.startswith("own:"):
        return f"{DATASET_LABELS['own']}: {name[len('own:'):]}"
    return DATASET_LABELS.get(name, name)


# -- normalization and batches --------------------------------------------------

class Normalizer:
    """uint8 batch -> float batch, (x / 255 - mean) / std as one multiply-add on the device."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device | str = "cpu",
                 channels_last: bool = False):
        self.channels_last = channels_last  # the batch out in channels_last memory format (core.device)
        m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.scale = (1.0 / (255.0 * s)).to(device)
        self.shift = (-m / s).to(device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = torch.addcmul(self.shift, images.float(), self.scale)
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out


AUGMENT_SHIFT = 4  # pixels a random crop moves a picture at most, as torchvision's RandomCrop(32, padding=4)


def augment(images: torch.Tensor, generator: torch.Generator, shift: int = AUGMENT_SHIFT) -> torch.Tensor:
    """A batch of uint8 images (N, C, H, W), each flipped left-right or not (even odds) and cropped back to H x W
    from itself padded by `shift` black pixels on every side: torchvision's RandomHorizontalFlip and
    RandomCrop(padding=4), made for the whole batch at once by indexing, on the batch's device. `generator` (on the
    CPU) draws the flips and offsets: the same seed, the same pictures."""
    n, c, h, w = images.shape
    device = images.device
    flip = (torch.rand(n, generator=generator) < 0.5).to(device)
    dy, dx = (torch.randint(0, 2 * shift + 1, (n,), generator=generator).to(device) for _ in range(2))
    padded = torch.nn.functional.pad(images, (shift, shift, shift, shift))
    rows = dy[:, None] + torch.arange(h, device=device)
    cols = dx[:, None] + torch.arange(w, device=device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    index = (torch.arange(n, device=device)[:, None, None, None], torch.arange(c, device=device)[None, :, None, None])
    return padded[(*index, rows[:, None, :, None], cols[:, None, None, :])]


def epoch_steps(images: int, batch_size: int, ranks: int = 1) -> int:
    """Optimizer steps in an epoch of `ranks` processes with `batch_size` images each a step (see rank_batches)."""
    full, rest = divmod(images, batch_size * ranks)
    return full + (rest >= ranks)


def rank_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, generator: torch.Generator,
                 rank: int = 0, ranks: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """One epoch as this rank's share of each global batch: yields (images, labels, images in the global batch).

    Every rank draws the same permutation from the same generator; global batch k is its k-th slice of
    batch_size x ranks images, and rank r takes the r-th part of it. So a data-parallel step sees the very
    images one process would at batch_size x ranks. A last, smaller global batch is split as evenly as the
    ranks allow; with fewer images left than ranks, those few wait for the next epoch's shuffle. One gather
    of this rank's images per epoch, then every batch is a cheap slice. With one rank: the plain shuffle.
    """
    n, per_step = len(labels), batch_size * ranks
    perm = torch.randperm(n, generator=generator)
    full, rest = divmod(n, per_step)
    mine = [perm[:full * per_step].view(full, ranks, batch_size)[:, rank].reshape(-1)]
    sizes, totals = [batch_size] * full, [per_step] * full
    if rest >= ranks:
        part = perm[full * per_step:].tensor_split(ranks)[rank]
        mine.append(part)
        sizes.append(len(part))
        totals.append(rest)
    order = torch.cat(mine).to(labels.device)
    images, labels = images[order], labels[order]
    start = 0
    for size, total in zip(sizes, totals):
        yield images[start:start + size], labels[start:start + size], total
        start += size


# -- loading ----------------------------------------------------------------------

def load_dataset(name: str, data_dir: str | os.PathLike = "data", progress: Progress | None = None) -> Dataset:
    """Load a dataset by name, from the on-disk cache when it is there."""
    progress = progress or (lambda message, fraction: None)
    data_dir = Path(data_dir)
    if name.startswith("folder:"):
        folder = Path(name[len("folder:"):]).expanduser()
        cache = data_dir / "cache" / f"folder-{_unreadable_is_bad_input(_folder_signature, folder)}.pt"
        build = lambda: _unreadable_is_bad_input(_load_folder, folder, progress)
    elif name.startswith("own:"):
        own = own_dataset(data_dir, name[len("own:"):])
        cache = data_dir / "cache" / f"own-{own.signature}.pt"
        build = lambda: _load_folder(own.path, progress, size=(32, 32))
    elif name == "shapes":
        cache = shapes_cache(data_dir)
        build = lambda: make_shapes()
    elif name == "cifar10":
        cache = data_dir / "cache" / "cifar10.pt"
        build = lambda: _load_cifar10(data_dir, progress)
    elif name in ("mnist", "fashion-mnist"):
        cache = data_dir / "cache" / f"{name}.pt"
        build = lambda: _load_mnist_like(name, data_dir, progress)
    else:
        raise DatasetError(f"unknown dataset {name!r}. Choose cifar10, mnist, fashion-mnist, shapes, folder:PATH "
                           "or own:NAME.")
    cached = _read_cache(cache, name)
    if cached is not None:
        return cached
    progress(f"Preparing {dataset_label(name)} (once; later loads come from the cache)", 0.0)
    dataset = build()
    dataset.name = name
    _write_cache(cache, dataset)
    progress(f"{dataset_label(name)} ready", 1.0)
    return dataset


def shapes_cache(data_dir: str | os.PathLike) -> Path:
    """Where the generated Shapes set is cached (its version in the name)."""
    return Path(data_dir) / "cache" / f"shapes-v{SHAPES_VERSION}.pt"


def _read_cache(path: Path, name: str) -> Dataset | None:
    if not path.exists():
        return None
    try:
        blob = torch.load(path, weights_only=True, mmap=True)
        if blob.get("version") != CACHE_VERSION:
            return None
        return Dataset(name, list(blob["classes"]), blob["train_images"], blob["train_labels"],
                       blob["test_images"], blob["test_labels"])
    except Exception:  # a damaged cache is rebuilt, not fatal
        return None


def _write_cache(path: Path, d: Dataset) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = dict(version=CACHE_VERSION, classes=list(d.classes),
                train_images=d.train_images.contiguous(), train_labels=d.train_labels,
                test_images=d.test_images.contiguous(), test_labels=d.test_labels)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# -- CIFAR-10, MNIST, Fashion-MNIST through torchvision ----------------------------------

def _download(url: str, dest: Path, progress: Progress, what: str) -> None:
    """Download with a progress callback; the partial file never takes the final name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=20) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if total:
                    progress(f"Downloading {what}: {done / 1e6:.0f} of {total / 1e6:.0f} MB", done / total)
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"{what} could not be downloaded: {_reason(exc)}. " + OFFLINE_HINT) from None


_reachable: dict[str, tuple[float, bool]] = {}  # host -> (when it was checked, whether it answered)


def can_download(url: str = CIFAR10_URL, timeout: float = 2.0, remember: float = 300.0) -> bool:
    """Whether the host of `url` answers, asked at most once every `remember` seconds (a classroom without
    internet should not wait for a download that cannot start)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    checked = _reachable.get(host)
    if checked is None or time.monotonic() - checked[0] > remember:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            answered = True
        except OSError:
            answered = False
        _reachable[host] = checked = (time.monotonic(), answered)
    return checked[1]


def cifar10_on_disk(data_dir: str | os.PathLike) -> bool:
    data_dir = Path(data_dir)
    return ((data_dir / "cache" / "cifar10.pt").exists() or (data_dir / "cifar-10-batches-py").is_dir()
            or (data_dir / "cifar-10-python.tar.gz").exists())


def default_dataset(data_dir: str | os.PathLike) -> tuple[str, str]:
    """The dataset a new session starts on, and why: CIFAR-10 where it is here or can be downloaded, else
    the offline Shapes."""
    if cifar10_on_disk(data_dir):
        return "cifar10", ""
    if can_download():
        return "cifar10", ""
    return "shapes", ("CIFAR-10 is not on this machine and cannot be downloaded (no internet), so the "
                      "offline Shapes set is chosen: ten kinds of drawn shapes, made on this machine.")


def _reason(exc: BaseException) -> str:
    """Why a download failed, in a student's words."""
    cause = getattr(exc, "reason", None) or exc
    if isinstance(cause, socket.gaierror) or "Name or service not known" in str(cause):  # the latter: torchvision
        return "this computer cannot reach the internet"
    if isinstance(cause, (TimeoutError, socket.timeout)):
        return "the download server did not answer in time (a slow or missing internet connection?)"
    if isinstance(cause, ConnectionError):
        return "the connection to the download server failed"
    return "the download failed (" + (str(cause).strip() or type(cause).__name__) + ")"


def _load_cifar10(data_dir: Path, progress: Progress) -> Dataset:
    import torchvision

    if not (data_dir / "cifar-10-batches-py").is_dir():  # the tutorial's own download is used as is
        archive = data_dir / "cifar-10-python.tar.gz"
        if not archive.exists():
            _download(CIFAR10_URL, archive, progress, "CIFAR-10 (170 MB)")
        progress("Unpacking CIFAR-10", 1.0)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(data_dir, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            archive.unlink(missing_ok=True)
            raise DatasetError(f"the CIFAR-10 archive was damaged ({exc}); it was removed, try again. "
                               + OFFLINE_HINT) from None
    try:
        train = torchvision.datasets.CIFAR10(str(data_dir), train=True, download=False)
        test = torchvision.datasets.CIFAR10(str(data_dir), train=False, download=False)
    except (RuntimeError, OSError, ValueError) as exc:
        raise DatasetError(f"CIFAR-10 in {data_dir / 'cifar-10-batches-py'} could not be read ({exc}). "
                           "Delete that folder to download it again. " + OFFLINE_HINT) from None
    to_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    return Dataset("cifar10", list(CIFAR10_CLASSES), to_tensor(train.data), torch.tensor(train.targets),
                   to_tensor(test.data), torch.tensor(test.targets))


def _load_mnist_like(name: str, data_dir: Path, progress: Progress) -> Dataset:
    import torchvision

    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.FashionMNIST
    progress(f"Downloading {dataset_label(name)} (about 30 MB)", 0.0)
    try:
        train = cls(str(data_dir), train=True, download=True)
        test = cls(str(data_dir), train=False, download=True)
    except (RuntimeError, OSError) as exc:
        raise DatasetError(f"{dataset_label(name)} could not be downloaded: {_reason(exc)}. " + OFFLINE_HINT) from None
    classes = [c.split(" - ")[-1] for c in train.classes]
    return Dataset(name, classes, train.data.unsqueeze(1).contiguous(), train.targets.long(),
                   test.data.unsqueeze(1).contiguous(), test.targets.long())


# -- image folders (torchvision ImageFolder layout) ----------------------------------

def _class_dirs(split: Path) -> list[Path]:
    return sorted((p for p in split.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _folder_signature(folder: Path) -> str:
    """Cheap fingerprint of a folder's contents: path plus the modification times of its class folders."""
    _check_folder_layout(folder)
    parts = [str(folder.resolve())]
    for split in ("train", "test"):
        for d in _class_dirs(folder / split):
            parts.append(f"{split}/{d.name}:{d.stat().st_mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def _unreadable_is_bad_input(function, folder: Path, *args):
    """A folder the user gave that cannot be listed or read (no permission, a broken link) is bad input."""
    try:
        return function(folder, *args)
    except OSError as exc:
        where = exc.filename or folder
        raise DatasetError(f"{where} cannot be read ({exc.strerror or exc}); check the folder and its "
                           "permissions.") from None


def check_folder(path: str | os.PathLike) -> None:
    """Fail fast, with the reason, when a folder cannot be an image dataset (before any job starts)."""
    _unreadable_is_bad_input(_check_folder, Path(path).expanduser())


def folder_classes(path: str | os.PathLike) -> list[str]:
    """An image folder's class names (its train/ sub-folders), checked as check_folder does: DatasetError, with
    the reason, where it cannot be an image dataset."""
    folder = Path(path).expanduser()
    _unreadable_is_bad_input(_check_folder, folder)
    return _unreadable_is_bad_input(lambda f: [d.name for d in _class_dirs(f / "train")], folder)


def _check_folder(folder: Path) -> None:
    _check_folder_layout(folder)
    if not _has_images(folder / "train") or not _has_images(folder / "test"):
        raise DatasetError(f"{folder} has no images in train/ or test/ ({', '.join(sorted(IMAGE_SUFFIXES))}).")


def _check_folder_layout(folder: Path) -> None:
    hint = ("An image folder needs train/ and test/ sub-folders with one folder per class inside each "
            "(the torchvision ImageFolder layout). ")
    if not folder.is_dir():
        raise DatasetError(f"there is no folder {folder}. " + hint)
    for split in ("train", "test"):
        if not (folder / split).is_dir():
            raise DatasetError(f"image folder {folder} has no {split}/ sub-folder. " + hint)
    train_classes = [d.name for d in _class_dirs(folder / "train")]
    test_classes = [d.name for d in _class_dirs(folder / "test")]
    if not train_classes:
        raise DatasetError(f"{folder / 'train'} has no class folders. " + hint)
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise DatasetError(f"the classes in train/ and test/ of {folder} differ "
                           f"(only in train: {only_train or 'none'}; only in test: {only_test or 'none'}).")
    if len(train_classes) < 2:
        raise DatasetError(f"{folder} has only one class; a classifier needs at least two.")


def _is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def _has_images(split: Path) -> bool:
    """Any image file in a class folder of `split`, found without listing them all (60,000 for CIFAR-10:
    half a second of the server's time on every click of Train)."""
    for d in _class_dirs(split):
        with os.scandir(d) as entries:
            if any(_is_image(e.name) for e in entries):
                return True
    return False


def _list_images(split: Path) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for index, d in enumerate(_class_dirs(split)):
        names = sorted(f for f in os.listdir(d) if _is_image(f))
        files += [d / f for f in names]
        labels += [index] * len(names)
    return files, labels




def _decode(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """One image file -> uint8 (3, H, W) at `size` (h, w).

    Decoded by Pillow, whose decoders turn corrupt data into an exception: torchvision's PNG decoder
    crashed the whole process (SIGSEGV) on a PNG with one flipped byte. An unreadable file stops the
    load with a DatasetError that names it.
    """
    from torchvision.transforms.v2.functional import resize

    image = _decode_with_pil(path)
    if tuple(image.shape[1:]) != size:
        image = resize(image, list(size), antialias=True)
    return image


def _regular_file(path: Path):
    """The file opened for reading, if it is a regular file. Opened without waiting and checked before a byte is
    read: a FIFO named x.png would otherwise block the load (and a server thread) for ever."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DatasetError(f"{path} is not a regular file (a pipe, a device or a socket); remove it.")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _decode_with_pil(path: Path) -> torch.Tensor:
    with _regular_file(path) as f:
        rgb = open_image(f, str(path), MAX_IMAGE_PIXELS, error=_BadImage)
    pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    return pixels.view(rgb.height, rgb.width, 3).permute(2, 0, 1)


class _BadImage(DatasetError):
    """An image of a folder that cannot be read: the load stops, naming it and what to do."""

    def __init__(self, message: str):
        super().__init__(f"{message}; remove it or replace it.")


def own_dataset(data_dir: str | os.PathLike, name: str):
    """Own dataset `name` (core/datasets.py), once it can train: DatasetError saying what is missing."""
    from core.datasets import OwnError, get_own

    try:
        dataset = get_own(data_dir, name)
    except OwnError as exc:
        raise DatasetError(f"{exc}. Make it on the Own pictures page, or import its zip there.") from None
    if not dataset.ready:
        raise DatasetError(f"own dataset {name} cannot train yet. {dataset.missing_line()}")
    return dataset


def dataset_version(name: str, data_dir: str | os.PathLike) -> str:
    """What changes when a dataset's images do, for a cache of loaded datasets: an own dataset's pictures (its
    class's pictures come and go on the Own pictures page); "" for the others."""
    if not name.startswith("own:"):
        return ""
    from core.datasets import OwnError, get_own

    try:
        return get_own(data_dir, name[len("own:"):]).signature
    except (OwnError, OSError):  # gone, or changing as it is listed: the page says so when it loads it
        return ""


def _load_folder(folder: Path, progress: Progress, size: tuple[int, int] | None = None) -> Dataset:
    _check_folder_layout(folder)
    train_files, train_labels = _list_images(folder / "train")
    test_files, test_labels = _list_images(folder / "test")
    if not train_files or not test_files:
        empty = "train/" if not train_files else "test/"
        raise DatasetError(f"{folder / empty} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    # import torchvision's resize here, once: a first import racing in the pool's threads can fail
    # half-way ("partially initialized module"); seen with torchvision 0.26
    import torchvision.transforms.v2.functional  # noqa: F401

    if size is None:  # keep the images' own size when it suits the network, else the tutorial's 32x32
        height, width = _decode_with_pil(train_files[0]).shape[1:]
        size = (height, width) if height == width and 16 <= height <= 64 else (32, 32)
    all_files = train_files + test_files
    out = torch.empty(len(all_files), 3, *size, dtype=torch.uint8)
    chunk = 5000
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for start in range(0, len(all_files), chunk):
            part = all_files[start:start + chunk]
            for i, image in enumerate(pool.map(lambda p: _decode(p, size), part)):
                out[start + i] = image
            progress(f"Decoding images: {start + len(part)} of {len(all_files)}", (start + len(part)) / len(all_files))
    n = len(train_files)
    return Dataset(f"folder:{folder}", [d.name for d in _class_dirs(folder / "train")],
                   out[:n].clone(), torch.tensor(train_labels), out[n:].clone(), torch.tensor(test_labels))


# -- shapes: a synthetic set that needs no network -------------------------------------

SHAPES_VERSION = 2  # part of the cache's name: a new drawing is never mixed up with a cached old one


def make_shapes(num_train: int = 10000, num_test: int = 2000, size: int = 32, seed: int = 0) -> Dataset:
    """Ten classes of drawn shapes, 32x32 RGB: a light shape on a dark background, with random colours,
    size, position and a tilt of up to 30 degrees either way.

    Made to teach offline: with the tutorial's settings the network learns visibly within its first
    epoch and ends near 85%, not 100%, so per-class accuracy and the confusion matrix have something to
    show. The tilt makes some pairs truly ambiguous (a square tilted 30 degrees one way is a diamond
    tilted 15 degrees the other; a cross and a plus likewise). Deterministic for a seed, generated in
    a few hundred milliseconds with tensor operations.
    """
    g = torch.Generator().manual_seed(seed)
    train_x, train_y = _draw_shapes(num_train, size, g)
    test_x, test_y = _draw_shapes(num_test, size, g)
    return Dataset("shapes", list(SHAPES_CLASSES), train_x, train_y, test_x, test_y)


def _radius(dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    return (dx**2 + dy**2).sqrt()


# Each shape as a test on pixel offsets from its centre, in units of its half-size:
# (|dx|, |dy|, dx, dy) -> inside?
_SHAPE_MASKS = (
    lambda ax, ay, dx, dy: _radius(dx, dy) <= 1,                                      # circle
    lambda ax, ay, dx, dy: torch.maximum(ax, ay) <= 0.8,                              # square
    lambda ax, ay, dx, dy: (dy <= 0.7) & (dy >= 2 * ax - 1),                          # triangle
    lambda ax, ay, dx, dy: ax + ay <= 1,                                              # diamond
    lambda ax, ay, dx, dy: (_radius(dx, dy) <= 1) & (_radius(dx, dy) >= 0.6),        # ring
    lambda ax, ay, dx, dy: ((ax - ay).abs() <= 0.28) & (torch.maximum(ax, ay) <= 1),  # cross (x)
    lambda ax, ay, dx, dy: ((ax <= 0.25) | (ay <= 0.25)) & (torch.maximum(ax, ay) <= 1),  # plus
    lambda ax, ay, dx, dy: (ay <= 0.3) & (ax <= 1),                                   # horizontal bar
    lambda ax, ay, dx, dy: (ax <= 0.3) & (ay <= 1),                                   # vertical bar
    lambda ax, ay, dx, dy: (torch.maximum(ax, ay) <= 1) & (torch.maximum(ax, ay) >= 0.65),  # frame
)
MAX_TILT_DEGREES = 30.0


def _draw_shapes(n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(n) % len(SHAPES_CLASSES)
    labels = labels[torch.randperm(n, generator=g)]
    rand = lambda *shape: torch.rand(*shape, generator=g)
    r = (0.22 + 0.15 * rand(n)) * size  # half-size of the shape in pixels
    cx = r + (size - 2 * r) * rand(n)
    cy = r + (size - 2 * r) * rand(n)
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    dx = (coords.view(1, 1, -1) - cx.view(-1, 1, 1)) / r.view(-1, 1, 1)  # in units of r
    dy = (coords.view(1, -1, 1) - cy.view(-1, 1, 1)) / r.view(-1, 1, 1)
    dx, dy = dx.expand(n, size, size), dy.expand(n, size, size)
    tilt = ((rand(n) * 2 - 1) * MAX_TILT_DEGREES * torch.pi / 180).view(-1, 1, 1)
    dx, dy = tilt.cos() * dx + tilt.sin() * dy, tilt.cos() * dy - tilt.sin() * dx
    mask = torch.zeros(n, size, size, dtype=torch.bool)
    for k, draw in enumerate(_SHAPE_MASKS):
        idx = (labels == k).nonzero().squeeze(1)
        x, y = dx[idx], dy[idx]
        mask[idx] = draw(x.abs(), y.abs(), x, y)
    mask = mask.unsqueeze(1).float()  # (n, 1, H, W)
    background = 0.35 * rand(n, 3, 1, 1)  # dark
    # a lighter shape, at least 0.4 brighter in every channel, so it always stands out
    foreground = torch.maximum(background + 0.4 + 0.6 * rand(n, 3, 1, 1) * (1 - background), background + 0.4)
    noise = 0.06 * torch.randn(n, 3, size, size, generator=g)
    img = background + mask * (foreground.clamp(0, 1) - background) + noise
    return (img.clamp(0, 1) * 255).round().to(torch.uint8), labels

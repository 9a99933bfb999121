"""Own datasets: pictures a class brings, named and sorted into classes, kept as an image folder the app trains on.

    create_own(data_dir, "fruit", ["apple", "banana", "cherry"])
    add_pictures(data_dir, "fruit", "apple", [(filename, bytes), ...])   -> Added(added, problems)
    remove_picture(data_dir, "fruit", "apple", picture_id)
    export_own(data_dir, "fruit") -> zip bytes;  import_own(data_dir, zip bytes, name=None) -> Added
    add_zip(data_dir, "fruit", zip bytes) -> Added                        a zip of class folders, into the classes
    python -m core.datasets [--data-dir DIR] list [--json] | import FILE.zip [--name NAME] | export NAME -o FILE.zip
                                             | delete NAME --yes

On disk, `DIR/own/<name>/` is the torchvision ImageFolder layout (`train/<class>/`, `test/<class>/`), so
`--dataset own:NAME` and `--dataset folder:DIR/own/NAME` train on the same pictures. Each picture is decoded on the
way in (core.untrusted.open_image: the pixel count checked from its header, corrupt data an exception), shrunk to
at most PICTURE_SIDE pixels a side and kept as PNG under the name of its content's hash (the same picture twice is
one picture). The split into train and test is made again after every change, per class, with a fixed seed: the
same pictures give the same split on every machine.

Every file taken in is hostile until checked: one line per picture that cannot be used (it is left out, the rest
are kept); a zip that cannot be one (a bomb, names that leave the folder, links, too many files) is refused whole.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import re
import shutil
import sys
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable

from core.cli import ArgParser, exit_code
from core.untrusted import UntrustedError, megabytes, read_capped, read_member, zip_members

MIN_CLASSES, MAX_CLASSES = 2, 10
MIN_PICTURES = 10  # per class, before the dataset can train (2 of them go to test at the 80/20 split)
MAX_PICTURES = 500  # per class
MAX_UPLOAD = 200  # pictures in one upload (a class's worth at a time)
MAX_PICTURE_BYTES = 20 * 2**20  # one file as uploaded
MAX_DATASET_BYTES = 100 * 2**20  # a dataset on disk, its pictures as kept
MAX_ZIP_BYTES = 200 * 2**20  # a dataset zip, packed
MAX_ZIP_UNPACKED = 400 * 2**20
MAX_DATASETS = 50  # on one server
PICTURE_SIDE = 256  # kept at most this many pixels a side: enough to see, and 32x32 is what the network takes
TEST_SHARE = 0.2
SPLIT_SEED = 0
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}")
NAME_RULE_TEXT = "1 to 40 letters, digits, spaces, '-', '_' or '.', starting with a letter or digit"
CAPS_TEXT = (f"{MIN_CLASSES} to {MAX_CLASSES} classes; {MIN_PICTURES} to {MAX_PICTURES} pictures a class; at most "
             f"{MAX_UPLOAD} pictures an upload, {megabytes(MAX_PICTURE_BYTES)} a file and "
             f"{megabytes(MAX_DATASET_BYTES)} a dataset as kept; {MAX_DATASETS} datasets on a server")
INFO = "dataset.json"

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class OwnError(UntrustedError):
    """Something about an own dataset that cannot be done; the message says why in one line."""


@dataclass
class Picture:
    id: str  # the hash its file is named by
    path: Path
    split: str  # "train" or "test"


@dataclass
class OwnDataset:
    name: str
    path: Path
    classes: list[str]
    pictures: dict[str, list[Picture]] = field(default_factory=dict)  # class -> its pictures, by id

    @property
    def signature(self) -> str:
        """Its place and its pictures, by class, split and id: any picture added, removed or moved gives another (a
        loaded dataset's cache is named by it)."""
        names = sorted(f"{p.split}/{cls}/{p.id}" for cls, pictures in self.pictures.items() for p in pictures)
        return hashlib.sha1("\n".join([str(self.path.resolve()), *names]).encode()).hexdigest()[:16]

    @property
    def size(self) -> int:
        """Bytes on disk: its pictures'."""
        return sum(p.path.stat().st_size for pictures in self.pictures.values() for p in pictures)

    def count(self, cls: str, split: str | None = None) -> int:
        return sum(1 for p in self.pictures.get(cls, []) if split is None or p.split == split)

    def missing(self) -> dict[str, int]:
        """How many pictures each class still needs before the dataset can train."""
        return {c: MIN_PICTURES - self.count(c) for c in self.classes if self.count(c) < MIN_PICTURES}

    @property
    def ready(self) -> bool:
        return len(self.classes) >= MIN_CLASSES and not self.missing()

    def missing_line(self) -> str:
        """'' when it can train, else what is still missing, in one line."""
        if len(self.classes) < MIN_CLASSES:
            return f"Add at least {MIN_CLASSES - len(self.classes)} more class(es): a classifier needs {MIN_CLASSES}."
        missing = self.missing()
        if not missing:
            return ""
        return ("Still missing: " + ", ".join(f"{n} picture{'s' if n != 1 else ''} of {c}" for c, n in missing.items())
                + f" (each class needs {MIN_PICTURES}).")

    def summary(self) -> dict:
        return {"name": self.name, "classes": {c: {"train": self.count(c, "train"), "test": self.count(c, "test")}
                                               for c in self.classes},
                "pictures": sum(self.count(c) for c in self.classes), "bytes": self.size, "ready": self.ready,
                "missing": self.missing_line()}


@dataclass
class Added:
    dataset: OwnDataset
    added: int = 0
    problems: list[str] = field(default_factory=list)  # one line per picture left out


# -- names ------------------------------------------------------------------------------------------------------

def check_name(name: str, what: str = "a dataset's name") -> str:
    """A dataset's or class's name as given, stripped, or OwnError: it becomes a folder's name, so nothing that could
    leave the folder (`../`, `/`) or be read as markup (`<b>`) gets through."""
    text = name.strip() if isinstance(name, str) else ""
    if not NAME_RULE.fullmatch(text) or ".." in text:
        raise OwnError(f"{str(name)[:40]!r} cannot be {what}: use {NAME_RULE_TEXT}")
    return text


def own_root(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "own"


def own_path(data_dir: str | os.PathLike, name: str) -> Path:
    """The folder of own dataset `name` (checked as a name first): what `--dataset folder:` would take."""
    return own_root(data_dir) / check_name(name)


def _lock(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(path.resolve()), threading.Lock())


# -- reading ------------------------------------------------------------------------------------------------------

def list_own(data_dir: str | os.PathLike) -> list[OwnDataset]:
    """Every own dataset on this server, by name; a folder that is not one is left out."""
    root = own_root(data_dir)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.iterdir(), key=lambda p: p.name.lower()):
        if path.is_dir() and not path.name.startswith(".") and (path / INFO).is_file():
            try:
                found.append(_read(path))
            except OwnError:
                continue
    return found


def own_names(data_dir: str | os.PathLike) -> list[str]:
    """The own datasets' names, without reading their pictures (what a Dataset control lists on every page run)."""
    root = own_root(data_dir)
    if not root.is_dir():
        return []
    return sorted((p.name for p in root.iterdir() if not p.name.startswith(".") and (p / INFO).is_file()),
                  key=str.lower)


def get_own(data_dir: str | os.PathLike, name: str) -> OwnDataset:
    path = own_path(data_dir, name)
    if not (path / INFO).is_file():
        raise OwnError(f"there is no own dataset {name!r} in {own_root(data_dir)}")
    return _read(path)


def _read(path: Path) -> OwnDataset:
    try:
        info = json.loads((path / INFO).read_text(encoding="utf-8"))
        classes = [check_name(c, "a class's name") for c in info["classes"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OwnError(f"{path.name} is damaged ({exc})") from None
    dataset = OwnDataset(path.name, path, classes)
    for cls in classes:  # listed, not opened or stat()ed: the Lessons page lists every dataset on every run
        pictures = []
        for split in ("train", "test"):
            folder = path / split / cls
            if folder.is_dir():
                with os.scandir(folder) as entries:
                    pictures += [Picture(e.name[:-len(".png")], Path(e.path), split) for e in entries
                                 if e.name.endswith(".png") and e.is_file()]
        dataset.pictures[cls] = sorted(pictures, key=lambda p: p.id)
    return dataset


# -- making and changing -------------------------------------------------------------------------------------------

def _unique_classes(classes: Iterable[str]) -> list[str]:
    names = [check_name(c, "a class's name") for c in classes]
    lowered = [n.lower() for n in names]
    twice = sorted({n for n in names if lowered.count(n.lower()) > 1})
    if twice:
        raise OwnError(f"two classes are named {twice[0]!r}: each class needs a name of its own")
    if len(names) > MAX_CLASSES:
        raise OwnError(f"{len(names)} classes is more than a dataset here takes ({MAX_CLASSES})")
    return names


def create_own(data_dir: str | os.PathLike, name: str, classes: Iterable[str]) -> OwnDataset:
    """A new, empty own dataset with these classes (2 to 10, each named once)."""
    name = check_name(name)
    names = _unique_classes(classes)
    root = own_root(data_dir)
    existing = own_names(data_dir)
    if name.lower() in (n.lower() for n in existing):
        raise OwnError(f"there is already an own dataset named {name!r}: choose another name, or delete it first")
    if len(existing) >= MAX_DATASETS:
        raise OwnError(f"this server keeps at most {MAX_DATASETS} own datasets: delete one first")
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    _write_info(path, names)
    return _read(path)


def _write_info(path: Path, classes: list[str]) -> None:
    for split in ("train", "test"):
        for cls in classes:
            (path / split / cls).mkdir(parents=True, exist_ok=True)
    tmp = path / f".{INFO}.tmp"
    tmp.write_text(json.dumps({"classes": classes, "test_share": TEST_SHARE, "split_seed": SPLIT_SEED}),
                   encoding="utf-8")
    os.replace(tmp, path / INFO)


def add_class(data_dir: str | os.PathLike, name: str, cls: str) -> OwnDataset:
    dataset = get_own(data_dir, name)
    with _lock(dataset.path):
        names = _unique_classes([*dataset.classes, cls])
        _write_info(dataset.path, names)
    return _read(dataset.path)


def remove_class(data_dir: str | os.PathLike, name: str, cls: str) -> OwnDataset:
    """A class and its pictures, gone."""
    dataset = get_own(data_dir, name)
    if cls not in dataset.classes:
        raise OwnError(f"{name} has no class {cls!r}")
    with _lock(dataset.path):
        _write_info(dataset.path, [c for c in dataset.classes if c != cls])
        for split in ("train", "test"):
            shutil.rmtree(dataset.path / split / cls, ignore_errors=True)
    return _read(dataset.path)


def keep_picture(source: bytes, name: str) -> tuple[str, bytes]:
    """One picture a user gave, checked and decoded (core.untrusted.open_image), shrunk to at most PICTURE_SIDE a
    side, its middle square: (its id, the PNG kept). OwnError naming the file when it cannot be a picture."""
    if len(source) > MAX_PICTURE_BYTES:
        raise OwnError(f"{name} is {megabytes(len(source))}, more than a picture here takes "
                       f"({megabytes(MAX_PICTURE_BYTES)})")
    image = _open(source, name)
    side = min(image.size)  # the square the network sees (32x32 of it), from the middle, as Results' photo box does
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    image.thumbnail((PICTURE_SIDE, PICTURE_SIDE))
    out = io.BytesIO()
    image.save(out, "PNG", optimize=False)
    kept = out.getvalue()
    return hashlib.sha256(kept).hexdigest()[:16], kept


def _open(source: bytes, name: str):
    from core.untrusted import open_image

    return open_image(source, name, error=OwnError)


def add_pictures(data_dir: str | os.PathLike, name: str, cls: str, files: Iterable[tuple[str, bytes]]) -> Added:
    """Pictures into a class: each checked on its own (one line for each left out, the rest kept), the split made
    again."""
    dataset = get_own(data_dir, name)
    if cls not in dataset.classes:
        raise OwnError(f"{name} has no class {cls!r}")
    files = list(files)
    if len(files) > MAX_UPLOAD:
        raise OwnError(f"{len(files):,} pictures in one upload is more than this app takes ({MAX_UPLOAD}): upload "
                       "them in parts, or as a zip of class folders")
    with _lock(dataset.path):
        return _add(dataset, cls, files)


def _add(dataset: OwnDataset, cls: str, files: Iterable[tuple[str, bytes]]) -> Added:
    """Each (file name, bytes) into the class, one at a time (an import's are read from its zip as they come)."""
    result = Added(dataset)
    have = {p.id for p in dataset.pictures.get(cls, [])}
    size = dataset.size
    for filename, data in files:
        shown = Path(str(filename)).name[:80] or "a picture"
        if len(have) >= MAX_PICTURES:
            result.problems.append(f"{shown}: {cls} holds {MAX_PICTURES} pictures, the most a class takes here")
            continue
        try:
            picture_id, kept = keep_picture(data, shown)
        except OwnError as exc:
            result.problems.append(str(exc))
            continue
        if picture_id in have:
            result.problems.append(f"{shown} is already in {cls}")
            continue
        if size + len(kept) > MAX_DATASET_BYTES:
            result.problems.append(f"{shown}: the dataset would take more than {megabytes(MAX_DATASET_BYTES)}")
            continue
        target = dataset.path / "train" / cls / f"{picture_id}.png"
        tmp = target.with_name(f".{picture_id}.tmp")
        tmp.write_bytes(kept)
        os.replace(tmp, target)
        have.add(picture_id)
        size += len(kept)
        result.added += 1
    _split(dataset.path, cls)
    result.dataset = _read(dataset.path)
    return result


def remove_picture(data_dir: str | os.PathLike, name: str, cls: str, picture_id: str) -> OwnDataset:
    dataset = get_own(data_dir, name)
    with _lock(dataset.path):
        for picture in dataset.pictures.get(cls, []):
            if picture.id == picture_id:
                picture.path.unlink(missing_ok=True)
                _split(dataset.path, cls)
                return _read(dataset.path)
    raise OwnError(f"{name}/{cls} has no picture {picture_id!r} (removed already?)")


def split_of(ids: list[str], cls: str) -> dict[str, str]:
    """Which pictures of a class are for testing: TEST_SHARE of them (rounded, at least 1 of 2 or more), drawn with
    a fixed seed from the sorted ids, so the same pictures split the same way everywhere."""
    ids = sorted(ids)
    tests = round(len(ids) * TEST_SHARE) if len(ids) >= 2 else 0
    tests = max(tests, 1) if len(ids) >= 2 else 0
    order = ids[:]
    random.Random(f"{SPLIT_SEED}:{cls}").shuffle(order)
    chosen = set(order[:tests])
    return {i: "test" if i in chosen else "train" for i in ids}


def _split(path: Path, cls: str) -> None:
    where = {f.stem: split for split in ("train", "test") if (path / split / cls).is_dir()
             for f in (path / split / cls).glob("*.png")}
    for picture_id, split in split_of(list(where), cls).items():
        if where[picture_id] != split:
            os.replace(path / where[picture_id] / cls / f"{picture_id}.png", path / split / cls / f"{picture_id}.png")


def delete_own(data_dir: str | os.PathLike, name: str) -> None:
    dataset = get_own(data_dir, name)
    with _lock(dataset.path):
        gone = dataset.path.with_name(f".deleting-{dataset.name}")
        os.replace(dataset.path, gone)
        shutil.rmtree(gone, ignore_errors=True)


# -- sharing: a zip of class folders ----------------------------------------------------------------------------------

def export_own(data_dir: str | os.PathLike, name: str) -> bytes:
    """The dataset as a zip: train/<class>/ and test/<class>/, its pictures as kept."""
    dataset = get_own(data_dir, name)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:  # PNGs are packed already
        for cls in dataset.classes:
            for split in ("train", "test"):
                zf.writestr(f"{split}/{cls}/", b"")
            for picture in dataset.pictures[cls]:
                zf.write(picture.path, f"{picture.split}/{cls}/{picture.id}.png")
    return out.getvalue()


def _zip_layout(names: list[PurePosixPath]) -> dict[str, list[str]]:
    """Class -> the zip's member names of its pictures: one folder per class, or train/ and test/ with a folder per
    class inside, either maybe inside one top folder (a zipped folder). OwnError where it is neither."""
    parts = [p.parts for p in names]
    tops = {p[0] for p in parts}
    if len(tops) == 1 and all(len(p) >= 3 for p in parts) and not tops & {"train", "test"}:
        parts = [p[1:] for p in parts]  # a top folder around it all
    split = all(len(p) == 3 and p[0] in ("train", "test") for p in parts)
    classes: dict[str, list[str]] = {}
    for original, p in zip(names, parts):
        if not split and len(p) != 2:
            raise OwnError(f"{original} is not in a class folder: a dataset zip holds one folder per class (or train/ "
                           "and test/ with a folder per class)")
        classes.setdefault(p[1] if split else p[0], []).append(str(original))
    return classes


class _DatasetZip:
    """A dataset zip, checked from its directory (core.untrusted.zip_members) and its layout read (_zip_layout):
    `layout` {class: member names}; `pictures(cls)` reads one class's pictures, one at a time, each with a cap."""

    def __init__(self, data: bytes):
        if len(data) > MAX_ZIP_BYTES:
            raise OwnError(f"the zip is {megabytes(len(data))}, more than this app takes ({megabytes(MAX_ZIP_BYTES)})")
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise OwnError(f"it is not a zip ({exc})") from None
        members = zip_members(self.zf, max_members=MAX_CLASSES * MAX_PICTURES * 2 + 100,
                              limit=lambda n: MAX_PICTURE_BYTES, total=MAX_ZIP_UNPACKED, what="a dataset zip",
                              error=OwnError)
        self.members = {m.filename: m for m in members if not PurePosixPath(m.filename).name.startswith(".")
                        and "__MACOSX" not in m.filename}
        self.layout = _zip_layout([PurePosixPath(n) for n in self.members])
        if not self.layout:
            raise OwnError("the zip holds no pictures")
        for cls, pictures in self.layout.items():
            check_name(cls, "a class's name")
            if len(pictures) > MAX_PICTURES:
                raise OwnError(f"class {cls} has {len(pictures):,} pictures, more than a class takes ({MAX_PICTURES})")

    def pictures(self, cls: str) -> Iterable[tuple[str, bytes]]:
        for name in self.layout[cls]:
            member = self.members[name]
            yield name, read_member(self.zf, member, min(member.file_size, MAX_PICTURE_BYTES), error=OwnError)

    def __enter__(self) -> "_DatasetZip":
        return self

    def __exit__(self, *exc) -> None:
        self.zf.close()


def _add_from(dataset: OwnDataset, taken: _DatasetZip, classes: dict[str, str], result: Added) -> None:
    """Each of the zip's classes into the dataset's class `classes` names for it."""
    for cls, target in classes.items():
        with _lock(dataset.path):
            part = _add(_read(dataset.path), target, taken.pictures(cls))
        result.added += part.added
        result.problems += part.problems
    result.dataset = _read(dataset.path)


def import_own(data_dir: str | os.PathLike, source: str | os.PathLike | bytes, name: str | None = None,
               default_name: str = "imported") -> Added:
    """A dataset zip taken in as a new own dataset (its pictures split again by this app's rule): one line for each
    picture left out. OwnError, and nothing left behind, where the zip cannot be one."""
    data = source if isinstance(source, bytes) else read_capped(source, MAX_ZIP_BYTES, error=OwnError)
    if name is None and not isinstance(source, bytes):
        default_name = Path(source).stem
    with _DatasetZip(data) as taken:
        dataset = create_own(data_dir, _free_name(data_dir, name or default_name, given=name is not None),
                             list(taken.layout))
        result = Added(dataset)
        try:
            _add_from(dataset, taken, {cls: cls for cls in taken.layout}, result)
        except BaseException:
            shutil.rmtree(dataset.path, ignore_errors=True)
            raise
        return result


def add_zip(data_dir: str | os.PathLike, name: str, data: bytes) -> Added:
    """A zip of class folders into an own dataset: each folder's pictures into the class of its name (in any case);
    a folder of no class of the dataset is left out, with one line. OwnError where the zip cannot be one."""
    dataset = get_own(data_dir, name)
    with _DatasetZip(data) as taken:
        classes = {c.lower(): c for c in dataset.classes}
        result = Added(dataset)
        for cls, pictures in taken.layout.items():
            if cls.lower() not in classes:
                result.problems.append(f"{cls}/: {name} has no class {cls} (its {len(pictures)} pictures were left "
                                       "out; add the class first)")
        _add_from(dataset, taken, {c: classes[c.lower()] for c in taken.layout if c.lower() in classes}, result)
        return result


def _free_name(data_dir, name: str, given: bool) -> str:
    """The name to import under: as given (refused where taken), or the zip's own name made free (fruit-2)."""
    cleaned = re.sub(r"[^A-Za-z0-9 _.-]", "-", name).strip(" .-_")[:36] or "imported"
    if given:
        return check_name(name)
    taken = {n.lower() for n in own_names(data_dir)}
    candidate, n = cleaned, 2
    while candidate.lower() in taken:
        candidate, n = f"{cleaned}-{n}", n + 1
    return check_name(candidate)


# -- the command line ----------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="python -m core.datasets", description="Own datasets: list, import, export, delete.",
                  epilog=f"Caps: {CAPS_TEXT}.")
    p.add_argument("--data-dir", default="data", help="the data folder (default: data); datasets are in DIR/own/")
    sub = p.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="every own dataset, with its classes and pictures")
    listing.add_argument("--json", action="store_true", help="one JSON object per dataset")
    take = sub.add_parser("import", help="a zip of class folders (or of train/ and test/) as a new dataset")
    take.add_argument("file")
    take.add_argument("--name", help="the new dataset's name (default: the zip's)")
    export = sub.add_parser("export", help="a dataset as a zip")
    export.add_argument("name")
    export.add_argument("-o", "--output", required=True, help="the zip to write")
    delete = sub.add_parser("delete", help="delete a dataset")
    delete.add_argument("name")
    delete.add_argument("--yes", action="store_true", help="really delete it")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_code(lambda: run(args), (OwnError,))


def run(args: argparse.Namespace) -> None:
    if args.command == "list":
        for dataset in list_own(args.data_dir):
            s = dataset.summary()
            counts = ", ".join(f"{c} {v['train'] + v['test']}" for c, v in s["classes"].items())
            state = "" if s["ready"] else f" - {s['missing']}"
            print(json.dumps(s) if args.json else f"{dataset.name}: {s['pictures']} pictures ({counts}){state}")
    elif args.command == "import":
        result = import_own(args.data_dir, args.file, args.name)
        for line in result.problems:
            print(f"left out: {line}", file=sys.stderr)
        print(result.dataset.name)
    elif args.command == "export":
        data = export_own(args.data_dir, args.name)
        target = Path(args.output)
        if target.exists() and not target.is_file():  # a device or a pipe (/dev/stdout): written to, never replaced
            target.write_bytes(data)
        else:  # whole or not at all
            tmp = target.with_name(f".{target.name}.tmp")
            try:
                tmp.write_bytes(data)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        print(target, file=sys.stderr)
    elif args.command == "delete":
        if not args.yes:
            raise OwnError(f"add --yes to delete {args.name} for good")
        delete_own(args.data_dir, args.name)


if __name__ == "__main__":
    raise SystemExit(main())

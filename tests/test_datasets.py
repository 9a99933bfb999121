"""Own datasets (core/datasets.py): made from pictures, split, shared as a zip, trained on; every file hostile."""

import io
import json
import subprocess
import sys
import zipfile

import pytest
from PIL import Image

from core.config import ConfigError, TrainConfig
from core.data import DatasetError, load_dataset
from core.datasets import (
    MAX_UPLOAD,
    OwnError,
    add_pictures,
    create_own,
    export_own,
    get_own,
    import_own,
    list_own,
    remove_picture,
    split_of,
)
from core.links import link_dataset, link_query, parse_link
from tests.conftest import ROOT

COLOURS = {"apple": (200, 30, 30), "banana": (230, 220, 40), "cherry": (90, 10, 40)}


def picture(colour, i: int, size=(48, 40), fmt="PNG") -> bytes:
    """A picture of one colour with a pattern of its own (i), so no two are the same."""
    img = Image.new("RGB", size, colour)
    img.putpixel((size[0] // 2, size[1] // 2), (255 - colour[0], 255 - colour[1], i % 256))  # in the middle square
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def fruit(data_dir, per_class: int = 12):
    create_own(data_dir, "fruit", list(COLOURS))
    for cls, colour in COLOURS.items():
        files = [(f"{cls}-{i}.png", picture(colour, i)) for i in range(per_class)]
        result = add_pictures(data_dir, "fruit", cls, files)
        assert (result.added, result.problems) == (per_class, [])
    return get_own(data_dir, "fruit")


def test_a_dataset_is_made_split_and_trained_on(tmp_path):
    data_dir = tmp_path / "data"
    dataset = fruit(data_dir)
    assert dataset.ready and dataset.missing_line() == ""
    assert [dataset.count(c, "test") for c in COLOURS] == [2, 2, 2]  # a fifth of 12, rounded
    # the same pictures, the same split: it depends on the pictures alone
    ids = [p.id for p in dataset.pictures["apple"]]
    assert split_of(ids, "apple") == split_of(list(reversed(ids)), "apple")
    assert {p.id: p.split for p in dataset.pictures["apple"]} == split_of(ids, "apple")
    # an ImageFolder layout, under data/own/<name>/train|test/<class>/
    assert len(list((data_dir / "own" / "fruit" / "train" / "banana").glob("*.png"))) == 10

    removed = dataset.pictures["cherry"][0]
    dataset = remove_picture(data_dir, "fruit", "cherry", removed.id)
    assert dataset.count("cherry") == 11 and removed.id not in {p.id for p in dataset.pictures["cherry"]}

    loaded = load_dataset("own:fruit", data_dir)
    assert loaded.classes == ["apple", "banana", "cherry"] and loaded.image_size == 32
    assert len(loaded.train_labels) + len(loaded.test_labels) == 35
    # a picture's colour survives to the 32x32 the network sees
    red = loaded.train_images[loaded.train_labels == 0].float().mean((0, 2, 3))
    assert red[0] > 150 and red[1] < 80

    from core.loop import run_training
    events = list(run_training(TrainConfig(dataset="own:fruit", data_dir=str(data_dir), epochs=1, batch_size=8,
                                           device="cpu"), runs_root=tmp_path / "runs"))
    assert events[-1]["status"] == "finished"
    assert list(events[-1]["per_class_accuracy"]) == ["apple", "banana", "cherry"]


def test_a_dataset_says_what_is_missing_and_cannot_train_until_then(tmp_path):
    data_dir = tmp_path / "data"
    create_own(data_dir, "pets", ["cat", "dog"])
    add_pictures(data_dir, "pets", "cat", [(f"{i}.png", picture((10, 20, 30), i)) for i in range(4)])
    dataset = get_own(data_dir, "pets")
    assert not dataset.ready
    assert dataset.missing_line() == ("Still missing: 6 pictures of cat, 10 pictures of dog (each class needs 10).")
    with pytest.raises(DatasetError, match="cannot train yet. Still missing: 6 pictures of cat"):
        load_dataset("own:pets", data_dir)
    with pytest.raises(DatasetError, match="no own dataset 'nothing'"):
        load_dataset("own:nothing", data_dir)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose header says it is width x height: what a 10000x10000 photo's header says."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(out, "JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.fault
def test_each_bad_picture_gets_one_line_naming_it_and_the_rest_are_kept(tmp_path):
    data_dir = tmp_path / "data"
    create_own(data_dir, "fruit", ["apple", "banana"])
    good = picture((200, 30, 30), 1)
    result = add_pictures(data_dir, "fruit", "apple", [
        ("notes.txt", b"a shopping list, not a picture"),
        ("broken.png", good[:60]),
        ("huge.jpg", jpeg_claiming(10000, 10000)),
        ("good.png", good),
        ("again.png", good),
    ])
    assert result.added == 1
    assert len(result.problems) == 4 and all("\n" not in line for line in result.problems)
    notes, broken, huge, again = result.problems
    assert notes.startswith("notes.txt is not a readable image")
    assert broken.startswith("broken.png is not a readable image (damaged")
    assert huge.startswith("huge.jpg is 10000x10000 pixels, more than this app opens")
    assert again == "again.png is already in apple"
    assert get_own(data_dir, "fruit").count("apple") == 1

    with pytest.raises(OwnError, match=f"5,000 pictures in one upload is more than this app takes .{MAX_UPLOAD}."):
        add_pictures(data_dir, "fruit", "banana", [(f"{i}.png", good) for i in range(5000)])
    assert get_own(data_dir, "fruit").count("banana") == 0


@pytest.mark.fault
@pytest.mark.parametrize("classes, message", [
    (["apple", "../../etc"], "'../../etc' cannot be a class's name"),
    (["apple", "<b>banana</b>"], "'<b>banana</b>' cannot be a class's name"),
    (["apple", "Apple"], "two classes are named 'Apple'"),
    ([f"c{i}" for i in range(11)], "11 classes is more than a dataset here takes (10)"),
])
def test_bad_class_names_are_refused_and_nothing_is_made(tmp_path, classes, message):
    with pytest.raises(OwnError, match=message.replace("(", r"\(").replace(")", r"\)")):
        create_own(tmp_path / "data", "fruit", classes)
    assert list_own(tmp_path / "data") == []
    with pytest.raises(OwnError, match="cannot be a dataset's name"):
        create_own(tmp_path / "data", "../outside", ["a", "b"])
    assert not (tmp_path / "outside").exists()


def test_a_dataset_zip_goes_to_another_server_with_the_same_pictures_and_split(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    dataset = fruit(here)
    data = export_own(here, "fruit")
    result = import_own(there, data, default_name="fruit")
    assert result.problems == [] and result.added == 36
    other = result.dataset
    assert other.name == "fruit" and other.classes == dataset.classes
    for cls in dataset.classes:
        assert {(p.id, p.split) for p in other.pictures[cls]} == {(p.id, p.split) for p in dataset.pictures[cls]}
    # a second import of the same zip gets a name of its own
    assert import_own(there, data, default_name="fruit").dataset.name == "fruit-2"


def test_a_zip_of_class_folders_in_a_top_folder_is_taken_in(tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for cls, colour in COLOURS.items():
            for i in range(3):
                zf.writestr(f"my pictures/{cls}/{i}.png", picture(colour, i))
        zf.writestr("my pictures/.DS_Store", b"")
    result = import_own(tmp_path / "data", out.getvalue(), default_name="my pictures")
    assert result.dataset.name == "my pictures" and result.dataset.classes == ["apple", "banana", "cherry"]
    assert [result.dataset.count(c) for c in COLOURS] == [3, 3, 3]


def test_a_zip_of_class_folders_adds_to_the_classes_of_its_names(tmp_path):
    from core.datasets import add_zip

    data_dir = tmp_path / "data"
    create_own(data_dir, "fruit", ["apple", "banana"])
    data = zip_of({**{f"Apple/{i}.png": picture(COLOURS["apple"], i) for i in range(11)},
                   **{f"banana/{i}.png": picture(COLOURS["banana"], i) for i in range(10)},
                   "banana/notes.txt": b"not a picture",
                   **{f"kiwi/{i}.png": picture((0, 200, 0), i) for i in range(3)}})
    result = add_zip(data_dir, "fruit", data)
    assert result.added == 21 and result.dataset.ready
    assert [result.dataset.count(c) for c in ("apple", "banana")] == [11, 10]
    assert result.problems == ["kiwi/: fruit has no class kiwi (its 3 pictures were left out; add the class first)",
                               "notes.txt is not a readable image (not a picture format this app knows)"]
    with pytest.raises(OwnError, match="would land outside"):
        add_zip(data_dir, "fruit", zip_of({"../apple/x.png": picture((1, 1, 1), 0)}))
    assert get_own(data_dir, "fruit").count("apple") == 11


def zip_of(members: dict) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return out.getvalue()


@pytest.mark.fault
@pytest.mark.parametrize("case", ["bomb", "escape", "absolute", "not-a-zip", "nested", "bad-class", "link"])
def test_a_hostile_dataset_zip_is_refused_in_one_line_and_nothing_is_left(tmp_path, case):
    good = picture((1, 2, 3), 0)
    if case == "bomb":  # 300 MB of zeros, a few hundred kB packed
        data, message = zip_of({"apple/a.png": good, "apple/b.png": bytes(300 * 2**20)}), "would be 300 MB unpacked"
    elif case == "escape":
        data, message = zip_of({"apple/a.png": good, "../evil/x.png": good}), "would land outside"
    elif case == "absolute":
        data, message = zip_of({"apple/a.png": good, "/tmp/x.png": good}), "would land outside"
    elif case == "not-a-zip":
        data, message = b"PK but not really a zip", "it is not a zip"
    elif case == "nested":
        data, message = zip_of({"apple/a.png": good, "x/y/z/w.png": good}), "is not in a class folder"
    elif case == "bad-class":
        data, message = zip_of({"apple/a.png": good, "<script>/a.png": good}), "cannot be a class's name"
    else:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            zf.writestr("apple/a.png", good)
            link = zipfile.ZipInfo("apple/b.png")
            link.external_attr = 0o120777 << 16
            zf.writestr(link, "/etc/passwd")
        data, message = out.getvalue(), "is a link"
    with pytest.raises(OwnError, match=message) as error:
        import_own(tmp_path / "data", data, default_name="evil")
    assert "\n" not in str(error.value)
    assert list_own(tmp_path / "data") == [] and not (tmp_path / "evil").exists()


def test_own_datasets_in_configs_and_links():
    assert TrainConfig(dataset="own:fruit").dataset == "own:fruit"
    with pytest.raises(ConfigError, match="own: needs the name of an own dataset"):
        TrainConfig(dataset="own:../x")
    link = parse_link({"dataset": "own", "own": "fruit", "lr": "0.01"})
    assert link.problems == [] and link_dataset(link.values) == "own:fruit"
    assert link_query({"dataset": "own", "own": "fruit", "folder": "/x"}) == {"dataset": "own", "own": "fruit"}
    bad = parse_link({"dataset": "own", "own": "<b>x</b>"})
    assert "own" not in bad.values and bad.problems[0].startswith("own=<b>x</b> was ignored: '<b>x</b>' cannot be")


def cli(*args, data_dir):
    return subprocess.run([sys.executable, "-m", "core.datasets", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_the_command_line_lists_imports_exports_deletes_and_trains(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    fruit(here)
    listed = cli("list", "--json", data_dir=here)
    assert listed.returncode == 0
    row = json.loads(listed.stdout)
    assert row["name"] == "fruit" and row["pictures"] == 36 and row["classes"]["apple"] == {"train": 10, "test": 2}
    zipped = tmp_path / "fruit.zip"
    assert cli("export", "fruit", "-o", str(zipped), data_dir=here).returncode == 0
    taken = cli("import", str(zipped), data_dir=there)
    assert taken.returncode == 0 and taken.stdout.strip() == "fruit"
    assert "fruit: 36 pictures (apple 12, banana 12, cherry 12)" in cli("list", data_dir=there).stdout

    trained = subprocess.run([sys.executable, "-m", "core.train", "--dataset", "own:fruit", "--data-dir", str(there),
                              "--runs-dir", str(tmp_path / "runs"), "--epochs", "1", "--batch-size", "8", "--json"],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout.strip().splitlines()[-1])["status"] == "finished"

    refused = cli("delete", "fruit", data_dir=there)
    assert refused.returncode == 2 and refused.stderr.strip() == "error: add --yes to delete fruit for good"
    assert cli("delete", "fruit", "--yes", data_dir=there).returncode == 0
    assert cli("list", data_dir=there).stdout == ""


@pytest.mark.fault
def test_the_command_line_says_bad_input_in_one_line_with_exit_2(tmp_path):
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(zip_of({"apple/a.png": bytes(500 * 2**20)}))
    for args, message in ((("import", str(bomb)), "would be 500 MB unpacked"),
                          (("import", str(tmp_path / "missing.zip")), "cannot be read"),
                          (("export", "nothing", "-o", str(tmp_path / "x.zip")), "there is no own dataset 'nothing'"),
                          (("import", "/dev/zero"), "is not a regular file")):
        r = cli(*args, data_dir=tmp_path / "data")
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, (args, r.stderr)
    bad = subprocess.run([sys.executable, "-m", "core.train", "--dataset", "own:nothing", "--data-dir",
                          str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "there is no own dataset 'nothing'" in bad.stderr and "Traceback" not in bad.stderr

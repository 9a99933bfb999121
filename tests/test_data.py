import time

import pytest
import torch
from PIL import Image

from core.data import (
    DatasetError,
    Normalizer,
    check_folder,
    load_dataset,
    make_shapes,
    rank_batches,
    shapes_cache,
)
from tests.conftest import write_image_folder


def test_shapes_is_deterministic_balanced_and_offline(tmp_path, offline):
    a, b = make_shapes(500, 100, seed=3), make_shapes(500, 100, seed=3)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.train_labels, b.train_labels)
    assert not torch.equal(a.train_images, make_shapes(500, 100, seed=4).train_images)
    assert a.train_images.shape == (500, 3, 32, 32) and a.train_images.dtype == torch.uint8
    assert a.classes[:3] == ["circle", "square", "triangle"] and a.num_classes == 10
    assert torch.bincount(a.train_labels).tolist() == [50] * 10
    # the images differ in colour and content, not just noise
    assert a.train_images.float().std(dim=(1, 2, 3)).mean() > 10


def test_second_load_comes_from_the_cache_quickly(tmp_path):
    first = load_dataset("shapes", tmp_path)
    started = time.perf_counter()
    second = load_dataset("shapes", tmp_path)
    assert time.perf_counter() - started < 1.0
    assert torch.equal(first.test_images, second.test_images) and first.classes == second.classes
    assert shapes_cache(tmp_path).exists()


def test_damaged_cache_is_rebuilt(tmp_path):
    load_dataset("shapes", tmp_path)
    shapes_cache(tmp_path).write_bytes(b"not a tensor file")
    assert load_dataset("shapes", tmp_path).train_images.shape[0] == 10000


def test_image_folder_loads_labels_and_classes(tmp_path):
    folder = write_image_folder(tmp_path / "imgs", per_class=(4, 2))
    d = load_dataset(f"folder:{folder}", tmp_path / "data")
    assert d.classes == ["cats", "dogs", "frogs"]
    assert d.train_images.shape == (12, 3, 20, 20) and d.test_images.shape == (6, 3, 20, 20)
    assert d.train_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # pixel values survive decoding: class 1 was drawn as (80, 195, ...)
    assert d.train_images[4, :2, 0, 0].tolist() == [80, 195]


def test_image_folder_of_mixed_sizes_is_resized_to_one(tmp_path):
    folder = write_image_folder(tmp_path / "imgs", per_class=(2, 1), size=(32, 32))
    Image.new("RGB", (100, 60), (1, 2, 3)).save(folder / "train" / "cats" / "big.jpg")
    d = load_dataset(f"folder:{folder}", tmp_path / "data")
    assert d.train_images.shape[1:] == (3, 32, 32) and len(d.train_images) == 7


def test_image_folder_cache_notices_new_images(tmp_path):
    folder = write_image_folder(tmp_path / "imgs", per_class=(2, 1))
    assert len(load_dataset(f"folder:{folder}", tmp_path / "data").train_labels) == 6
    Image.new("RGB", (20, 20)).save(folder / "train" / "dogs" / "new.png")
    assert len(load_dataset(f"folder:{folder}", tmp_path / "data").train_labels) == 7


@pytest.mark.parametrize("breakage, message", [
    ("missing", "there is no folder"),
    ("no_test", "has no test/ sub-folder"),
    ("mismatch", "classes in train/ and test/ .* differ"),
    ("empty", "has no images"),
    ("corrupt", "is not a readable image"),
    ("one_class", "only one class"),
])
def test_bad_image_folders_raise_one_clear_error(tmp_path, breakage, message):
    folder = tmp_path / "imgs"
    if breakage != "missing":
        write_image_folder(folder, classes=("a",) if breakage == "one_class" else ("a", "b"), per_class=(2, 1))
    if breakage == "no_test":
        for f in (folder / "test").rglob("*.png"):
            f.unlink()
        for d in sorted((folder / "test").iterdir()):
            d.rmdir()
        (folder / "test").rmdir()
    elif breakage == "mismatch":
        (folder / "test" / "b").rename(folder / "test" / "c")
    elif breakage == "empty":
        for f in (folder / "test").rglob("*.png"):
            f.unlink()
    elif breakage == "corrupt":
        (folder / "train" / "a" / "bad.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"folder:{folder}", tmp_path / "data")
    if breakage != "corrupt":  # the Train page's check before it starts a job says the same (no decoding)
        with pytest.raises(DatasetError, match=message):
            check_folder(folder)
    else:
        check_folder(folder)


@pytest.mark.parametrize("name", ["cifar10", "mnist", "fashion-mnist"])
def test_download_without_network_names_the_offline_alternatives(tmp_path, offline, name):
    with pytest.raises(DatasetError) as error:
        load_dataset(name, tmp_path)
    message = str(error.value)
    assert "could not be downloaded" in message and "cannot reach the internet" in message
    assert "offline Shapes" in message and "folder of your own images" in message
    assert "Errno" not in message and "folder:PATH" not in message  # a student's words, not the machine's


def test_normalizer_matches_the_tutorial_transform():
    from torchvision import transforms

    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    tutorial = transforms.Compose([transforms.ConvertImageDtype(torch.float32),
                                   transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    ours = Normalizer((0.5,) * 3, (0.5,) * 3)(images)
    assert torch.allclose(ours, tutorial(images), atol=1e-6)
    assert ours.min() >= -1 - 1e-6 and ours.max() <= 1 + 1e-6
    assert torch.equal(((ours + 1) / 2 * 255).round().to(torch.uint8), images)  # the tutorial's imshow undoes it


def test_shuffled_batches_cover_every_image_once():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    labels = torch.arange(10)
    batches = [(x, y) for x, y, _ in rank_batches(images, labels, 4, torch.Generator().manual_seed(0))]
    assert [len(y) for _, y in batches] == [4, 4, 2]
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    assert all(torch.equal(x.view(-1).long(), y) for x, y in batches)  # images stay with their labels


@pytest.mark.xdist_group("cifar10")  # one test process unpacks and decodes it once
def test_real_cifar10_copy_loads_as_the_tutorial_describes(cifar10_folder, cifar10_data_dir):
    d = load_dataset(f"folder:{cifar10_folder}", cifar10_data_dir)
    assert d.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert d.train_images.shape == (50000, 3, 32, 32) and d.test_images.shape == (10000, 3, 32, 32)
    assert torch.bincount(d.test_labels).tolist() == [1000] * 10
    started = time.perf_counter()
    again = load_dataset(f"folder:{cifar10_folder}", cifar10_data_dir)
    assert time.perf_counter() - started < 1.0 and torch.equal(again.test_images[:100], d.test_images[:100])


def test_download_reports_progress_and_never_leaves_a_partial_file(tmp_path):
    """A real HTTP download from a server on 127.0.0.1, as the CIFAR-10 download does it."""
    import functools
    import http.server
    import threading

    from core.data import _download

    served = tmp_path / "served"
    served.mkdir()
    payload = bytes(range(256)) * 12000  # ~3 MB, several chunks
    (served / "archive.tar.gz").write_bytes(payload)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        seen = []
        url = f"http://127.0.0.1:{server.server_address[1]}"
        _download(f"{url}/archive.tar.gz", tmp_path / "out" / "a.tar.gz", lambda m, f: seen.append((m, f)), "test")
        assert (tmp_path / "out" / "a.tar.gz").read_bytes() == payload
        fractions = [f for _, f in seen]
        assert len(fractions) >= 3 and fractions == sorted(fractions) and fractions[-1] == 1.0
        assert "Downloading test: 3 of 3 MB" in seen[-1][0]
        with pytest.raises(DatasetError, match="could not be downloaded"):
            _download(f"{url}/missing.tar.gz", tmp_path / "out" / "b.tar.gz", lambda m, f: None, "test")
        assert not list((tmp_path / "out").glob("b.tar.gz*"))
    finally:
        server.shutdown()


def test_flips_and_crops_move_each_picture_and_keep_its_pixels():
    """augment: each picture flipped left-right or not and shifted by up to 4 pixels (black where it came in), as
    torchvision's RandomHorizontalFlip and RandomCrop(32, padding=4); the same generator seed, the same batch."""
    from core.data import augment

    images = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)  # no black pixel of their own
    out = augment(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, augment(images, torch.Generator().manual_seed(0)))
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flips, shifts = 0, set()
    for i in range(64):  # each output is one of the 2 x 9 x 9 flipped-or-not crops of its own padded picture
        crops = {(flip, dy, dx): (padded[i].flip(2) if flip else padded[i])[:, dy:dy + 32, dx:dx + 32]
                 for flip in (False, True) for dy in range(9) for dx in range(9)}
        found = [where for where, crop in crops.items() if torch.equal(out[i], crop)]
        assert found, i
        flips += found[0][0]
        shifts.add(found[0][1:])
    assert 16 < flips < 48 and len(shifts) > 20  # both ways, and many shifts


def test_a_run_with_flips_and_crops_trains_other_pictures_from_the_same_seed(small_shapes, tmp_path):
    from core.config import TrainConfig
    from core.loop import run_training

    def final(augment: bool) -> float:
        config = TrainConfig(dataset="shapes", data_dir=str(tmp_path), epochs=1, batch_size=32, lr=0.01,
                             max_steps=20, augment=augment, device="cpu")
        return [e for e in run_training(config, runs_root=tmp_path / "runs", dataset=small_shapes)
                if e["type"] == "end"][0]["final_running_loss"]

    plain_loss, augmented = final(False), final(True)
    assert plain_loss == final(False) and augmented == final(True)  # each is the same run again
    assert plain_loss != augmented

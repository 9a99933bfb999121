"""Fault injection: hostile files and broken processes, done for real, never mocked.

Each test does what a hostile user or a failing machine does, in a real subprocess where a crash of the
process itself is what would go wrong.
"""

import io
import random

import pytest
from PIL import Image

from core.data import DatasetError, load_dataset
from tests.conftest import write_image_folder
from tests.test_cli import cli


def flipped_png(seed: int) -> bytes:
    """A valid PNG of noise with one byte of its compressed image data flipped (a bad CRC, broken zlib)."""
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (32, 32), bytes(rng.randrange(256) for _ in range(32 * 32 * 3)))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[-20] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_byte_flipped_png_is_named_and_exits_2_instead_of_killing_the_process(tmp_path, seed):
    # torchvision's PNG decoder died with SIGSEGV (exit 139) on every one of these
    folder = write_image_folder(tmp_path / "images")
    bad = folder / "train" / "cats" / "zz-corrupt.png"
    bad.write_bytes(flipped_png(seed))
    r = cli(tmp_path, "--dataset", f"folder:{folder}", "--max-steps", "1")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "zz-corrupt.png" in r.stderr and "not a readable image" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_huge_image_is_refused_before_it_is_decoded(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    Image.new("RGB", (5000, 5000), (10, 20, 30)).save(folder / "test" / "dogs" / "huge.png")  # ~75 MB decoded
    with pytest.raises(DatasetError, match=r"huge.png is 5000x5000 pixels"):
        load_dataset(f"folder:{folder}", tmp_path / "data")

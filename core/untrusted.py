"""Files a user gives the app (zips, pictures), opened as hostile until checked: one copy of the checks, used by run
zips (core/runs/archive.py), image folders (core/data.py), a photo to classify (core/evaluate.py) and own datasets
(core/datasets.py).

    data = read_capped(path, limit)                 a regular file's bytes, never more than `limit`
    members = zip_members(zf, max_members=..., limit=..., total=...)
    blob = read_member(zf, member, limit)           read with a cap, whatever the member's header says
    image = open_image(data, name)                  decoded by Pillow to RGB; the pixel count checked first

Each raises UntrustedError (or the `error` class given) with one line a user can act on.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable

MAX_IMAGE_PIXELS = 4096 * 4096  # an image larger than this is refused from its header, before it is decoded


class UntrustedError(ValueError):
    """A file that cannot be taken in; the message says why in one line."""


def megabytes(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n / 2**10:,.0f} KB"


def read_capped(path: str | os.PathLike, limit: int, error: type[Exception] = UntrustedError) -> bytes:
    """A regular file's bytes, at most `limit`: never a FIFO (which would wait for ever) or a device such as /dev/zero
    (which never ends)."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path} is not a regular file")
        if info.st_size > limit:
            raise error(f"{path.name} is {megabytes(info.st_size)}, more than this app takes ({megabytes(limit)})")
        with open(path, "rb") as f:
            data = f.read(limit + 1)  # a file that grows meanwhile is still read with a cap
        if len(data) > limit:
            raise error(f"{path.name} is more than this app takes ({megabytes(limit)})")
        return data
    except OSError as exc:
        raise error(f"{path} cannot be read ({exc.strerror or exc})") from None


def safe_member_name(name: str) -> PurePosixPath | None:
    """A zip member's name as a relative path inside the zip, or None where it could land elsewhere (an absolute
    path, `..`, a drive letter, a backslash, a NUL)."""
    if not name or "\\" in name or "\0" in name or name.startswith("/") or ":" in name.split("/")[0]:
        return None
    path = PurePosixPath(name)
    if any(part in ("..", ".") for part in path.parts):
        return None
    return path


def zip_members(zf: zipfile.ZipFile, *, max_members: int, limit: Callable[[str], int | None], total: int,
                what: str = "the zip", error: type[Exception] = UntrustedError) -> list[zipfile.ZipInfo]:
    """The zip's file members (folders left out), checked from its directory before a byte is unpacked: how many,
    their names (`limit(name)`: the most that member may unpack to, None where the name is not one it may hold),
    links, encryption, the packing method, and the total they unpack to (a zip bomb is refused here; read_member
    caps each read whatever its header says)."""
    members = zf.infolist()
    if len(members) > max_members:
        raise error(f"{what} holds {len(members):,} files, more than this app takes ({max_members:,})")
    files, seen, unpacked = [], set(), 0
    for m in members:
        name = m.filename
        if stat.S_ISLNK(m.external_attr >> 16):
            raise error(f"{name} is a link; {what} may hold plain files only")
        if m.flag_bits & 0x1:
            raise error(f"{name} is encrypted; this app does not open encrypted zips")
        if m.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise error(f"{name} is packed with a method this app does not read (method {m.compress_type})")
        if safe_member_name(name) is None:
            raise error(f"{name!r} is a name that would land outside the folder it unpacks to")
        if m.is_dir():
            continue
        cap = limit(name)
        if cap is None or name in seen:
            raise error(f"{name!r} is not a file {what} may hold")
        seen.add(name)
        if m.file_size > cap:
            raise error(f"{name} would be {megabytes(m.file_size)} unpacked, more than this app takes "
                        f"({megabytes(cap)})")
        unpacked += m.file_size
        files.append(m)
    if unpacked > total:
        raise error(f"{what} would be {megabytes(unpacked)} unpacked, more than this app takes ({megabytes(total)})")
    return files


def read_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int, out=None,
                error: type[Exception] = UntrustedError) -> bytes | None:
    """A member's bytes (or, with `out`, written to that file), read with a cap: a header that lies about the size
    gains nothing."""
    buffer = io.BytesIO() if out is None else out
    copied = 0
    with zf.open(member) as src:
        while chunk := src.read(1 << 20):
            copied += len(chunk)
            if copied > limit:
                raise error(f"{member.filename} unpacks to more than its header says (a zip bomb?)")
            buffer.write(chunk)
    return buffer.getvalue() if out is None else None


def open_image(source, name: str, max_pixels: int = MAX_IMAGE_PIXELS, formats: tuple[str, ...] | None = None,
               error: type[Exception] = UntrustedError):
    """A picture (bytes or an open binary file) decoded by Pillow as an RGB image, or `error` naming it. The size is
    read from the header and checked before any pixel is decoded; Pillow's decoders turn corrupt data into an
    exception (torchvision's PNG decoder crashed the whole process on a PNG with one flipped byte)."""
    from PIL import Image, UnidentifiedImageError

    f = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with warnings.catch_warnings():  # Pillow warns of a large image from its header: refused here instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(f)
        with img:
            if formats is not None and img.format not in formats:
                raise error(f"{name} is a {img.format or 'unknown'} image; this app takes "
                            f"{' or '.join(formats)} here")
            if img.width * img.height > max_pixels:
                raise error(f"{name} is {img.width}x{img.height} pixels, more than this app opens "
                            f"({max_pixels:,}); shrink it")
            return img.convert("RGB")
    except error:
        raise
    except UnidentifiedImageError:
        raise error(f"{name} is not a readable image (not a picture format this app knows)") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise error(f"{name} is not a readable image (damaged: {str(exc)[:80] or type(exc).__name__})") from None

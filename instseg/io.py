"""Atomic file writes: a temp file in the target folder, then os.replace."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import UserError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    check_replaceable(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # name the path the user gave, not our temp file
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        try:
            os.replace(tmp, path)
        except OSError as e:  # name the path the user knows, not our temp file
            raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_replaceable(path: Path) -> None:
    """Refuse to replace anything but a regular file (or a link to one): a device, FIFO, socket or folder
    named as an output would be swapped out by the atomic rename."""
    import stat

    from .errors import UserError

    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing (or a dangling link): a new file
        return
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
        raise UserError(f"{path} is {kind}; give a path to a regular file")


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """mkdtemp beside an output, with the mode a plain mkdir gets (mkdtemp makes 0700 folders)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def strict_json(obj: Any, indent: int | None = None) -> str:
    """JSON as strict readers take it: a NaN or infinite number is refused (UserError), never written."""
    try:
        return json.dumps(obj, indent=indent, allow_nan=False)
    except ValueError:
        raise UserError("refused to write a NaN or infinite number into a dataset file; the generator or its "
                        "settings produce non-finite values") from None


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, strict_json(obj, indent=1).encode())


def png_bytes(array: np.ndarray, compress_level: int = 6) -> bytes:
    """A [H, W] or [H, W, 3] uint8 array as PNG (zlib level 1 is ~3x faster to write, a bit larger)."""
    from PIL import Image

    buf = BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def atomic_save_png(path: str | os.PathLike, array: np.ndarray, compress_level: int = 6) -> None:
    atomic_write_bytes(path, png_bytes(array, compress_level))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)

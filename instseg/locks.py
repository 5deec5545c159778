"""One lock-file helper and one stale-temp sweep, for run folders and the download cache alike."""
from __future__ import annotations

import errno
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UserError

log = logging.getLogger(__name__)


class Busy(Exception):
    """The lock is held by another process (non-blocking mode); `holder` is its pid as written."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


@contextmanager
def lock_file(path: Path, blocking: bool = True) -> Iterator[None]:
    """Hold an flock on `path` (made if needed, never through a symlink), with our pid written in it.

    The file is removed on release. A process that locked an inode since unlinked retries on the new
    file, so two holders never coexist."""
    import fcntl

    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UserError(f"{path} is a symbolic link; remove it (instseg never writes through links)") from None
            raise
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise Busy(os.pread(fd, 32, 0).decode(errors="replace").strip() or "?") from None
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released and removed by its last holder while we waited: lock the new one
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            try:
                yield
            finally:
                try:
                    path.unlink()  # unlink while holding: a waiter on this inode sees it is stale and retries
                except OSError:
                    pass
            return
        finally:
            os.close(fd)


def held_by(path: Path) -> str | None:
    """The pid written in a lock file that a live process holds; None when free or absent (never creates it)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        return None
    finally:
        os.close(fd)


def clean_stale_temps(folder: Path, pattern: str = ".*.tmp") -> int:
    """Remove temp files (and temp trees) a killed writer left in `folder`; call with its lock held."""
    import shutil

    n = 0
    for p in folder.glob(pattern):
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            n += 1
            log.info("removed %s, left by a killed writer", p)
        except OSError:
            pass
    return n

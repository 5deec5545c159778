"""Process-wide CPU memory setting for synthesis (glibc malloc)."""
from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TOP_PAD_")


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for reuse instead of handing it back to the OS at once.

    Synthesis frees and re-allocates tens to hundreds of MB per batch. With glibc's defaults large
    blocks are mmap'd and unmapped again, so every new tensor page-faults afresh: on a CPU the toy
    variants ran 1.7x and config-f 1024 1.8x slower (bench/pipeline.py, bench/memory.py). Skipped
    when the user set MALLOC_* or preloads another allocator. Returns whether it was applied.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or "alloc" in os.environ.get("LD_PRELOAD", ""):
        return False
    if any(k in os.environ for k in _MALLOC_ENV):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    # M_MMAP_MAX (-4) = 0: every block comes from the heap, where freed blocks are reused;
    # M_TRIM_THRESHOLD (-1): up to 1 GiB free at the heap's top stays with the process.
    ok = mallopt(-4, 0) == 1 and mallopt(-1, 1 << 30) == 1
    log.debug("glibc malloc keeps freed memory: %s", ok)
    return ok

"""glibc's malloc: large freed blocks go back to the OS.

glibc serves a block above its mmap threshold (128 KiB) with a mapping of its own, unmapped when freed; but
the first such free raises the threshold to that block's size (up to 32 MiB), and from then on every
response body of that size comes from the heaps of the threads that decode them, which keep the freed space.
Over 1M insights rows (a dozen reader/window threads, pages of ~1 MB) that grew the step's process by
~200 MB of free heap (mallinfo2: 268 MB of heaps, 54 MB in use). Setting the threshold pins it. The same
adjustment had doubled the trim threshold (how much free space a heap keeps at its top) and setting one no longer
undoes the other: it is pinned at its default too.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
LARGE_BLOCK = 128 * 1024  # glibc's own default for both, pinned at it


def return_large_blocks() -> bool:
    """Pin glibc's mmap and trim thresholds (process-wide, idempotent); False under another C library."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
    except (ValueError, OSError):  # not a GNU system
        return False
    libc = ctypes.CDLL(None)
    return all([libc.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK) == 1, libc.mallopt(M_TRIM_THRESHOLD, LARGE_BLOCK) == 1])

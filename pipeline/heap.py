"""Keep freed memory in the process heap between inference batches (glibc only).

Why: each forward pass allocates and frees tens of megabytes of activations. With glibc's defaults the heap top
is trimmed back to the kernel after every pass and grown again on the next one, so every batch pays the page faults
of zero-filling fresh pages: about a quarter of CPU inference time on a 2-core machine (MODEL_CARD, "Speed and
memory"). Padding the heap top by ``TOP_PAD_BYTES`` keeps those pages mapped; results are bit for bit the same, and
the peak resident memory barely moves (1059 -> 1064 MB on a full tile: the same pages are reused, not added). The
price: the process keeps up to that much freed memory after detecting instead of handing it back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TOP_PAD = -2  # glibc mallopt parameter (malloc.h)
TOP_PAD_BYTES = 256 * 1024 * 1024
"""Larger than one batch's activations (4 windows of 512 px: ~34 MB per 32-channel map); 64 MB gained nothing."""

_done = False


def retain_freed_memory() -> bool:
    """Ask glibc to keep TOP_PAD_BYTES of freed heap mapped. Once per process; False where there is no glibc."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = mallopt(M_TOP_PAD, TOP_PAD_BYTES) == 1
    if not _done:
        log.debug("mallopt(M_TOP_PAD) refused; inference runs with the C library's default heap trimming")
    return _done

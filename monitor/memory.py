"""Keep a long-running process's heap from creeping (glibc malloc).

glibc serves allocations of at least the mmap threshold (128 KiB to start) with mmap and
returns them to the system on free. But every such free *raises* the threshold to that size
(up to 32 MiB), so from then on buffers of that size (read batches, numpy columns, recording
chunks) come from the heap. There, freed blocks between live ones stay with the process:
the soak measured RSS growing by ~0.4-2 MiB a minute this way, all of it free memory kept
inside malloc's heaps, with live memory flat. Fixing the threshold (``mallopt``) stops the
adjustment, so large buffers keep going back to the system.

Only where the C library has ``mallopt`` (glibc); a threshold set in the environment
(``MALLOC_MMAP_THRESHOLD_``) is left alone.
"""

from __future__ import annotations

import ctypes
import os

from monitor.log import get_logger

log = get_logger("monitor.memory")

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value, kept fixed


def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix malloc's mmap threshold at ``nbytes``; True when the C library took it."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, nbytes))
    log.debug("memory.mmap_threshold", bytes=nbytes, applied=done)
    return done

"""The daemon fixes glibc's mmap threshold: a large buffer allocated again after one was
freed still comes from mmap (and goes back to the system on free) instead of the heap."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import ctypes, sys
from monitor.memory import fix_mmap_threshold

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
applied = fix_mmap_threshold() if sys.argv[1] == "fixed" else False
size = 512 * 1024
first = libc.malloc(size)
libc.free(first)  # glibc's own rule raises the threshold to 512 KiB here
before = libc.mallinfo2().hblkhd
second = libc.malloc(size)
mapped = libc.mallinfo2().hblkhd - before  # the second buffer's bytes held by mmap
libc.free(second)
print(applied, mapped >= size)
"""


def _probe(mode: str) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    applied, mapped = proc.stdout.splitlines()[-1].split()  # the probe's own line
    return applied, mapped


def test_a_freed_large_buffer_does_not_move_the_next_one_onto_the_heap() -> None:
    assert _probe("fixed") == ("True", "True")
    # without it, glibc's adjustment puts the second buffer on the heap (what the soak saw)
    assert _probe("default") == ("False", "False")


def test_a_threshold_from_the_environment_is_left_alone() -> None:
    code = "import os; os.environ['MALLOC_MMAP_THRESHOLD_'] = '65536'; " + (
        "from monitor.memory import fix_mmap_threshold; print(fix_mmap_threshold())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "False"

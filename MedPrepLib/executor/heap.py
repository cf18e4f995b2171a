"""glibc's heap thresholds while a job runs in a worker whose environment pinned them.

glibc serves a request above its mmap threshold (128 KiB at first) with a fresh mmap, faulted in and
zeroed page by page, and raises the threshold to the size of each such block freed (up to 32 MiB),
so a process that keeps allocating buffers of the same sizes soon reuses heap memory instead.
Setting MALLOC_TRIM_THRESHOLD_ or MALLOC_MMAP_THRESHOLD_ in the environment switches that
adjustment off, and Dask's nanny sets the first (64 KiB, its `distributed.nanny.pre-spawn-environ`)
on every worker it starts, to hand memory back to the system sooner. A `ct-liver` case allocates
and frees many buffers between 128 KiB and 32 MiB (slices, blocks, compressed streams): 16 cases on
the built-in pool of 2 took 7.4 s with that variable set against 6.3 s without (medians of
alternating runs), and 6.4 s with it set once jobs ran inside `roomy_heap`.

`roomy_heap` gives a job the thresholds glibc would have reached by itself, and puts the pinned
ones back when the last job running in the process ends, trimming the heap then, so that the
worker returns to its operator's memory policy between jobs. Where nothing is pinned, or the C
library is not glibc, it does nothing.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
from typing import Any, Iterator, Optional, Tuple

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
DEFAULT_THRESHOLD = 128 * 1024  # both thresholds, until changed
ROOMY_MMAP = 32 * 1024 * 1024  # the most glibc raises its mmap threshold to by itself (64-bit)
ROOMY_TRIM = 2 * ROOMY_MMAP  # glibc keeps the trim threshold at twice the mmap threshold

_lock = threading.Lock()
_running = 0  # jobs inside `roomy_heap` in this process (a Dask worker may run several at once)


@functools.lru_cache(maxsize=None)
def _libc() -> Optional[Any]:
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes, libc.malloc_trim.argtypes = (ctypes.c_int, ctypes.c_int), (ctypes.c_size_t,)
        return libc
    except (OSError, AttributeError):  # not glibc: no mallopt, or no malloc_trim
        return None


def pinned() -> Optional[Tuple[int, int]]:
    """The (mmap, trim) thresholds this process's environment fixed, or None when glibc adjusts
    them itself (neither variable set) or a value is not a number glibc would have taken."""
    mmap, trim = os.environ.get("MALLOC_MMAP_THRESHOLD_"), os.environ.get("MALLOC_TRIM_THRESHOLD_")
    if mmap is None and trim is None:
        return None
    try:
        return (int(mmap) if mmap is not None else DEFAULT_THRESHOLD,
                int(trim) if trim is not None else DEFAULT_THRESHOLD)
    except ValueError:
        return None


@contextlib.contextmanager
def roomy_heap() -> Iterator[None]:
    """Run the body with the heap thresholds glibc reaches by itself when the environment pinned
    them (see the module documentation)."""
    global _running
    values = pinned()
    libc = _libc() if values is not None else None
    if libc is None:
        yield
        return
    with _lock:
        _running += 1
        if _running == 1:  # a threshold pinned higher than glibc's own is kept
            libc.mallopt(M_MMAP_THRESHOLD, max(values[0], ROOMY_MMAP))
            libc.mallopt(M_TRIM_THRESHOLD, max(values[1], ROOMY_TRIM))
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0:
                libc.mallopt(M_MMAP_THRESHOLD, values[0])
                libc.mallopt(M_TRIM_THRESHOLD, values[1])
                libc.malloc_trim(0)

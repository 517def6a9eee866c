"""glibc's malloc set for a process that codes frame after frame: what a frame frees is kept for the next.

By default glibc hands blocks from 128 KB up (a threshold it raises, as blocks are freed, to at most
32 MB) to the kernel when they are freed, and gives the top of its heap back once more than twice that
threshold is free there. A coder allocates the same sizes every frame (activation tensors, scans, packet
buffers), so each frame's arrays would land on fresh pages: a page fault and a page of zeros for every
4 KB. A thread's own arena is worse off: glibc unmaps a heap of it whole as soon as all of it is free,
whatever the trim threshold, and the nodes code in a worker thread; so every thread allocates from the
main arena here (glibc's per-thread caches still serve small blocks without its lock). Coding in a
worker thread as the nodes do, the fast tier's image encode and decode on the CPU took 0.87x and 0.88x
of their time with glibc's defaults, the quality tier's 0.84x and 0.82x, side by side, with no page
fault per frame and no more peak memory (``bench/bench_allocator.py``, docs/runtime.md).

The nodes and the ``xmodal`` CLI call :func:`keep_freed_memory` when they start; the processes the
package starts with its Fast DDS transport settings (``xmodal demo``, the launch files' opt-in) get the
same values through glibc's environment variables (:func:`environment`). Where the environment already
sets them (those variables, or ``glibc.malloc`` values in ``GLIBC_TUNABLES``), they stand.
"""
from __future__ import annotations

import ctypes
import os
import platform
from typing import Dict

#: ``mallopt`` parameters (``<malloc.h>``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: Arenas: one, glibc's main arena, for every thread.
ARENAS = 1
#: Blocks below this size come from the heap (glibc's largest mmap threshold on 64-bit systems).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap is given back to the kernel only above this (1 GiB).
TRIM_THRESHOLD = 1 << 30


def environment() -> Dict[str, str]:
    """The same settings as the environment variables glibc reads when any program starts."""
    return {'MALLOC_MMAP_THRESHOLD_': str(MMAP_THRESHOLD), 'MALLOC_TRIM_THRESHOLD_': str(TRIM_THRESHOLD),
            'MALLOC_ARENA_MAX': str(ARENAS)}


def keep_freed_memory() -> bool:
    """Have glibc's malloc serve blocks below ``MMAP_THRESHOLD`` from its main arena, for every thread,
    and keep what is freed.

    Returns whether this call set them: False where the C library is not glibc (musl, macOS) and where
    the environment already sets malloc settings (:func:`environment`'s variables, or ``glibc.malloc``
    values in ``GLIBC_TUNABLES``): glibc took those when the process started, and they stand.
    """
    set_already = any(name in os.environ for name in environment())
    tunables = os.environ.get('GLIBC_TUNABLES', '')
    if set_already or 'glibc.malloc.' in tunables or platform.libc_ver()[0] != 'glibc':
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success; a set threshold also stops glibc from moving it on its own.
    return bool(mallopt(M_ARENA_MAX, ARENAS) and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))

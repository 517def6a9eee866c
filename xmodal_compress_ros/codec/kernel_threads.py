"""One pool of worker threads for the codec's compiled kernels (rANS, integer hyper-synthesis).

The kernels release the GIL, so jobs handed to the pool run on several cores at once. Its threads
block on a queue between calls instead of spinning, so they take no core from the networks that run
next (a spinning BLAS pool did: ``docs/runtime.md``).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from xmodal_compress_ros.runtime.cpu_features import usable_cores

_pool = None
_lock = threading.Lock()


def _forget_pool() -> None:
    # A forked child has none of the parent's threads: it must start its own pool.
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def workers() -> int:
    """Threads of the pool: the cores this process may run on."""
    return usable_cores()


def parallel_map(function: Callable, jobs: Sequence[tuple]) -> list:
    """``function(*job)`` for every job, in order; on the pool's threads when there are several jobs."""
    global _pool
    if len(jobs) < 2:
        return [function(*job) for job in jobs]
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(workers(), thread_name_prefix='codec-kernel')
    return list(_pool.map(lambda job: function(*job), jobs))

"""Resident memory, GPU memory and latency of running node processes, sampled over time, and their trends.

Used by ``bench/soak.py`` and ``bench/bench_overload.py``. Memory comes from psutil when installed,
else from ``/proc/<pid>/status``; GPU memory from ``nvidia-smi`` where there is one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np


def rss_bytes(pid: int) -> Optional[int]:
    """Resident set size of process ``pid`` (None if it is gone)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return int(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            return None
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def gpu_memory_bytes() -> Optional[Dict[int, int]]:
    """GPU memory used per process id (nvidia-smi), or None where there is no NVIDIA GPU."""
    if shutil.which('nvidia-smi') is None:
        return None
    result = subprocess.run(
        ['nvidia-smi', '--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'],
        capture_output=True,
        text=True,
        timeout=20,
    )
    if result.returncode != 0:
        return None
    usage: Dict[int, int] = {}
    for line in result.stdout.splitlines():
        parts = [p.strip() for p in line.split(',')]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            usage[int(parts[0])] = int(parts[1]) << 20
    return usage


def percentiles_ms(seconds: Sequence[float]) -> Dict[str, Optional[float]]:
    """p50/p99/max in milliseconds of latencies in seconds (None when empty)."""
    if not len(seconds):
        return {'n': 0, 'p50': None, 'p99': None, 'max': None}
    values = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p99 = np.percentile(values, (50, 99))
    return {
        'n': int(values.size),
        'p50': round(float(p50), 1),
        'p99': round(float(p99), 1),
        'max': round(float(values.max()), 1),
    }


def trend(times: Sequence[float], values: Sequence[float], after: float) -> Dict[str, Optional[float]]:
    """Linear trend of ``values`` over ``times`` from ``after`` on: growth over that span as % of the mean.

    A leak shows as a steady positive growth; 5 % over the run (after warm-up) is the budget.
    """
    t = np.asarray([x for x, v in zip(times, values) if x >= after and v is not None], dtype=np.float64)
    v = np.asarray([v for x, v in zip(times, values) if x >= after and v is not None], dtype=np.float64)
    if t.size < 3 or np.ptp(t) == 0:
        return {'samples': int(t.size), 'growth_percent': None, 'slope_per_min': None}
    slope = float(np.polyfit(t, v, 1)[0])
    mean = float(v.mean())
    return {
        'samples': int(t.size),
        'growth_percent': round(100.0 * slope * float(np.ptp(t)) / mean, 2),
        'slope_per_min': round(slope * 60.0, 1),
        'first': float(v[0]),
        'last': float(v[-1]),
        'min': float(v.min()),
        'max': float(v.max()),
    }


def read_publish_logs(paths: Iterable[Path]) -> Dict[int, List[float]]:
    """Camera stamp -> publish times (time.time()), sorted, from bag_player --publish-log files."""
    published: Dict[int, List[float]] = {}
    for path in paths:
        if not Path(path).exists():
            continue
        for line in Path(path).read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                published.setdefault(int(entry['stamp_ns']), []).append(float(entry['time']))
    for times in published.values():
        times.sort()
    return published


def end_to_end(
    received: Iterable[Tuple[int, float]], published: Dict[int, List[float]]
) -> List[Tuple[float, float]]:
    """(receive time, latency s) per received (stamp, time), from the last publish of that stamp before."""
    out = []
    for stamp, received_at in received:
        times = published.get(stamp)
        if not times:
            continue
        index = int(np.searchsorted(times, received_at, side='right')) - 1
        if index >= 0:
            out.append((received_at, received_at - times[index]))
    return out


class Sampler:
    """Samples RSS (and GPU memory) of named processes, plus extra values given with each sample."""

    def __init__(self, pids: Dict[str, int], period: float = 10.0) -> None:
        self.pids = dict(pids)
        self.period = period
        self.samples: List[Dict] = []
        self.start = time.time()

    def sample(self, extra: Optional[Dict] = None) -> Dict:
        gpu = gpu_memory_bytes()
        entry = {'t': round(time.time() - self.start, 2)}
        for name, pid in self.pids.items():
            entry[f'{name}_rss_mb'] = round((rss_bytes(pid) or 0) / 2**20, 1)
            if gpu is not None:
                entry[f'{name}_gpu_mb'] = round(gpu.get(pid, 0) / 2**20, 1)
        entry.update(extra or {})
        self.samples.append(entry)
        return entry

    def series(self, key: str) -> Tuple[List[float], List[Optional[float]]]:
        return [s['t'] for s in self.samples], [s.get(key) for s in self.samples]

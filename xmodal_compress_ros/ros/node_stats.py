"""Counters, rolling latency percentiles and throughput of a node, for its diagnostics.

Thread-safe: the subscription callbacks, the worker thread and the diagnostics timer all touch it.
No ROS imports; ``ros/diagnostics.py`` turns a snapshot into a DiagnosticArray.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Callable, Deque, Dict, Optional, Tuple

import numpy as np


class NodeStats:
    """What a node reports in its diagnostics.

    Args:
        window_s: throughput is averaged over the last ``window_s`` seconds.
        latency_samples: latency percentiles are over the last ``latency_samples`` frames.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, window_s: float = 5.0, latency_samples: int = 200,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._counts: Counter = Counter()
        self._latency: Dict[str, Deque[float]] = {}
        self._latency_samples = latency_samples
        self._bytes: Dict[str, Deque[Tuple[float, int]]] = {}
        self._window_s = window_s
        self._clock = clock
        self._start = clock()

    def count(self, key: str, n: int = 1) -> int:
        """Add ``n`` to counter ``key``; returns the new total (1 means "first time": log it)."""
        with self._lock:
            self._counts[key] += n
            return self._counts[key]

    def get(self, key: str) -> int:
        with self._lock:
            return self._counts[key]

    def record_latency(self, name: str, seconds: float) -> None:
        with self._lock:
            self._latency.setdefault(name, deque(maxlen=self._latency_samples)).append(seconds)

    def record_bytes(self, stream: str, nbytes: int) -> None:
        with self._lock:
            self._bytes.setdefault(stream, deque()).append((self._clock(), nbytes))

    def latency_ms(self, name: str) -> Optional[Tuple[float, float]]:
        """``(p50, p99)`` in milliseconds over the window, or None before the first sample."""
        with self._lock:
            samples = list(self._latency.get(name, ()))
        if not samples:
            return None
        p50, p99 = np.percentile(np.asarray(samples) * 1000.0, (50, 99))
        return float(p50), float(p99)

    def latency_values(self, *names: str) -> Dict[str, float]:
        """``<name>_latency_p50_ms`` and ``_p99_ms`` of each name that has samples (diagnostics keys)."""
        values = {}
        for name in names:
            latency = self.latency_ms(name)
            if latency is not None:
                values[f'{name}_latency_p50_ms'], values[f'{name}_latency_p99_ms'] = latency
        return values

    def kbps(self, stream: str) -> float:
        """kbit/s of ``stream`` over the last ``window_s`` seconds (or since start, if shorter)."""
        now = self._clock()
        with self._lock:
            entries = self._bytes.get(stream)
            if not entries:
                return 0.0
            while entries and entries[0][0] < now - self._window_s:
                entries.popleft()
            total = sum(n for _, n in entries)
        span = min(self._window_s, max(now - self._start, 1e-3))
        return 8.0 * total / span / 1000.0

    def counts(self, prefix: str = '') -> Dict[str, int]:
        """Every counter whose key starts with ``prefix`` (prefix removed), sorted by key."""
        with self._lock:
            return {k[len(prefix):]: v for k, v in sorted(self._counts.items()) if k.startswith(prefix)}

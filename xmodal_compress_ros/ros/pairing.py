"""Nearest-stamp pairing of camera images with LiDAR scans (a small ApproximateTime replacement).

message_filters is not always installed, and the encoder needs more than a synchroniser: each scan
is encoded once when it arrives and then offered to every image near it in time. The buffer keeps
the last ``capacity`` scans; an image takes the one nearest in stamp within ``max_delta_ns``.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Deque, Generic, Optional, Tuple, TypeVar

Item = TypeVar('Item')


class ScanBuffer(Generic[Item]):
    """A bounded, thread-safe buffer of ``(stamp_ns, item)``; the oldest entry leaves when it is full."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f'capacity must be >= 1, got {capacity}')
        self._entries: Deque[Tuple[int, Item]] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def add(self, stamp_ns: int, item: Item) -> None:
        """Store ``item``; scans may arrive out of order, the search does not assume sorted stamps."""
        with self._lock:
            self._entries.append((int(stamp_ns), item))

    def nearest(self, stamp_ns: int, max_delta_ns: int) -> Optional[Tuple[int, Item]]:
        """The ``(stamp_ns, item)`` nearest to ``stamp_ns`` within ``max_delta_ns``, or ``None``.

        On a tie the later scan wins: it is the one the camera exposure overlaps for a spinning LiDAR
        that stamps at the end of its sweep.
        """
        with self._lock:
            best = None
            for entry in self._entries:
                delta = abs(entry[0] - stamp_ns)
                if delta <= max_delta_ns and (best is None or delta < best[0]
                                              or (delta == best[0] and entry[0] > best[1][0])):
                    best = (delta, entry)
            return None if best is None else best[1]

    def newest_stamp(self) -> Optional[int]:
        """The largest stamp held, or ``None`` when empty."""
        with self._lock:
            return max((stamp for stamp, _ in self._entries), default=None)

    def pairing_settled(self, stamp_ns: int) -> bool:
        """True when no scan still to come can pair better with an image stamped ``stamp_ns``.

        Scans arrive in stamp order, so once one at or after the image stamp is held, every later
        scan is further away than it.
        """
        newest = self.newest_stamp()
        return newest is not None and newest >= stamp_ns

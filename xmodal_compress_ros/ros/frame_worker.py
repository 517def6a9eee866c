"""A background thread that keeps subscription callbacks short and latency bounded.

Callbacks only hand messages over. The worker serves two inboxes:

* a bounded FIFO of *side* items (LiDAR scans or LiDAR packets): every one is processed, in order,
  unless more than ``side_capacity`` pile up, in which case the oldest is dropped;
* a *frame* slot holding only the newest image: a frame that is replaced before the worker gets to
  it is dropped, so the node never works on stale images and no queue can grow.

Each round the worker takes the waiting side items *and* the pending frame together, handles the
side items, then the frame. A frame that is not ready yet (``frame_delay`` > 0: an image waiting
for the scan stamped with it) holds the round back until it is ready, a new item arrives, or the
delay runs out. Taking both at once keeps an image with the scan that came with it when the CPU is
overloaded, and side items arriving faster than they are handled cannot starve the frames.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Deque, Generic, List, Optional, Tuple, TypeVar

Side = TypeVar('Side')
Frame = TypeVar('Frame')


class FrameWorker(Generic[Side, Frame]):
    """Runs ``handle_side`` on every side item and ``handle_frame`` on the newest frame, in one thread.

    Args:
        handle_side: called with each side item.
        handle_frame: called with the newest pending frame.
        side_capacity: most side items waiting; beyond it the oldest is dropped.
        frame_delay: optional; given the pending frame and the waiting side items (which will be
            handled before it), the seconds the frame should still wait (for a scan that may pair
            better). The worker waits that long unless a new item wakes it first.
        on_error: called with any exception a handler raises; the worker keeps running.
    """

    def __init__(self, handle_side: Callable[[Side], None], handle_frame: Callable[[Frame], None],
                 side_capacity: int, frame_delay: Optional[Callable[[Frame, List[Side]], float]] = None,
                 on_error: Optional[Callable[[BaseException], None]] = None,
                 name: str = 'xmodal-worker') -> None:
        if side_capacity < 1:
            raise ValueError(f'side_capacity must be >= 1, got {side_capacity}')
        self._handle_side = handle_side
        self._handle_frame = handle_frame
        self._frame_delay = frame_delay
        self._on_error = on_error
        self._side: Deque[Side] = deque()
        self._side_capacity = side_capacity
        self._frame: Optional[Frame] = None
        self._has_frame = False
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the item in progress, drop the rest, and join the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def put_side(self, item: Side) -> bool:
        """Queue a side item; True if the oldest queued one had to be dropped for it."""
        with self._cond:
            dropped = len(self._side) >= self._side_capacity
            if dropped:
                self._side.popleft()
            self._side.append(item)
            self._cond.notify_all()
        return dropped

    def put_frame(self, frame: Frame) -> bool:
        """Offer a frame; True if it replaced a frame that was never processed (that one is dropped)."""
        with self._cond:
            dropped = self._has_frame
            self._frame, self._has_frame = frame, True
            self._cond.notify_all()
        return dropped

    def wake(self) -> None:
        """Make a waiting frame re-check ``frame_delay`` (something it waits for has arrived)."""
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            work = self._take_round()
            if work is None:
                return
            sides, frame = work
            for item in sides:
                self._call(self._handle_side, item)
            if frame:
                self._call(self._handle_frame, frame[0])

    def _take_round(self) -> Optional[Tuple[List[Side], tuple]]:
        """The waiting side items and the pending frame (a 1-tuple, or () for none); None to stop."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                if self._has_frame:
                    delay = self._frame_delay(self._frame, list(self._side)) if self._frame_delay else 0.0
                    if delay <= 0.0:
                        frame = (self._frame,)
                        self._frame, self._has_frame = None, False
                        return self._take_sides(), frame
                    # Woken early by a new side item or frame; then the frame is re-evaluated.
                    self._cond.wait(delay)
                elif self._side:
                    return self._take_sides(), ()
                else:
                    self._cond.wait()

    def _take_sides(self) -> List[Side]:
        sides = list(self._side)
        self._side.clear()
        return sides

    def _call(self, handler: Callable, item: object) -> None:
        try:
            handler(item)
        except Exception as exc:  # noqa: BLE001 - one bad message must never stop the node
            if self._on_error is not None:
                self._on_error(exc)

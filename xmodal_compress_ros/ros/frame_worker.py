"""A background thread that keeps subscription callbacks short and latency bounded.

Callbacks only hand messages over. The worker serves two inboxes:

* a bounded FIFO of *side* items (LiDAR scans or LiDAR packets): every one is processed, in order,
  unless more than ``side_capacity`` pile up, in which case the oldest is dropped;
* a *frame* slot holding only the newest image: a frame that is replaced before the worker gets to
  it is dropped, so the node never works on stale images and no queue can grow.

The worker alternates: it takes all waiting side items, then the frame if it is ready. A frame
still waiting for a side item (``frame_delay`` > 0, e.g. an image waiting for its scan) lets the
waiting side items go first; a ready frame goes before side items that came in meanwhile, so side
items arriving faster than they are handled cannot starve the frames.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Deque, Generic, Optional, TypeVar

Side = TypeVar('Side')
Frame = TypeVar('Frame')


class FrameWorker(Generic[Side, Frame]):
    """Runs ``handle_side`` on every side item and ``handle_frame`` on the newest frame, in one thread.

    Args:
        handle_side: called with each side item.
        handle_frame: called with the newest pending frame.
        side_capacity: most side items waiting; beyond it the oldest is dropped.
        frame_delay: optional; given the pending frame, the seconds it should still wait (for a scan
            that may pair better). The worker sleeps that long unless a new item wakes it first.
        on_error: called with any exception a handler raises; the worker keeps running.
    """

    def __init__(self, handle_side: Callable[[Side], None], handle_frame: Callable[[Frame], None],
                 side_capacity: int, frame_delay: Optional[Callable[[Frame], float]] = None,
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
            with self._cond:
                while not (self._stopping or self._side or self._has_frame):
                    self._cond.wait()
                if self._stopping:
                    return
                sides = list(self._side)
                self._side.clear()
            for item in sides:
                self._call(self._handle_side, item)
            frame = self._take_frame()
            if frame is not None:
                self._call(self._handle_frame, frame[0])

    def _take_frame(self) -> Optional[tuple]:
        """The pending frame (in a 1-tuple, frames may be falsy), or None if it is not ready yet."""
        with self._cond:
            if not self._has_frame or self._stopping:
                return None
            delay = self._frame_delay(self._frame) if self._frame_delay is not None else 0.0
            if delay > 0.0:
                if not self._side:
                    # Woken early by a new side item or frame; the loop then re-evaluates.
                    self._cond.wait(delay)
                return None
            frame = (self._frame,)
            self._frame, self._has_frame = None, False
            return frame

    def _call(self, handler: Callable, item: object) -> None:
        try:
            handler(item)
        except Exception as exc:  # noqa: BLE001 - one bad message must never stop the node
            if self._on_error is not None:
                self._on_error(exc)

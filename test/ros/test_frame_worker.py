"""FrameWorker: newest-only frames, bounded side FIFO, handlers off the caller's thread."""
import threading
import time

import pytest

from xmodal_compress_ros.ros.frame_worker import FrameWorker


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.005)


def test_only_the_newest_frame_is_processed_while_busy():
    release = threading.Event()
    done = []

    def handle_frame(frame):
        if frame == 0:
            release.wait(5)
        done.append(frame)

    worker = FrameWorker(lambda item: None, handle_frame, side_capacity=2)
    worker.start()
    try:
        assert worker.put_frame(0) is False
        wait_for(lambda: not worker._has_frame)  # frame 0 taken, handler blocked
        dropped = [worker.put_frame(i) for i in range(1, 6)]
        assert dropped == [False, True, True, True, True]
        release.set()
        wait_for(lambda: len(done) == 2)
        assert done == [0, 5]
    finally:
        worker.stop()


def test_side_items_in_order_and_bounded_then_the_frame_taken_with_them():
    order = []
    gate = threading.Event()
    worker = FrameWorker(lambda s: (gate.wait(5), order.append(('side', s))),
                         lambda f: order.append(('frame', f)), side_capacity=3)
    worker.start()
    try:
        worker.put_side('a')
        wait_for(lambda: not worker._side)  # 'a' in progress, blocked on the gate
        evicted = [worker.put_side(s) for s in 'bcde']
        worker.put_frame('img')
        assert evicted == [False, False, False, True]  # 'b' dropped for 'e'
        gate.set()
        wait_for(lambda: len(order) == 5)
        assert order == [('side', 'a'), ('side', 'c'), ('side', 'd'), ('side', 'e'), ('frame', 'img')]
    finally:
        worker.stop()


def test_a_frame_waits_for_its_side_item_then_both_are_taken():
    order = []
    seen = []

    def delay(frame, waiting):
        seen.append(list(waiting))
        return 0.0 if 'scan' in waiting else 10.0

    worker = FrameWorker(order.append, order.append, side_capacity=1, frame_delay=delay)
    worker.start()
    try:
        worker.put_frame('img')
        time.sleep(0.1)
        assert order == []  # waiting for its scan
        worker.put_side('scan')  # wakes the worker: the frame is ready with the waiting scan
        wait_for(lambda: order == ['scan', 'img'])
        assert seen[0] == [] and seen[-1] == ['scan']
    finally:
        worker.stop()


def test_the_delay_runs_out():
    done = []
    start = time.monotonic()
    worker = FrameWorker(done.append, done.append, side_capacity=1,
                         frame_delay=lambda frame, waiting: 0.2 - (time.monotonic() - start))
    worker.start()
    try:
        worker.put_frame('img')
        wait_for(lambda: done == ['img'], timeout=2.0)
        assert time.monotonic() - start >= 0.2
    finally:
        worker.stop()


def test_errors_are_reported_and_the_worker_keeps_running():
    errors, done = [], []

    def handle(frame):
        if frame == 'bad':
            raise ValueError('bad frame')
        done.append(frame)

    worker = FrameWorker(lambda s: None, handle, side_capacity=1, on_error=errors.append)
    worker.start()
    try:
        worker.put_frame('bad')
        wait_for(lambda: errors)
        worker.put_frame('good')
        wait_for(lambda: done == ['good'])
        assert str(errors[0]) == 'bad frame'
    finally:
        worker.stop()
    assert not worker._thread.is_alive()


def test_rejects_zero_capacity():
    with pytest.raises(ValueError, match='side_capacity'):
        FrameWorker(print, print, side_capacity=0)


def test_a_stream_of_side_items_cannot_starve_the_frames():
    done = []
    worker = FrameWorker(lambda s: (time.sleep(0.02), done.append('side')), done.append, side_capacity=1)
    worker.start()
    try:
        worker.put_side('scan')
        worker.put_frame('img')
        deadline = time.monotonic() + 2
        while 'img' not in done and time.monotonic() < deadline:
            worker.put_side('scan')  # always one more side item waiting
            time.sleep(0.005)
        assert 'img' in done
    finally:
        worker.stop()

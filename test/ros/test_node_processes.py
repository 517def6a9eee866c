"""Node processes: parameter files, logs, and a stop that always ends them."""
import os
import time

import yaml

from xmodal_compress_ros.ros.node_processes import start_node, stop_nodes, write_params_file


def test_params_file_applies_to_every_node(tmp_path):
    path = write_params_file(tmp_path / 'p.yaml', {'quality': 2, 'models': ['a', 'b']})
    assert yaml.safe_load(path.read_text()) == {'/**': {'ros__parameters': {'quality': 2,
                                                                            'models': ['a', 'b']}}}


def test_output_goes_to_the_log_and_params_after_ros_args(tmp_path):
    script = 'import sys; print("args", sys.argv[1:], flush=True)'
    proc = start_node('echo', ['-c', script], tmp_path, dict(os.environ), params={'quality': 1})
    assert proc.popen.wait(timeout=30) == 0
    stop_nodes([proc])
    log = proc.log_path.read_text()
    assert "'--ros-args', '--params-file'" in log and str(tmp_path / 'echo.params.yaml') in log
    assert 'args' in proc.log_tail()  # still readable after stop_nodes closed the handle


def test_stop_interrupts_then_kills(tmp_path):
    polite = start_node('polite', ['-c', 'import time; time.sleep(60)'], tmp_path, dict(os.environ))
    stubborn = start_node('stubborn', ['-c', 'import signal, time\n'
                                       'signal.signal(signal.SIGINT, signal.SIG_IGN)\n'
                                       'print("ready", flush=True)\n'
                                       'time.sleep(60)'], tmp_path, dict(os.environ))
    deadline = time.monotonic() + 20
    while 'ready' not in stubborn.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    codes = stop_nodes([polite, stubborn], timeout=1.0)
    assert time.monotonic() - started < 10
    assert codes['polite'] != 0 and codes['stubborn'] == -9
    assert not polite.alive() and not stubborn.alive()


def test_a_player_stuck_in_teardown_after_playback_counts_as_finished(tmp_path):
    from xmodal_compress_ros.ros.bag_player import PLAYBACK_COMPLETE
    from xmodal_compress_ros.ros.stream_session import wait_for_player

    def player(name, script):
        return start_node(name, ['-c', script], tmp_path, dict(os.environ))

    stuck = player('stuck', f'import time; print({PLAYBACK_COMPLETE!r}, flush=True); time.sleep(60)')
    started = time.monotonic()
    assert wait_for_player(stuck, timeout=60, teardown_grace=0.5) == 0 and not stuck.alive()
    assert time.monotonic() - started < 20
    assert wait_for_player(player('failed', 'import sys; sys.exit(3)'), timeout=60) == 3
    silent = player('silent', 'import time; time.sleep(60)')  # never finished: a timeout, not a success
    assert wait_for_player(silent, timeout=0.5, teardown_grace=0.1) != 0

"""Node processes: parameter files, logs, and a stop that always ends them."""
import os
import time

import yaml

from xmodal_compress_ros.ros.node_processes import start_node, stop_nodes, write_params_file


def test_params_file_applies_to_every_node(tmp_path):
    path = write_params_file(tmp_path / 'p.yaml', {'quality': 2, 'models': ['a', 'b']})
    assert yaml.safe_load(path.read_text()) == {'/**': {'ros__parameters': {'quality': 2, 'models': ['a', 'b']}}}


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


def test_a_hung_ros_teardown_does_not_hold_the_bag_player(tmp_path):
    import subprocess
    import sys

    import pytest
    pytest.importorskip('rclpy')
    script = ('import time\n'
              'from xmodal_compress_ros.ros.bag_player import _shutdown\n'
              'class Stuck:\n'
              '    def destroy_node(self):\n'
              '        time.sleep(60)\n'
              '_shutdown(Stuck(), 7, timeout_s=0.5)\n'
              'print("not reached")\n')
    started = time.monotonic()
    run = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=30)
    assert run.returncode == 7 and 'teardown still running' in run.stderr and 'not reached' not in run.stdout
    assert time.monotonic() - started < 20

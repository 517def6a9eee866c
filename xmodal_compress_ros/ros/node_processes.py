"""Start node processes (with a ROS parameter file) and a log file, and always stop them.

Used by ``xmodal demo`` and the end-to-end tests: each node runs as ``python -m MODULE --ros-args
--params-file FILE`` in the isolated environment of
``ros/transport.py``; stdout and stderr go to ``<log_dir>/<name>.log``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence


@dataclass
class NodeProcess:
    """A started process, its log file and the file handle its output goes to."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    log_file: Any

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_file.closed:  # stop_nodes closes it; the file on disk is still there
            self.log_file.flush()
        text = self.log_path.read_text(errors='replace') if self.log_path.exists() else ''
        return '\n'.join(text.splitlines()[-lines:])


def write_params_file(path: Path, params: Mapping[str, Any]) -> Path:
    """A ros__parameters file applying ``params`` to every node (``/**``)."""
    import yaml

    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': dict(params)}}, sort_keys=False))
    return path


def start_node(name: str, command: Sequence[str], log_dir: Path, env: Mapping[str, str],
               params: Optional[Mapping[str, Any]] = None) -> NodeProcess:
    """Start ``python COMMAND...`` (e.g. ``('-m', module, ...)``) as process ``name``.

    ``params``, if given, become a ``--params-file`` after ``--ros-args``.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable] + list(command)
    if params:
        params_file = write_params_file(log_dir / f'{name}.params.yaml', params)
        command += ['--ros-args', '--params-file', str(params_file)]
    log_path = log_dir / f'{name}.log'
    log_file = open(log_path, 'w')
    popen = subprocess.Popen(command, env=dict(env), stdout=log_file, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    return NodeProcess(name, popen, log_path, log_file)


def stop_nodes(processes: Iterable[NodeProcess], timeout: float = 5.0) -> Dict[str, Optional[int]]:
    """SIGINT every process, wait up to ``timeout`` s, then SIGKILL the rest; returns the exit codes."""
    processes = list(processes)
    for proc in processes:
        if proc.alive():
            proc.popen.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    for proc in processes:
        try:
            proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(timeout=5)
        proc.log_file.close()
    return {proc.name: proc.popen.returncode for proc in processes}

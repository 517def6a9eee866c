"""Encoder and decoder node processes plus a measuring probe, on a private ROS domain.

``xmodal demo`` and the end-to-end tests use it the same way::

    with StreamSession(log_dir, encoder_params, decoder_params) as session:
        session.play(bag)                     # the bag player process, at the recorded rate
        session.probe.wait_for(lambda: ...)   # decoded images, packets, diagnostics
    # every process is stopped (SIGINT, then SIGKILL) and the environment restored

The nodes run in separate processes talking over DDS with the shipped transport configuration
(``ros/transport.py``); the probe runs in this process, in its own rclpy context.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from xmodal_compress_ros.ros.node_processes import NodeProcess, start_node, stop_nodes
from xmodal_compress_ros.ros.stream_probe import StreamProbe
from xmodal_compress_ros.ros.transport import isolated_environment

ENCODER_COMMAND = ('-m', 'xmodal_compress_ros.ros.encoder_node')
DECODER_COMMAND = ('-m', 'xmodal_compress_ros.ros.decoder_node')
PLAYER_COMMAND = ('-m', 'xmodal_compress_ros.ros.bag_player')
ENCODER_NODE = 'xmodal_encoder'
DECODER_NODE = 'xmodal_decoder'


class SessionError(RuntimeError):
    """A node process died or did not come up; the message carries the end of its log."""


def wait_for_player(player: NodeProcess, timeout: float, teardown_grace: float = 10.0) -> Optional[int]:
    """Wait for the bag player; returns its exit code (0 for a finished player stuck in teardown).

    The Fast DDS of the ROS wheels can deadlock while destroying a TCP transport whose peer is
    mid-read (eProsima/Fast-DDS#6066, fixed upstream after the 3.2 release these wheels carry);
    measured here: 2 of 3 full test runs in one session had a player hang after it had published
    everything. rclpy holds the GIL there, so the player cannot time itself out. A player that has
    printed ``PLAYBACK_COMPLETE`` has done its work: after ``teardown_grace`` s it is stopped and
    counts as successful.
    """
    from xmodal_compress_ros.ros.bag_player import PLAYBACK_COMPLETE

    deadline = time.monotonic() + timeout
    finished_at = None
    while player.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
        if finished_at is None and PLAYBACK_COMPLETE in player.log_tail(3):
            finished_at = time.monotonic()
        if finished_at is not None and time.monotonic() - finished_at > teardown_grace:
            print(f'bag player: still in the ROS teardown {teardown_grace:g} s after finishing playback; '
                  'stopped (Fast DDS TCP teardown deadlock, eProsima/Fast-DDS#6066)', flush=True)
            stop_nodes([player])
            return 0
    return stop_nodes([player])[player.name]


def _node_params(params: Mapping[str, Any]) -> Dict[str, Any]:
    return {name: value for name, value in params.items() if name != 'qos_overrides'}


class StreamSession:
    """Starts the decoder, the encoder and a probe; stops them on exit.

    Args:
        log_dir: where node logs and parameter files go.
        encoder_params, decoder_params: ROS parameters of the two nodes (``ros/params.py``).
        start_timeout: seconds for both nodes to load their models and subscribe.
        on_image: passed to :class:`StreamProbe`.
    """

    def __init__(self, log_dir: Path, encoder_params: Mapping[str, Any], decoder_params: Mapping[str, Any],
                 start_timeout: float = 120.0, on_image: Any = None) -> None:
        from xmodal_compress_ros.ros.params import DecoderNodeConfig, EncoderNodeConfig, config_from_values

        self.log_dir = Path(log_dir)
        # qos_overrides are rclpy's own parameters, not the nodes'.
        self.encoder_config = config_from_values(EncoderNodeConfig, _node_params(encoder_params))
        self.decoder_config = config_from_values(DecoderNodeConfig, _node_params(decoder_params))
        self._encoder_params = dict(encoder_params)
        self._decoder_params = dict(decoder_params)
        self._start_timeout = start_timeout
        self._on_image = on_image
        self.env = isolated_environment()
        self.processes: List[NodeProcess] = []
        self.probe: Optional[StreamProbe] = None
        self._saved_env: Dict[str, Optional[str]] = {}

    def __enter__(self) -> 'StreamSession':
        # The probe's DDS participant reads the domain and transport from this process's environment.
        for key, value in self.env.items():
            if os.environ.get(key) != value:
                self._saved_env[key] = os.environ.get(key)
                os.environ[key] = value
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        for name, command, params in (('decoder', DECODER_COMMAND, self._decoder_params),
                                      ('encoder', ENCODER_COMMAND, self._encoder_params)):
            self.processes.append(start_node(name, command, self.log_dir, self.env, params))
        enc, dec = self.encoder_config, self.decoder_config
        self.probe = StreamProbe(dec.image_topic, (enc.image_packet_topic(), enc.lidar_packet_topic()),
                                 dec.lidar_topic if dec.publish_points else '', self._on_image)
        ready = self.probe.wait_for(
            lambda: self.probe.graph_ready(
                subscribed={enc.image_topic: ENCODER_NODE, enc.lidar_topic: ENCODER_NODE,
                            dec.image_packet_topic: DECODER_NODE},
                published={dec.image_topic: DECODER_NODE}),
            self._start_timeout, alive=self.nodes_alive)
        if not ready:
            raise SessionError(self.failure_report('the nodes did not come up'))

    def nodes_alive(self) -> bool:
        return all(proc.alive() for proc in self.processes)

    def failure_report(self, what: str) -> str:
        """``what``, the exit codes and the end of each node's log."""
        parts = [what]
        for proc in self.processes:
            state = 'running' if proc.alive() else f'exited with code {proc.popen.returncode}'
            parts.append(f'--- {proc.name} ({state}), {proc.log_path}:\n{proc.log_tail(15)}')
        return '\n'.join(parts)

    def play(self, bag: Path, rate: float = 1.0, publish_log: Optional[Path] = None,
             extra_args: Sequence[str] = (), timeout: float = 600.0) -> int:
        """Run the bag player to completion; returns its exit code."""
        command: List[str] = list(PLAYER_COMMAND) + [str(bag), '--rate', str(rate)] + list(extra_args)
        if publish_log is not None:
            command += ['--publish-log', str(publish_log)]
        player = start_node('player', command, self.log_dir, self.env)
        code = wait_for_player(player, timeout)
        if code != 0:
            raise SessionError(f'the bag player exited with code {code}:\n{player.log_tail(15)}')
        return code

    def __exit__(self, *exc: Any) -> None:
        try:
            stop_nodes(self.processes)
            if self.probe is not None:
                self.probe.close()
        finally:
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

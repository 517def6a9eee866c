"""What the encoder and decoder nodes share: QoS profiles, problem reporting and the process main."""
from __future__ import annotations

import re
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from xmodal_compress_ros.errors import XmodalError
from xmodal_compress_ros.runtime.allocator import keep_freed_memory

# Packets, decoded images and scans: reliable, keep last 10 (rclpy's default profile).
OUTPUT_DEPTH = 10
# Longest wait of one executor step; bounds how late a shutdown is noticed.
SPIN_TIMEOUT_S = 0.1


def sensor_qos() -> Any:
    """The QoS of sensor inputs (images, scans, CameraInfo): rclpy's sensor-data preset (best effort,
    keep last 5), which matches both best-effort and reliable drivers."""
    from rclpy.qos import qos_profile_sensor_data

    return qos_profile_sensor_data


def output_qos() -> Any:
    """The QoS of the nodes' outputs: reliable, keep last ``OUTPUT_DEPTH``."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=OUTPUT_DEPTH, reliability=ReliabilityPolicy.RELIABLE)


def qos_profile(reliability: str, depth: int) -> Any:
    """A volatile keep-last QoS: ``'sensor_data'`` (rclpy's preset), ``'best_effort'`` or ``'reliable'``."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    if reliability == 'sensor_data':
        return sensor_qos()
    policy = ReliabilityPolicy.RELIABLE if reliability == 'reliable' else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=depth, reliability=policy)


def overridable() -> Dict[str, Any]:
    """``create_publisher``/``create_subscription`` keywords that let the standard ``qos_overrides.<topic>.
    <publisher|subscription>.<policy>`` parameters change history, depth, reliability and durability."""
    from rclpy.qos_overriding_options import QoSOverridingOptions

    return {'qos_overriding_options': QoSOverridingOptions.with_default_policies()}


_MATCH_LOG = '{what} matched ({count} in all) at {ns} ns'


def match_times(log_text: str, what: str) -> List[int]:
    """Wall times (ns) of the matches :func:`match_logging` logged for ``what``, in log order."""
    pattern = re.escape(_MATCH_LOG).replace(r'\{what\}', re.escape(what))
    pattern = pattern.replace(r'\{count\}', r'\d+').replace(r'\{ns\}', r'(\d+)')
    return [int(t) for t in re.findall(pattern, log_text)]


def match_logging(node: Any, endpoint: str, what: str) -> Dict[str, Any]:
    """``event_callbacks`` for ``create_publisher``/``create_subscription`` (``endpoint``) that log each
    new match.

    The log line (``<what> matched (N in all) at <ns> ns``) marks when a peer that joined late can
    first exchange messages: DDS discovery over a lossy link takes a while, and messages before the
    match never reach the peer. Empty on rclpy without matched events (Humble).
    """
    try:
        from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
    except ImportError:  # Humble: rclpy.qos_event, without a matched event
        return {}
    seen = [0]

    def on_matched(info: Any) -> None:
        # The EventsExecutor reports current_count_change as 0, so compare counts ourselves.
        before, seen[0] = seen[0], info.current_count
        if info.current_count > before:
            node.get_logger().info(_MATCH_LOG.format(what=what, count=info.current_count, ns=time.time_ns()))

    callbacks = PublisherEventCallbacks if endpoint == 'publisher' else SubscriptionEventCallbacks
    return {'event_callbacks': callbacks(matched=on_matched)}


class ProblemReporter:
    """Counts problems by kind and logs each kind once (with its reason), then only counts it.

    One bad message must neither stop a node nor flood its log; the counts go to diagnostics.
    """

    def __init__(self, stats: Any, logger: Any) -> None:
        self._stats = stats
        self._logger = logger

    def __call__(self, category: str, kind: str, reason: str) -> None:
        if self._stats.count(f'{category}.{kind}') == 1:
            self._logger.warning(f'{category} ({kind}): {reason} [logged once; counted in /diagnostics]')


def events_executor(node: Any, context: Any = None) -> Any:
    """rclpy's EventsExecutor (it roughly doubles the message rate a Python subscriber keeps up with)
    with ``node`` added; the single-threaded executor where rclpy has none (Humble).

    Create it on the calling thread: it enables ``faulthandler``, which raises when ``sys.stderr``
    has no file descriptor (as under pytest's ``capsys``) -- an error a spinning thread would swallow.
    """
    import rclpy

    try:
        from rclpy.experimental import EventsExecutor as executor_class
    except ImportError:  # Humble: no EventsExecutor
        from rclpy.executors import SingleThreadedExecutor as executor_class
    executor = executor_class(context=context or rclpy.get_default_context())
    executor.add_node(node)
    return executor


def spin_until_shutdown(executor: Any, context: Any = None) -> None:
    """Run the executor's callbacks until ``context`` shuts down.

    The EventsExecutor's ``spin()`` keeps the GIL while it waits (rclpy 9.1, Kilted), which starves
    every other Python thread -- the nodes' worker included -- so it is driven by ``spin_once`` with
    a timeout, which releases it.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException

    context = context or rclpy.get_default_context()
    try:
        while context.ok():
            executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
    except ExternalShutdownException:
        pass


def run_node(make_node: Callable[[], Any], args: Optional[List[str]] = None) -> int:
    """Init rclpy, build the node, spin it until shutdown (SIGINT/SIGTERM); 2 on bad configuration.

    Every callback is short: the heavy work is on the node's worker thread.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException

    keep_freed_memory()  # each frame's tensors and scans on pages the last frame used (runtime/allocator.py)
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        spin_until_shutdown(events_executor(node))
    except XmodalError as exc:
        print(f'{getattr(make_node, "__name__", "node")}: error: {exc}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0

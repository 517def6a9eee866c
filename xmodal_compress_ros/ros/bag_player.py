"""Play a sensor bag (image, CameraInfo, PointCloud2) into ROS at the recorded rate, without ros2 bag.

``python -m xmodal_compress_ros.ros.bag_player BAG [--rate 1] [--loop-seconds S] [--publish-log FILE]``

Messages keep their recorded header stamps and frame ids and are published when their stamp is
due (stamp offsets from the first message, divided by ``--rate``). Messages are converted just
before they are due, so memory stays flat for long bags. ``--publish-log`` writes one JSON line
``{"stamp_ns": ..., "time": ...}`` per image with the wall-clock publish time (``time.time()``),
which ``xmodal demo`` uses to measure end-to-end latency.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, List, Optional

from xmodal_compress_ros.data import rosbag_io
from xmodal_compress_ros.errors import DatasetError, XmodalError
from xmodal_compress_ros.ros import conversions
from xmodal_compress_ros.ros.node_main import qos_profile

NODE_NAME = 'xmodal_bag_player'
#: Printed on stdout once every message is published and acknowledged, before the ROS teardown.
PLAYBACK_COMPLETE = 'bag_player: playback complete'
DISCOVERY_SETTLE_S = 0.5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='bag_player', description=__doc__.splitlines()[0])
    parser.add_argument('bag', help='rosbag2 directory (MCAP or sqlite3) with the sensor topics')
    parser.add_argument('--rate', type=float, default=1.0,
                        help='playback speed factor (default 1: the recorded rate)')
    parser.add_argument('--image-topic', default=rosbag_io.IMAGE_TOPIC)
    parser.add_argument('--lidar-topic', default=rosbag_io.LIDAR_TOPIC)
    parser.add_argument('--info-topic', default=rosbag_io.CAMERA_INFO_TOPIC,
                        help='CameraInfo topic in the bag and on output; "" to skip it')
    parser.add_argument('--max-images', type=int, default=0, help='stop after this many images (0: all)')
    parser.add_argument('--wait-subscribers', type=float, default=30.0,
                        help='seconds to wait for a subscriber on the image and LiDAR topics before playing')
    parser.add_argument('--qos', choices=('reliable', 'best_effort'), default='reliable',
                        help='reliability of the publishers (reliable also reaches sensor-data subscribers)')
    parser.add_argument('--loop-seconds', type=float, default=0.0,
                        help='play the bag in a loop (stamps shifted to keep increasing) for this many '
                             'seconds (default 0: once)')
    parser.add_argument('--publish-log',
                        help='write {"stamp_ns", "time"} JSON lines, one per image published')
    return parser


class BagPlayer:
    """Publishes a sensor bag's messages on a node at their recorded pace."""

    def __init__(self, node: Any, args: argparse.Namespace) -> None:
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        if args.rate <= 0:
            raise DatasetError(f'--rate must be > 0, got {args.rate}')
        qos = qos_profile(args.qos, 10)
        self.args = args
        self.node = node
        self.publishers = {rosbag_io.IMAGE: node.create_publisher(Image, args.image_topic, qos),
                           rosbag_io.SCAN: node.create_publisher(PointCloud2, args.lidar_topic, qos)}
        if args.info_topic:
            self.publishers[rosbag_io.CAMERA_INFO] = node.create_publisher(CameraInfo, args.info_topic, qos)
        self.images = 0

    def wait_for_subscribers(self) -> bool:
        """True once the image and LiDAR topics each have a subscriber (or False after the timeout)."""
        deadline = time.monotonic() + self.args.wait_subscribers
        needed = (self.publishers[rosbag_io.IMAGE], self.publishers[rosbag_io.SCAN])
        while time.monotonic() < deadline:
            if all(pub.get_subscription_count() > 0 for pub in needed):
                # The writer sees the reader before the reader has matched the writer; samples sent
                # in between arrive only after the next heartbeat (about 100 ms late).
                time.sleep(DISCOVERY_SETTLE_S)
                return True
            time.sleep(0.05)
        return False

    def play(self, log: Any = None) -> int:
        """Publish every event when it is due; returns the number of images published.

        With ``--loop-seconds`` the bag is played again and again, its stamps shifted by the bag's
        length each time (so they keep increasing, one image period apart at the seam), until that
        many seconds have passed.
        """
        deadline = time.monotonic() + self.args.loop_seconds
        clock: List[Any] = [None, 0.0]  # first stamp, monotonic time it was published at
        offset = 0
        while True:
            span = self._play_once(log, offset, clock, deadline if self.args.loop_seconds else None)
            if not self.args.loop_seconds or span is None or time.monotonic() >= deadline:
                break
            offset += span
        for pub in self.publishers.values():
            pub.wait_for_all_acked()
        return self.images

    def _play_once(self, log: Any, offset: int, clock: List[Any], deadline: Optional[float]) -> Optional[int]:
        """One pass over the bag, stamps shifted by ``offset``; returns the span to shift the next pass by."""
        events = rosbag_io.read_sensor_bag(self.args.bag, self.args.image_topic, self.args.lidar_topic,
                                           self.args.info_topic or None)
        first = last = None
        for event in events:
            if event.kind == rosbag_io.IMAGE and self.args.max_images and self.images >= self.args.max_images:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return None
            event = event._replace(stamp_ns=event.stamp_ns + offset)
            msg = to_message(event)
            if clock[0] is None:
                # The clock starts at the first message, after the bag was opened and decoded.
                clock[0], clock[1] = event.stamp_ns, time.monotonic()
            due = clock[1] + (event.stamp_ns - clock[0]) / 1e9 / self.args.rate
            time.sleep(max(0.0, due - time.monotonic()))
            self.publishers[event.kind].publish(msg)
            if event.kind == rosbag_io.IMAGE:
                self.images += 1
                if log is not None:
                    log.write(json.dumps({'stamp_ns': event.stamp_ns, 'time': time.time()}) + '\n')
                first = event.stamp_ns if first is None else first
                period = event.stamp_ns - last if last is not None else 0
                last = event.stamp_ns
        if first is None:
            return None
        return last - first + max(period, 1)


def to_message(event: rosbag_io.BagEvent) -> Any:
    """The rclpy message of a bag event, with the recorded stamp and frame id."""
    header = conversions.make_header(event.stamp_ns, event.frame_id)
    if event.kind == rosbag_io.IMAGE:
        return conversions.numpy_to_image(event.payload, 'rgb8', header)
    if event.kind == rosbag_io.SCAN:
        return conversions.numpy_to_pointcloud2(event.payload, header)
    return camera_info_message(event.payload, header)


def camera_info_message(info: Any, header: Any) -> Any:
    """An rclpy CameraInfo copied from a rosbags one."""
    from sensor_msgs.msg import CameraInfo, RegionOfInterest

    roi = info.roi
    return CameraInfo(
        header=header, height=int(info.height), width=int(info.width), distortion_model=info.distortion_model,
        d=[float(v) for v in info.d], k=[float(v) for v in info.k], r=[float(v) for v in info.r],
        p=[float(v) for v in info.p], binning_x=int(info.binning_x), binning_y=int(info.binning_y),
        roi=RegionOfInterest(x_offset=int(roi.x_offset), y_offset=int(roi.y_offset), height=int(roi.height),
                             width=int(roi.width), do_rectify=bool(roi.do_rectify)))


def main(argv: Optional[List[str]] = None) -> int:
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    # ROS arguments (``--ros-args -r /camera/image_raw:=/robot/camera/image_raw``) remap as in any node.
    full = list(sys.argv if argv is None else [NODE_NAME] + list(argv))
    args = build_parser().parse_args(remove_ros_args(full)[1:])
    # Python's own SIGINT handling: Ctrl-C (or the demo stopping us) ends playback via KeyboardInterrupt.
    rclpy.init(args=full, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(NODE_NAME)
    log = open(args.publish_log, 'w') if args.publish_log else None
    code = 0
    try:
        player = BagPlayer(node, args)
        if not player.wait_for_subscribers():
            node.get_logger().warning(f'no subscriber on {args.image_topic} and {args.lidar_topic} after '
                                      f'{args.wait_subscribers:g} s: playing anyway')
        images = player.play(log)
        node.get_logger().info(f'published {images} images from {args.bag}')
        print(PLAYBACK_COMPLETE, flush=True)
    except XmodalError as exc:
        print(f'bag_player: error: {exc}', file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    finally:
        if log is not None:
            log.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
